"""``CredentialResolver`` for ``auth_type: "per_user_oauth"``: the calling identity's own upstream token.

::

    headers_for(spec, caller)
      ├─ no caller (shared connection) ─────────────────────────────▶ CredentialUnavailable
      ├─ no identity: LLM gateway ──▶ CredentialUnavailable (reference.md §2.7 step 3); /mcp ──▶ likewise
      ├─ row active, not expiring ──────────────────────────────────▶ Authorization: Bearer <token>
      ├─ expiring + refresh token ──▶ refresh by row id under RowLocks (W16) ──▶ Bearer <new token>
      │        permanent failure ──▶ needs_reauth ──┐
      └─ no row / needs_reauth ─────────────────────┴──▶ AuthRequired(<base>/oauth/connect/<handoff>)

    unauthorized(spec, caller, challenge)   the upstream rejected the token
      ├─ 403 insufficient_scope ──▶ step-up: needs_reauth for token scopes ∪ challenge scopes
      │        (at most STEP_UP_LIMIT times per grant, only when that adds a scope) and False
      └─ forced refresh by row id: True with a new token; else needs_reauth and False, so that
         the next headers_for raises AuthRequired (lazy auth, never vanished tools)

Refresh failures follow reference.md §4.9: ``permanent`` (401, invalid_grant, unauthorized_client)
marks the row ``needs_reauth``; ``transient`` ones are retried with backoff and leave it active;
other refusals mark it ``needs_reauth`` only once the current token is no longer usable.
"""

from __future__ import annotations

import hashlib
import logging
from contextvars import ContextVar
from datetime import timedelta

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.gateway import Gateway
from heimdall.mcp.runtime import AuthRequired, Caller, CredentialUnavailable, MCPClientSpec
from heimdall.oauth.per_user import handoffs, tokens
from heimdall.oauth.per_user.identity import Identity, identity_of
from heimdall.oauth.per_user.locks import locks_for
from heimdall.oauth.upstream import records, step_up
from heimdall.oauth.upstream.discovery import bearer_challenge
from heimdall.oauth.upstream.locking import RefreshLockTimeout
from heimdall.oauth.upstream.token_endpoint import TokenEndpointError
from heimdall.oauth.upstream.tokens import EXPIRY_MARGIN, refresh_with_retries
from heimdall.store.mcp_models import OAuthConfigRow
from heimdall.store.per_user_models import OAuthUserTokenRow

log = logging.getLogger(__name__)

#: ``last_used_at`` is written at most this often per row.
TOUCH_INTERVAL = 60.0


def needs_identity_message(name: str) -> str:
    return (
        f"per-user OAuth for {name} requires a user identity: include X-Bf-User-Id or a Virtual Key "
        "in your request so the token can be linked to you"
    )


def auth_required_message(name: str) -> str:
    return f"Authentication required for {name}. Please visit the authorize URL to connect your account."


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


#: Digest of the token the current request carries (set by ``headers_for``, read by ``unauthorized``).
_SENT: ContextVar[str | None] = ContextVar("heimdall_per_user_token_sent", default=None)


class PerUserCredentials:
    """Each identity's own token for ``per_user_oauth`` clients; lazy auth when there is none."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        attempts: int = 3,
        backoff_base: float = 1.0,
        expiry_margin: float = EXPIRY_MARGIN,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.gateway = gateway
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.expiry_margin = expiry_margin
        self.http = http
        #: row id → digest of the access token last handed out here: tells "someone refreshed already" apart.
        self._issued: dict[str, str] = {}

    # -- CredentialResolver ------------------------------------------------------------------------------------

    async def headers_for(self, spec: MCPClientSpec, caller: Caller | None) -> dict[str, str]:
        """``Authorization: Bearer <the caller's token>`` over the client's static headers.

        Raises:
            AuthRequired: the identity has no usable token; ``authorize_url`` is a fresh connection link.
            CredentialUnavailable: no caller or no identity, or a refresh failed for now.
        """
        identity = self._identity(spec, caller)
        token = await self._token(spec, identity)
        if token is None:
            raise await self._auth_required(spec, identity)
        headers = {name: value for name, value in spec.headers.items() if name.lower() != "authorization"}
        headers["Authorization"] = f"Bearer {token}"
        return headers

    async def unauthorized(self, spec: MCPClientSpec, caller: Caller | None, www_authenticate: str | None) -> bool:
        """The upstream rejected the caller's token: force a refresh; True when a new token was obtained.

        A 403 ``insufficient_scope`` is not fixed by a refresh: see ``_step_up``.
        """
        identity = identity_of(caller)
        if identity is None:
            return False
        challenge = bearer_challenge(www_authenticate)
        if challenge is not None and challenge.error == "insufficient_scope":
            await self._step_up(spec, identity, challenge.scopes)
            return False
        async with self.gateway.store.read() as session:
            row = await tokens.find(session, spec.id, identity)
            if row is None or row.status != tokens.ACTIVE:
                return False
            row_id = row.id
        # The token this request sent (headers_for runs in the same context just before), so that
        # several requests rejected at once — a call and the session's event stream — refresh once.
        stale = _SENT.get(None) or self._issued.get(row_id)
        try:
            fresh = await self._refresh(spec, row_id, force=True, stale=stale)
        except CredentialUnavailable as exc:
            log.warning("%s: the upstream rejected a per-user token that could not be renewed now: %s", spec.name, exc)
            return False
        return fresh is not None and _digest(fresh) != stale

    # -- internals ---------------------------------------------------------------------------------------------

    async def _step_up(self, spec: MCPClientSpec, identity: Identity, requested: tuple[str, ...] | None) -> bool:
        """Offer a login with wider scopes (MCP authorization 2025-11-25, step-up; RFC 6750 §3.1).

        The wanted scopes are the token's (else the template's) plus the challenge's ``scope``. When
        they add something and the grant has been stepped up fewer than ``STEP_UP_LIMIT`` times, the
        row becomes ``needs_reauth`` with them recorded (``step_up.describe``): the next ``headers_for``
        raises AuthRequired and its login asks for them. Otherwise the call fails with the upstream's error.
        Returns True when a login was offered.
        """
        async with self.gateway.store.read() as session:
            row = await tokens.find(session, spec.id, identity)
            row_id = row.id if row is not None else None
        if row_id is None:
            return False
        try:
            async with locks_for(self.gateway).locked(OAuthUserTokenRow, row_id) as (session, row):
                if row is None or row.status != tokens.ACTIVE:
                    return False  # another call already offered the login (or a refresh failed for good)
                template = await session.get(OAuthConfigRow, row.oauth_config_id) if row.oauth_config_id else None
                current = row.scopes or (template.scopes if template is not None else None) or ()
                wanted = step_up.widened(current, requested)
                previous = step_up.parse(row.status_reason)
                count = previous.count if previous is not None else 0
                reason = step_up.describe(step_up.StepUp(scopes=wanted, count=count + 1)) if wanted else ""
                if wanted is None or count >= step_up.STEP_UP_LIMIT or len(reason) > tokens.REASON_MAX:
                    log.info(
                        "%s: the upstream wants scope %s; no new login is offered (%d step-ups so far)",
                        spec.name,
                        " ".join(requested or ()) or "(unnamed)",
                        count,
                    )
                    return False
                tokens.mark_needs_reauth(row, reason)
        except RefreshLockTimeout as exc:
            log.warning("%s: could not record the upstream's wider scope: %s", spec.name, exc)
            return False
        self._issued.pop(row_id, None)
        log.info("%s: a per-user token needs a new login: %s", spec.name, reason)
        return True

    def _identity(self, spec: MCPClientSpec, caller: Caller | None) -> Identity:
        if caller is None:
            raise CredentialUnavailable(
                f"{spec.name} uses per-user OAuth: each caller connects their own account, so there is no "
                "shared connection"
            )
        identity = identity_of(caller)
        if identity is None:
            if not caller.on_mcp_gateway:
                raise CredentialUnavailable(needs_identity_message(spec.name))
            raise CredentialUnavailable(
                f"per-user OAuth for {spec.name} requires an identity: connect to /mcp through its OAuth "
                "sign-in or with a Virtual Key"
            )
        if spec.oauth_config_id is None:
            raise CredentialUnavailable(
                f"{spec.name} has no OAuth configuration; an administrator must verify it again"
            )
        return identity

    async def _token(self, spec: MCPClientSpec, identity: Identity) -> str | None:
        """A usable access token for the identity, refreshed when it is about to expire; None: log in."""
        async with self.gateway.store.read() as session:
            row = await tokens.find(session, spec.id, identity)
        if row is None or row.status != tokens.ACTIVE:
            return None
        if tokens.expires_within(row, self.expiry_margin):
            return await self._refresh(spec, row.id, force=False, stale=None)
        token = tokens.access_token(self.gateway.box, row)
        self._issued[row.id] = _digest(token)
        _SENT.set(self._issued[row.id])
        await self._touch(row)
        return token

    async def _touch(self, row: OAuthUserTokenRow) -> None:
        now = records.utcnow()
        last = records.as_utc(row.last_used_at)
        if last is not None and last > now - timedelta(seconds=TOUCH_INTERVAL):
            return
        async with self.gateway.store.transaction() as session:
            await session.execute(
                update(OAuthUserTokenRow)
                .where(OAuthUserTokenRow.id == row.id)
                .values(last_used_at=now)
                .execution_options(synchronize_session=False)
            )

    async def _refresh(self, spec: MCPClientSpec, row_id: str, *, force: bool, stale: str | None) -> str | None:
        """Refresh the row under its lock (re-read first); the new token, or None when a login is needed.

        Raises:
            CredentialUnavailable: the refresh failed for now and the current token is not usable.
        """
        try:
            async with locks_for(self.gateway).locked(OAuthUserTokenRow, row_id) as (session, row):
                outcome = await self._refresh_locked(session, spec, row, force, stale)
        except RefreshLockTimeout as exc:
            raise CredentialUnavailable(f"{spec.name}: token refresh is stuck elsewhere: {exc}") from None
        if isinstance(outcome, CredentialUnavailable):
            raise outcome
        if outcome is not None:
            self._issued[row_id] = _digest(outcome)
            _SENT.set(self._issued[row_id])
        return outcome

    async def _refresh_locked(
        self, session: AsyncSession, spec: MCPClientSpec, row: OAuthUserTokenRow | None, force: bool, stale: str | None
    ) -> str | CredentialUnavailable | None:
        """Runs with the lock held; returns failures instead of raising so that status changes commit."""
        if row is None or row.status != tokens.ACTIVE:
            return None
        box = self.gateway.box
        current = tokens.access_token(box, row)
        if force and stale is not None and _digest(current) != stale:
            return current  # refreshed meanwhile (another call, process or login)
        if not force and not tokens.expires_within(row, self.expiry_margin):
            return current
        usable = not force and not tokens.expires_within(row, 0)
        refresh_token = tokens.refresh_token(box, row)
        template = await session.get(OAuthConfigRow, row.oauth_config_id) if row.oauth_config_id else None
        if refresh_token is None or template is None:
            if usable:
                return current
            reason = "the upstream issued no refresh token" if refresh_token is None else "the OAuth setup was removed"
            tokens.mark_needs_reauth(row, f"{reason} and the access token is no longer valid")
            log.info("%s: a per-user token needs a new login (%s)", spec.name, reason)
            return None
        try:
            issued = await refresh_with_retries(
                records.upstream_client(box, template),
                refresh_token,
                attempts=self.attempts,
                backoff_base=self.backoff_base,
                http=self.http,
            )
        except TokenEndpointError as exc:
            if exc.kind == "permanent" or (exc.kind == "rejected" and not usable):
                # The grant is gone: this call may still use a token that has not expired yet, the next logs in.
                tokens.mark_needs_reauth(row, f"token refresh failed: {exc}")
                log.info("%s: a per-user token needs a new login: %s", spec.name, exc)
                return current if usable else None
            log.warning("%s: per-user token refresh failed (%s): %s", spec.name, exc.kind, exc)
            if usable:
                return current
            return CredentialUnavailable(f"{spec.name}: token refresh failed, try again shortly: {exc}")
        now = records.utcnow()
        tokens.apply_response(box, row, issued, now=now, new_grant=False)
        row.last_refreshed_at = now
        log.info("%s: per-user token refreshed", spec.name)
        return issued.access_token

    async def _auth_required(self, spec: MCPClientSpec, identity: Identity) -> AuthRequired:
        async with self.gateway.store.transaction() as session:
            handoff = await handoffs.create(
                self.gateway, session, mcp_client_id=spec.id, identity=identity, flow_id=None
            )
        return AuthRequired(
            mcp_client_id=spec.id,
            mcp_client_name=spec.name,
            authorize_url=handoff.url,
            session_id=handoff.handle,
            message=auth_required_message(spec.name),
        )
