"""Server-level upstream tokens: a valid access token on demand, refreshed under a cross-process lock.

Refresh failures are classified per reference.md §4.9 (see ``token_endpoint``): a permanent one
(401, ``invalid_grant``, ``unauthorized_client``) marks the configuration ``needs_reauth`` with the
reason; other 4xx fail fast; 429, 5xx and transport errors are retried with exponential backoff, and
the configuration stays ``authorized``. A refresh token returned by the server replaces the stored
one (rotation, RFC 6749 §6 / OAuth 2.1 §4.3.1); an absent ``expires_in`` means no known expiry (W17).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.mcp.runtime import Caller, CredentialUnavailable, MCPClientSpec
from heimdall.oauth.upstream import records, step_up
from heimdall.oauth.upstream.discovery import bearer_challenge
from heimdall.oauth.upstream.flow import UpstreamOAuthError
from heimdall.oauth.upstream.locking import RefreshLockTimeout, RowLocks
from heimdall.oauth.upstream.token_endpoint import (
    FailureKind,
    TokenEndpointError,
    TokenResponse,
    UpstreamClient,
    refresh_grant,
)
from heimdall.store.mcp_models import OAuthConfigRow, OAuthTokenRow
from heimdall.store.repos import Store

log = logging.getLogger(__name__)

#: Refresh inline when the token expires within this many seconds.
EXPIRY_MARGIN = 60.0


class TokenUnavailable(UpstreamOAuthError):
    """No usable token: the configuration is missing, not authorized, revoked, or needs re-authorization."""

    def __init__(self, status: str, reason: str | None) -> None:
        super().__init__(reason or f"OAuth status is {status}")
        self.status = status
        self.reason = reason or f"OAuth status is {status}"


class TokenRefreshError(UpstreamOAuthError):
    """The refresh failed; ``kind`` says whether it is permanent, rejected, or transient."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str = field(repr=False)
    expires_at: datetime | None


async def refresh_with_retries(
    upstream: UpstreamClient,
    refresh_token: str,
    *,
    attempts: int = 3,
    backoff_base: float = 1.0,
    http: httpx.AsyncClient | None = None,
) -> TokenResponse:
    """One refresh, retried on transient failures (``backoff_base`` × 1, 2, 4 … seconds between attempts).

    Raises:
        TokenEndpointError: the last failure, classified.
    """
    for attempt in range(attempts):
        try:
            return await refresh_grant(upstream, refresh_token, http=http)
        except TokenEndpointError as exc:
            if exc.kind != "transient" or attempt == attempts - 1:
                raise
            log.info("token refresh at %s failed (%s); retrying", upstream.token_url, exc)
            await asyncio.sleep(backoff_base * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


class UpstreamTokens:
    """Access tokens of ``oauth_configs`` rows, by configuration id."""

    def __init__(
        self,
        store: Store,
        *,
        attempts: int = 3,
        backoff_base: float = 1.0,
        expiry_margin: float = EXPIRY_MARGIN,
        http: httpx.AsyncClient | None = None,
        locks: RowLocks | None = None,
    ) -> None:
        self.store = store
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.expiry_margin = expiry_margin
        self.http = http
        self.locks = locks or RowLocks(store)

    def _expires_within(self, token: OAuthTokenRow, seconds: float) -> bool:
        expires_at = records.as_utc(token.expires_at)
        return expires_at is not None and expires_at <= records.utcnow() + timedelta(seconds=seconds)

    async def _read(self, session: AsyncSession, config: OAuthConfigRow | None) -> OAuthTokenRow:
        if config is None:
            raise TokenUnavailable("missing", "OAuth config not found")
        if config.status != "authorized" or config.token_id is None:
            if config.status == "authorized":
                raise TokenUnavailable(config.status, "no token is stored")
            raise TokenUnavailable(config.status, config.status_reason)
        token = await session.get(OAuthTokenRow, config.token_id, populate_existing=True)
        if token is None:
            raise TokenUnavailable(config.status, "no token is stored")
        return token

    async def get(self, oauth_config_id: str) -> AccessToken:
        """A valid access token, refreshed first when it expires within the margin.

        Raises:
            TokenUnavailable: nothing usable is stored, or the configuration needs re-authorization.
            TokenRefreshError: the token is expired and the refresh failed.
        """
        async with self.store.read() as session:
            config = await session.get(OAuthConfigRow, oauth_config_id)
            token = await self._read(session, config)
            if not self._expires_within(token, self.expiry_margin):
                return AccessToken(records.access_token(self.store.box, token), records.as_utc(token.expires_at))
        return await self.refresh(oauth_config_id)

    async def access_token(self, oauth_config_id: str) -> str:
        return (await self.get(oauth_config_id)).value

    async def refresh(
        self,
        oauth_config_id: str,
        *,
        force: bool = False,
        stale_access_token: str | None = None,
        within: float | None = None,
    ) -> AccessToken:
        """Refresh under the row's lock, unless the re-read row shows it is not needed any more.

        Without ``force``, refresh only when the token expires within ``within`` seconds (default:
        the margin). With ``force`` (the upstream rejected the token), refresh unless the stored
        token already differs from ``stale_access_token``, i.e. someone else refreshed meanwhile.

        Raises:
            TokenUnavailable: nothing usable is stored, or the configuration needs re-authorization.
            TokenRefreshError: the refresh failed (a permanent failure also marks ``needs_reauth``).
        """
        try:
            async with self.locks.locked(OAuthConfigRow, oauth_config_id) as (session, config):
                outcome = await self._refresh_locked(
                    session, config, force, stale_access_token, self.expiry_margin if within is None else within
                )
        except RefreshLockTimeout as exc:
            raise TokenRefreshError("transient", f"token refresh is stuck elsewhere: {exc}") from None
        if isinstance(outcome, UpstreamOAuthError):
            raise outcome
        return outcome

    async def _refresh_locked(
        self, session: AsyncSession, config: OAuthConfigRow | None, force: bool, stale: str | None, within: float
    ) -> AccessToken | UpstreamOAuthError:
        """Runs with the lock held; returns errors instead of raising so that status changes commit."""
        box = self.store.box
        try:
            token = await self._read(session, config)
        except TokenUnavailable as exc:
            return exc
        assert config is not None
        current = AccessToken(records.access_token(box, token), records.as_utc(token.expires_at))
        if force and stale is not None and current.value != stale:
            return current
        if not force and not self._expires_within(token, within):
            return current
        refresh_token = records.refresh_token(box, token)
        if refresh_token is None:
            if not force and not self._expires_within(token, 0):
                return current
            reason = "the upstream issued no refresh token and the access token is no longer valid"
            config.status, config.status_reason = "needs_reauth", reason
            log.warning("OAuth config %s needs re-authorization: %s", config.id, reason)
            return TokenRefreshError("permanent", reason)
        try:
            tokens = await refresh_with_retries(
                records.upstream_client(box, config),
                refresh_token,
                attempts=self.attempts,
                backoff_base=self.backoff_base,
                http=self.http,
            )
        except TokenEndpointError as exc:
            if exc.kind == "permanent":
                config.status, config.status_reason = "needs_reauth", f"token refresh failed: {exc}"
                log.warning("OAuth config %s needs re-authorization: %s", config.id, exc)
            else:
                log.warning("OAuth config %s: token refresh failed (%s): %s", config.id, exc.kind, exc)
                if not force and not self._expires_within(token, 0):
                    return current  # still valid for a moment; the next call tries again
            return TokenRefreshError(exc.kind, f"token refresh failed: {exc}")
        now = records.utcnow()
        records.apply_token_response(box, token, tokens, now=now)
        token.last_refreshed_at = now
        log.info("OAuth config %s: token refreshed", config.id)
        return AccessToken(tokens.access_token, records.as_utc(token.expires_at))

    async def require_scopes(self, oauth_config_id: str, requested: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """Step-up for a server-level token: the upstream needs ``requested`` (a 403 ``insufficient_scope``).

        Only an admin can log in again, so an authorized configuration whose token lacks some of
        them becomes ``needs_reauth`` with the widened scopes recorded in its reason (``step_up``);
        ``begin_authorization`` then asks for them. Returns the widened scopes, or None when nothing
        changed (no new scope, or the configuration is not authorized).
        """
        async with self.locks.locked(OAuthConfigRow, oauth_config_id) as (session, config):
            if config is None or config.status != "authorized":
                return None
            token = await session.get(OAuthTokenRow, config.token_id) if config.token_id else None
            current = (token.scopes if token is not None else None) or config.scopes or ()
            wanted = step_up.widened(current, requested)
            if wanted is None:
                return None
            reason = step_up.describe(step_up.StepUp(scopes=wanted))
            config.status, config.status_reason = "needs_reauth", reason
        log.warning("OAuth config %s needs re-authorization: %s", oauth_config_id, reason)
        return wanted

    async def expiring(self, within: float) -> list[str]:
        """Ids of authorized configurations whose token expires within ``within`` seconds and can be refreshed."""
        deadline = records.utcnow() + timedelta(seconds=within)
        query = (
            select(OAuthConfigRow.id)
            .join(OAuthTokenRow, OAuthConfigRow.token_id == OAuthTokenRow.id)
            .where(
                OAuthConfigRow.status == "authorized",
                OAuthTokenRow.expires_at.is_not(None),
                OAuthTokenRow.expires_at <= deadline,
                OAuthTokenRow.refresh_token_encrypted.is_not(None),
            )
            .order_by(OAuthTokenRow.expires_at)
        )
        async with self.store.read() as session:
            return list((await session.scalars(query)).all())


class ServerTokenCredentials:
    """``CredentialResolver`` for ``auth_type: "oauth"``: the server-level token, refreshed when needed."""

    def __init__(self, tokens: UpstreamTokens, *, cache_seconds: float = 5.0) -> None:
        self.tokens = tokens
        self.cache_seconds = cache_seconds
        #: config id → (the token last handed out, monotonic time until which it may be reused without a read)
        self._issued: dict[str, tuple[str, float]] = {}

    async def _token(self, oauth_config_id: str) -> str:
        issued = self._issued.get(oauth_config_id)
        if issued is not None and issued[1] > time.monotonic():
            return issued[0]
        token = await self.tokens.get(oauth_config_id)
        until = time.monotonic() + self.cache_seconds
        if token.expires_at is not None:
            left = (token.expires_at - records.utcnow()).total_seconds() - self.tokens.expiry_margin
            until = min(until, time.monotonic() + left)
        self._issued[oauth_config_id] = (token.value, until)
        return token.value

    async def headers_for(self, spec: MCPClientSpec, caller: Caller | None) -> dict[str, str]:
        """``Authorization: Bearer <token>`` over the client's static headers.

        Raises:
            CredentialUnavailable: no token, the configuration needs re-authorization, or the refresh failed.
        """
        if spec.oauth_config_id is None:
            raise CredentialUnavailable(f"{spec.name} needs re-authorization: it has no OAuth configuration")
        try:
            token = await self._token(spec.oauth_config_id)
        except TokenUnavailable as exc:
            raise CredentialUnavailable(f"{spec.name} needs re-authorization: {exc.reason}") from None
        except TokenRefreshError as exc:
            if exc.kind == "permanent":
                raise CredentialUnavailable(f"{spec.name} needs re-authorization: {exc.message}") from None
            raise CredentialUnavailable(f"{spec.name}: {exc.message}") from None
        headers = {name: value for name, value in spec.headers.items() if name.lower() != "authorization"}
        headers["Authorization"] = f"Bearer {token}"
        return headers

    async def unauthorized(self, spec: MCPClientSpec, caller: Caller | None, www_authenticate: str | None) -> bool:
        """The upstream rejected the token: refresh it (once, even if many calls failed together).

        A 403 ``insufficient_scope`` is not fixed by a refresh: it needs an admin's new login with
        wider scopes, so the configuration is marked ``needs_reauth`` (``UpstreamTokens.require_scopes``)
        and the call fails.
        """
        if spec.oauth_config_id is None:
            return False
        challenge = bearer_challenge(www_authenticate)
        if challenge is not None and challenge.error == "insufficient_scope":
            try:
                wanted = await self.tokens.require_scopes(spec.oauth_config_id, challenge.scopes)
            except RefreshLockTimeout as exc:
                log.warning("%s: could not record the upstream's wider scope: %s", spec.name, exc)
                return False
            if wanted is not None:
                self._issued.pop(spec.oauth_config_id, None)
            return False
        issued = self._issued.get(spec.oauth_config_id)
        stale = issued[0] if issued else None
        if stale is not None:
            # Keep the rejected token as the reference: concurrent failures then share one refresh.
            self._issued[spec.oauth_config_id] = (stale, 0.0)
        try:
            fresh = await self.tokens.refresh(spec.oauth_config_id, force=True, stale_access_token=stale)
        except UpstreamOAuthError as exc:
            log.warning("%s: the upstream rejected the OAuth token and it could not be renewed: %s", spec.name, exc)
            return False
        return fresh.value != stale


class BackgroundRefresher:
    """Every ``interval`` seconds, refresh server-level tokens that expire within ``window`` seconds."""

    def __init__(self, tokens: UpstreamTokens, *, interval: float = 300.0, window: float = 300.0) -> None:
        self.tokens = tokens
        self.interval = interval
        self.window = window
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """One pass; returns how many due tokens are fresh now (refreshed here, or meanwhile by another process)."""
        refreshed = 0
        for config_id in await self.tokens.expiring(self.window):
            try:
                await self.tokens.refresh(config_id, within=self.window)
                refreshed += 1
            except UpstreamOAuthError as exc:
                log.warning("background refresh of OAuth config %s failed: %s", config_id, exc)
        return refreshed

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("background OAuth token refresh pass failed")
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="heimdall-oauth-token-refresher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
