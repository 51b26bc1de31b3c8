"""The consent flow between ``/authorize`` and the client's redirect URI (reference.md §2.3, improved).

A flow belongs to the browser that started it: ``/authorize`` set the ``__bifrost_flow_secret``
cookie and stored its keyed hash; every page and form checks it (403 otherwise). Every form also
carries a CSRF token: a keyed hash of the flow id and the browser secret, itself stored as a
keyed hash (``csrf_hash``), compared in constant time. A wrong or missing token is a 403 and
changes nothing.

Steps: identity (virtual key, an authenticated user id, or Skip) → services (connect upstream
accounts; ``heimdall.oauth.per_user.connections``) → Finish. Finish deletes the flow (only if it is
still there and unexpired), creates the grant and a code in one transaction, and redirects to the
client with ``code``, ``state`` and ``iss``. A second Finish gets 409; an expired flow 410.

Other modules (the OIDC login) set the identity with ``set_identity``.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlencode

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.crypto import SecretBox
from heimdall.gateway import Gateway
from heimdall.oauth.server import tokens, urls
from heimdall.oauth.upstream.records import as_utc, utcnow
from heimdall.store import repos
from heimdall.store.per_user_models import ASGrantRow, ASPendingFlowRow

FLOW_COOKIE = "__bifrost_flow_secret"
MAX_FLOW_ID = 64
MAX_USER_ID = 255
MAX_VK_LENGTH = 512

MISSING_FLOW_ID = "flow_id is required"
INVALID_FLOW = "Invalid or expired consent flow. Please restart the authentication process."
WRONG_BROWSER = "Flow does not belong to this browser session. Please restart the authentication process."
BAD_CSRF = "The form has expired or was not sent by this page (invalid CSRF token). Reload the page and try again."
FLOW_EXPIRED = "Consent flow has expired. Please restart the authentication process."
ALREADY_SUBMITTED = "Consent flow has already been submitted"
SELF_DECLARED_DISABLED = "Typing a User ID is disabled on this gateway. Sign in or use a Virtual Key."

VK_EMPTY = "Please enter a Virtual Key."
VK_INVALID = "Virtual Key not found or inactive. Please check and try again."
USER_EMPTY = "Please enter a User ID."
USER_TOO_LONG = "User ID is too long (max 255 characters)."
IDENTITY_REQUIRED = "An identity (Virtual Key or User ID) is required. Please choose one to continue."
CHOOSE_FIRST = "Please choose how to identify yourself first."
#: The only messages the identity page shows from its ``error`` parameter (no text injection via links).
PAGE_MESSAGES = frozenset({VK_EMPTY, VK_INVALID, USER_EMPTY, USER_TOO_LONG, IDENTITY_REQUIRED, CHOOSE_FIRST})

IdentityKind = Literal["vk", "user", "session"]


class ConsentError(Exception):
    """A consent request that cannot proceed; ``message`` is shown to the user."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def csrf_token(box: SecretBox, flow_id: str, browser_secret: str) -> str:
    """The flow's CSRF token: derivable only with the server key and this browser's flow secret."""
    return box.lookup_hash(f"consent-csrf:{flow_id}:{browser_secret}")


def grant_id_for(box: SecretBox, flow_id: str) -> str:
    """The id of the grant a flow's Finish creates (so a second Finish can be told apart: 409)."""
    return box.lookup_hash(f"as-grant:{flow_id}")


def identity_page(flow_id: str, error: str | None = None) -> str:
    query = {"flow_id": flow_id, **({"error": error} if error else {})}
    return f"{urls.CONSENT_PATH}?{urlencode(query)}"


def services_page(flow_id: str) -> str:
    return f"{urls.SERVICES_PATH}?{urlencode({'flow_id': flow_id})}"


def _expired(flow: ASPendingFlowRow, now: datetime | None = None) -> bool:
    expires = as_utc(flow.expires_at)
    return expires is None or expires <= (now or utcnow())


def _bound(box: SecretBox, flow: ASPendingFlowRow, browser_secret: str | None) -> bool:
    if not browser_secret or len(browser_secret) > 256:
        return False
    return hmac.compare_digest(box.lookup_hash(browser_secret), flow.browser_secret_hash)


def check_csrf(box: SecretBox, flow: ASPendingFlowRow, submitted: str | None) -> None:
    """Raises ConsentError(403) unless ``submitted`` is this flow's CSRF token."""
    if not submitted or len(submitted) > 256 or not hmac.compare_digest(box.lookup_hash(submitted), flow.csrf_hash):
        raise ConsentError(403, BAD_CSRF)


def _valid_flow_id(flow_id: str | None) -> str:
    if not flow_id:
        raise ConsentError(400, MISSING_FLOW_ID)
    if len(flow_id) > MAX_FLOW_ID or "\x00" in flow_id:
        raise ConsentError(400, INVALID_FLOW)
    return flow_id


async def load_flow(
    session: AsyncSession, box: SecretBox, flow_id: str | None, browser_secret: str | None
) -> ASPendingFlowRow:
    """The live flow with this id, if it belongs to this browser.

    Raises:
        ConsentError: 400 missing id, unknown or expired flow; 403 another browser's flow.
    """
    flow = await session.get(ASPendingFlowRow, _valid_flow_id(flow_id))
    if flow is None or _expired(flow):
        raise ConsentError(400, INVALID_FLOW)
    if not _bound(box, flow, browser_secret):
        raise ConsentError(403, WRONG_BROWSER)
    return flow


async def set_identity(
    session: AsyncSession, flow: ASPendingFlowRow, kind: IdentityKind | None, identity: str | None
) -> None:
    """Record the identity chosen on a (loaded, browser-checked) flow; ``None`` means Skip."""
    flow.identity_kind = kind
    flow.identity = identity
    flow.identity_chosen = True
    session.add(flow)


class _BackToIdentity(Exception):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@dataclass(frozen=True, slots=True)
class FormInput:
    flow_id: str | None
    csrf_token: str | None
    browser_secret: str | None
    value: str | None = None


async def choose_virtual_key(gateway: Gateway, form: FormInput) -> str:
    """The Virtual Key option: the key must exist in the store and be active. Returns the next location."""
    async with gateway.store.transaction() as session:
        flow = await load_flow(session, gateway.box, form.flow_id, form.browser_secret)
        check_csrf(gateway.box, flow, form.csrf_token)
        value = (form.value or "").strip()
        if not value:
            return identity_page(flow.id, VK_EMPTY)
        key = await repos.get_virtual_key_by_value(session, gateway.box, value) if len(value) <= MAX_VK_LENGTH else None
        if key is None or not key.is_active:
            return identity_page(flow.id, VK_INVALID)
        await set_identity(session, flow, "vk", key.id)
        return services_page(flow.id)


async def choose_user_id(gateway: Gateway, form: FormInput) -> str:
    """The self-declared User ID option; only with ``allow_self_declared_user_ids`` (W2)."""
    if not gateway.snapshot.per_user_oauth.allow_self_declared_user_ids:
        raise ConsentError(403, SELF_DECLARED_DISABLED)
    async with gateway.store.transaction() as session:
        flow = await load_flow(session, gateway.box, form.flow_id, form.browser_secret)
        check_csrf(gateway.box, flow, form.csrf_token)
        user_id = (form.value or "").strip()
        if not user_id:
            return identity_page(flow.id, USER_EMPTY)
        if len(user_id) > MAX_USER_ID or "\x00" in user_id:
            return identity_page(flow.id, USER_TOO_LONG)
        await set_identity(session, flow, "user", user_id)
        return services_page(flow.id)


async def choose_skip(gateway: Gateway, form: FormInput) -> str:
    """Skip: no identity now; Finish mints an anonymous session identity."""
    async with gateway.store.transaction() as session:
        flow = await load_flow(session, gateway.box, form.flow_id, form.browser_secret)
        check_csrf(gateway.box, flow, form.csrf_token)
        if gateway.snapshot.client.enforce_auth_on_inference:
            return identity_page(flow.id, IDENTITY_REQUIRED)
        await set_identity(session, flow, None, None)
        return services_page(flow.id)


async def _finish_in(session: AsyncSession, gateway: Gateway, form: FormInput) -> str:
    box = gateway.box
    flow_id = _valid_flow_id(form.flow_id)
    now = utcnow()
    # Delete first: the write lock serializes concurrent Finishes (SQLite and PostgreSQL alike).
    # Any check below that fails raises, and the transaction rolls the delete back.
    deleted = await session.execute(
        delete(ASPendingFlowRow)
        .where(ASPendingFlowRow.id == flow_id, ASPendingFlowRow.expires_at > now)
        .returning(ASPendingFlowRow)
        .execution_options(synchronize_session=False)
    )
    flow = deleted.scalars().first()
    if flow is None:
        if await session.get(ASPendingFlowRow, flow_id) is not None:
            raise ConsentError(410, FLOW_EXPIRED)
        if await session.get(ASGrantRow, grant_id_for(box, flow_id)) is not None:
            raise ConsentError(409, ALREADY_SUBMITTED)
        raise ConsentError(400, INVALID_FLOW)
    if not _bound(box, flow, form.browser_secret):
        raise ConsentError(403, WRONG_BROWSER)
    check_csrf(box, flow, form.csrf_token)
    if not flow.identity_chosen:
        raise _BackToIdentity(identity_page(flow.id, CHOOSE_FIRST))
    kind, identity = flow.identity_kind, flow.identity
    if kind is None or identity is None:
        if gateway.snapshot.client.enforce_auth_on_inference:
            raise _BackToIdentity(identity_page(flow.id, IDENTITY_REQUIRED))
        kind, identity = "session", secrets.token_urlsafe(32)
    config = gateway.snapshot.per_user_oauth
    grant = ASGrantRow(
        id=grant_id_for(box, flow_id),
        client_id=flow.client_id,
        identity_kind=kind,
        identity=identity,
        scope=flow.scope,
        resource=flow.resource or urls.resource_url(gateway),
        # until the code is exchanged; the exchange extends it to the refresh tokens' lifetime
        expires_at=now + timedelta(seconds=config.code_ttl),
    )
    session.add(grant)
    await session.flush()
    code = await tokens.create_code(
        session,
        box,
        grant_id=grant.id,
        client_id=flow.client_id,
        redirect_uri=flow.redirect_uri,
        code_challenge=flow.code_challenge,
        ttl=config.code_ttl,
    )
    return urls.add_query(flow.redirect_uri, {"code": code, "state": flow.state or None, "iss": urls.issuer(gateway)})


async def finish(gateway: Gateway, form: FormInput) -> str:
    """Finish Setup: grant + code in one transaction; returns where to send the browser.

    Raises:
        ConsentError: 400 unknown flow, 403 another browser or bad CSRF token, 409 already
            submitted, 410 expired.
    """
    try:
        async with gateway.store.transaction() as session:
            return await _finish_in(session, gateway, form)
    except _BackToIdentity as back:  # the transaction rolled back: the flow is kept
        return back.location
