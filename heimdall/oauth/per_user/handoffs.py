"""Links that start an upstream login (W1, W9, W12, W19): a handoff id, then a browser-bound attempt.

::

    lazy auth / consent "Connect" ── create() ──▶ <base>/oauth/connect/<handoff id>
        (32 random bytes; only a keyed hash is stored, with the MCP client, the identity,
         the consent flow if any, handoff_ttl, single use)
                  │
    GET  ─────────┴──▶ page: "Connect <service> for <identity>" + Continue (nothing consumed:
                       link previews are harmless); sets a page cookie the CSRF token is bound to
    POST (CSRF) ──▶ begin_login(): handoff consumed atomically ──▶ oauth_user_attempts row:
                       hash(state), PKCE verifier (encrypted), redirect_uri pinned (W9),
                       hash(browser binding), flow_ttl, and in ``extra`` the wider scopes of a
                       pending step-up (the identity's row is needs_reauth for them, see step_up)
                  ──▶ cookie __heimdall_upstream_attempt=<binding> (Path=/api/oauth/callback)
                  ──▶ 302 upstream authorize URL (template's own query kept, W26; scope, resource, S256)

The callback (``callback.py``) accepts the code only from the browser holding the binding cookie,
so a link forwarded to someone else cannot attach their upstream account to the sender's identity.
"""

from __future__ import annotations

import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.gateway import Gateway
from heimdall.oauth.per_user import tokens
from heimdall.oauth.per_user.identity import Identity, describe, parse_kind, still_valid
from heimdall.oauth.upstream import records, step_up
from heimdall.oauth.upstream.flow import build_authorize_url, callback_url
from heimdall.oauth.upstream.pkce import new_state, new_verifier, s256_challenge
from heimdall.oauth.upstream.step_up import StepUp
from heimdall.store.mcp_models import MCPClientRow, OAuthConfigRow
from heimdall.store.per_user_models import OAuthHandoffRow, OAuthUserAttemptRow

CONNECT_PATH = "/oauth/connect"
#: Per-attempt browser binding, read only by the callback.
ATTEMPT_COOKIE = "__heimdall_upstream_attempt"
ATTEMPT_COOKIE_PATH = "/api/oauth/callback"
#: Per-browser secret the handoff page's CSRF token is bound to.
PAGE_COOKIE = "__heimdall_handoff"
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")

INVALID = "This connection link is not valid. Start the connection again from your application."
USED = "This connection link was already used. Each link works once: start the connection again from your application."
EXPIRED = "This connection link has expired. Start the connection again from your application."
BAD_CSRF = "The form has expired or was not sent by this page. Open the connection link again."
SERVICE_GONE = "This service is no longer available for per-user sign-in. Ask your administrator."
IDENTITY_GONE = "The identity this link connects is no longer active."


class HandoffError(Exception):
    """The link cannot be used; ``message`` is shown to the user."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class Handoff:
    url: str
    #: A public reference to the handoff (not the secret id), e.g. for ``mcp_auth_required.session_id``.
    handle: str


@dataclass(frozen=True, slots=True)
class HandoffPage:
    service: str
    identity: str
    expires_minutes: int


@dataclass(frozen=True, slots=True)
class LoginStart:
    authorize_url: str
    binding: str
    max_age: int


def _id_hash(gateway: Gateway, handoff_id: str) -> str:
    return gateway.box.lookup_hash(f"oauth-handoff:{handoff_id}")


def binding_hash(gateway: Gateway, binding: str) -> str:
    return gateway.box.lookup_hash(f"oauth-attempt-binding:{binding}")


def csrf_token(gateway: Gateway, handoff_id: str, page_secret: str) -> str:
    """Derivable only with the server key, the handoff id and this browser's page cookie."""
    return gateway.box.lookup_hash(f"oauth-handoff-csrf:{handoff_id}:{page_secret}")


def new_page_secret() -> str:
    return secrets.token_urlsafe(32)


def valid_secret(value: str | None) -> bool:
    return bool(value) and _ID_PATTERN.match(value or "") is not None


async def create(
    gateway: Gateway, session: AsyncSession, *, mcp_client_id: str, identity: Identity, flow_id: str | None
) -> Handoff:
    """Add a handoff row to ``session`` (committed by the caller) and return its absolute link."""
    handoff_id = secrets.token_urlsafe(32)
    id_hash = _id_hash(gateway, handoff_id)
    ttl = gateway.snapshot.per_user_oauth.handoff_ttl
    session.add(
        OAuthHandoffRow(
            id_hash=id_hash,
            mcp_client_id=mcp_client_id,
            identity_kind=identity.kind,
            identity=identity.value,
            flow_id=flow_id,
            used=False,
            expires_at=records.utcnow() + timedelta(seconds=ttl),
        )
    )
    return Handoff(
        url=f"{gateway.settings.base_url.rstrip('/')}{CONNECT_PATH}/{handoff_id}", handle=f"h-{id_hash[:24]}"
    )


def _identity(row: OAuthHandoffRow) -> Identity:
    kind = parse_kind(row.identity_kind)
    if kind is None:
        raise HandoffError(INVALID)
    return Identity(kind, row.identity)


async def _live(session: AsyncSession, gateway: Gateway, handoff_id: str) -> OAuthHandoffRow:
    if not valid_secret(handoff_id):
        raise HandoffError(INVALID)
    row = await session.get(OAuthHandoffRow, _id_hash(gateway, handoff_id))
    if row is None:
        raise HandoffError(INVALID)
    if row.used:
        raise HandoffError(USED)
    expires_at = records.as_utc(row.expires_at)
    if expires_at is None or expires_at <= records.utcnow():
        raise HandoffError(EXPIRED)
    return row


async def _client(session: AsyncSession, mcp_client_id: str) -> tuple[MCPClientRow, OAuthConfigRow]:
    client = await session.get(MCPClientRow, mcp_client_id)
    if client is None or client.auth_type != "per_user_oauth" or client.status != "active":
        raise HandoffError(SERVICE_GONE)
    template = await session.get(OAuthConfigRow, client.oauth_config_id) if client.oauth_config_id else None
    if template is None:
        raise HandoffError(SERVICE_GONE)
    return client, template


async def page(gateway: Gateway, handoff_id: str) -> HandoffPage:
    """What the link's page shows. Reads only: a GET (a link preview) never consumes the handoff.

    Raises:
        HandoffError: unknown, used or expired link, or the service is gone.
    """
    async with gateway.store.read() as session:
        row = await _live(session, gateway, handoff_id)
        client, _ = await _client(session, row.mcp_client_id)
        expires_at = records.as_utc(row.expires_at)
    assert expires_at is not None
    left = max(1, int((expires_at - records.utcnow()).total_seconds() // 60))
    return HandoffPage(service=client.name, identity=describe(gateway, _identity(row)), expires_minutes=left)


def check_csrf(gateway: Gateway, handoff_id: str, page_secret: str | None, submitted: str | None) -> None:
    """Raises HandoffError(403) unless ``submitted`` is the token of this handoff and this browser."""
    if not valid_secret(handoff_id) or not valid_secret(page_secret) or not submitted or len(submitted) > 128:
        raise HandoffError(BAD_CSRF, 403)
    assert page_secret is not None
    if not hmac.compare_digest(csrf_token(gateway, handoff_id, page_secret), submitted):
        raise HandoffError(BAD_CSRF, 403)


async def begin_login(gateway: Gateway, handoff_id: str) -> LoginStart:
    """Consume the handoff and start the upstream login in one transaction.

    Raises:
        HandoffError: unknown, used or expired link, the service or the identity is gone (nothing changes).
    """
    box = gateway.box
    ttl = gateway.snapshot.per_user_oauth.flow_ttl
    async with gateway.store.transaction() as session:
        row = await _live(session, gateway, handoff_id)
        # Single use, even across processes: only one transaction flips ``used``.
        claimed = await session.execute(
            update(OAuthHandoffRow)
            .where(OAuthHandoffRow.id_hash == row.id_hash, OAuthHandoffRow.used.is_(False))
            .values(used=True, updated_at=records.utcnow())
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            raise HandoffError(USED)
        identity = _identity(row)
        if not still_valid(gateway, identity):
            raise HandoffError(IDENTITY_GONE)
        client, template = await _client(session, row.mcp_client_id)
        step = await _pending_step_up(session, client.id, identity)
        state, verifier, binding = new_state(), new_verifier(), secrets.token_urlsafe(32)
        redirect_uri = callback_url(gateway.settings.base_url)
        attempt = OAuthUserAttemptRow(
            id=uuid.uuid4().hex,
            state_hash=box.lookup_hash(state),
            mcp_client_id=client.id,
            oauth_config_id=template.id,
            identity_kind=identity.kind,
            identity=identity.value,
            redirect_uri=redirect_uri,
            code_verifier_encrypted="",
            browser_binding_hash=binding_hash(gateway, binding),
            flow_id=row.flow_id,
            status="pending",
            extra=attempt_extra(step),
            expires_at=records.utcnow() + timedelta(seconds=ttl),
        )
        attempt.code_verifier_encrypted = box.encrypt(verifier, context=verifier_context(attempt.id))
        session.add(attempt)
        upstream = records.upstream_client(box, template)
    url = build_authorize_url(
        upstream,
        state=state,
        code_challenge=s256_challenge(verifier),
        redirect_uri=redirect_uri,
        scopes=step.scopes if step is not None else None,
    )
    return LoginStart(authorize_url=url, binding=binding, max_age=ttl)


async def _pending_step_up(session: AsyncSession, mcp_client_id: str, identity: Identity) -> StepUp | None:
    """The wider scopes the identity's token waits for (its row is ``needs_reauth`` after a step-up)."""
    token = await tokens.find(session, mcp_client_id, identity)
    if token is None or token.status != tokens.NEEDS_REAUTH:
        return None
    return step_up.parse(token.status_reason)


def attempt_extra(step: StepUp | None) -> dict[str, Any] | None:
    """What an attempt remembers of a step-up: ``{"scopes": [...], "step_up": <n>}``."""
    return None if step is None else {"scopes": list(step.scopes), "step_up": step.count}


def attempt_step_up(attempt: OAuthUserAttemptRow) -> StepUp | None:
    """The step-up an attempt asked for (``attempt_extra``), if any."""
    extra = attempt.extra or {}
    scopes, count = extra.get("scopes"), extra.get("step_up")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes) or not isinstance(count, int):
        return None
    return StepUp(scopes=tuple(scopes), count=count)


def verifier_context(attempt_id: str) -> str:
    return f"oauth_user_attempt:{attempt_id}:verifier"
