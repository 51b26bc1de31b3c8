"""The authorization-code flow with an upstream MCP server's authorization server (OAuth 2.1, PKCE S256).

::

    admin ── start_oauth_for_client ──▶ discovery + registration (if no client_id)
                  │                     oauth_configs row: status pending, hash(state), PKCE verifier (encrypted),
                  │                     pinned redirect_uri, resource, pending MCP client (encrypted), 15 minutes
                  ▼
    browser ──▶ authorize_url (the configured URL's own query kept, W26) ──▶ upstream login
                  │
                  ▼
    GET <public_url>/api/oauth/callback?code&state ── complete_authorization:
                  state by hash, single use, unexpired, pending ──▶ code + verifier + pinned redirect_uri + resource
                  ──▶ oauth_tokens row (encrypted) ──▶ config authorized

The same rows serve ``per_user_oauth`` templates (``purpose="per_user"``): the admin's verification
login runs this flow, then ``discard_token`` drops the admin's token and keeps the template.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.crypto import SecretBox
from heimdall.mcp.config import OAuthSettings
from heimdall.oauth.upstream import records
from heimdall.oauth.upstream.discovery import Discovery, DiscoveryError, discover, issuers_match
from heimdall.oauth.upstream.pkce import new_state, new_verifier, s256_challenge
from heimdall.oauth.upstream.registration import RegistrationError, register_client, secret_auth_method
from heimdall.oauth.upstream.step_up import parse as parse_step_up
from heimdall.oauth.upstream.token_endpoint import TokenEndpointError, UpstreamClient, exchange_code
from heimdall.store.mcp_models import OAuthConfigRow, OAuthTokenRow
from heimdall.store.repos import Store

log = logging.getLogger(__name__)

PENDING_TTL = timedelta(minutes=15)
CALLBACK_PATH = "/api/oauth/callback"
Purpose = Literal["server", "per_user"]


class PendingLogin(TypedDict):
    """What the MCP client API hands the admin to open in a browser."""

    oauth_config_id: str
    authorize_url: str
    #: ISO 8601 (UTC) time at which the login's ``state`` stops being accepted.
    expires_at: str


class UpstreamOAuthError(Exception):
    """Base of this package's errors; ``message`` is safe to show to an admin (it never holds secrets)."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class OAuthSetupError(UpstreamOAuthError):
    """The login could not be started: missing settings, or discovery/registration failed."""


class OAuthConfigNotFound(UpstreamOAuthError):
    status_code = 404

    def __init__(self, oauth_config_id: str) -> None:
        super().__init__("OAuth config not found")
        self.oauth_config_id = oauth_config_id


class UnknownState(UpstreamOAuthError):
    """No pending login has this ``state`` (never issued, already used, or another handler's)."""

    def __init__(self) -> None:
        super().__init__("unknown or already used authorization state")


class AuthorizationFailed(UpstreamOAuthError):
    """The login was found but cannot complete (expired, issuer mismatch, token exchange refused)."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


def callback_url(base_url: str) -> str:
    """The one redirect URI of every upstream login, from the configured public URL (W15)."""
    return base_url.rstrip("/") + CALLBACK_PATH


def merge_query(url: str, params: Mapping[str, str]) -> str:
    """Add ``params`` to ``url``, keeping its own query parameters (W26); ours replace same-named ones."""
    parts = urlsplit(url)
    kept = [(name, value) for name, value in parse_qsl(parts.query, keep_blank_values=True) if name not in params]
    query = urlencode([*kept, *params.items()], quote_via=quote)
    return urlunsplit(parts._replace(query=query))


def build_authorize_url(
    upstream: UpstreamClient,
    *,
    state: str,
    code_challenge: str,
    redirect_uri: str,
    scopes: Sequence[str] | None = None,
) -> str:
    """The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, RFC 8707 §2.1).

    ``scopes`` replaces the client's own (a step-up login asks for wider ones).
    """
    params = {
        "response_type": "code",
        "client_id": upstream.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    wanted = upstream.scopes if scopes is None else scopes
    if wanted:
        params["scope"] = " ".join(wanted)
    if upstream.resource:
        params["resource"] = upstream.resource
    return merge_query(upstream.authorize_url, params)


# --- start ------------------------------------------------------------------------------------


async def _discover(server_url: str | None, oauth: OAuthSettings, http: httpx.AsyncClient | None) -> Discovery | None:
    needs_discovery = not (oauth.authorize_url and oauth.token_url) or not (oauth.client_id or oauth.registration_url)
    if not server_url:
        if not needs_discovery:
            return None
        if not oauth.client_id:
            raise OAuthSetupError(
                "Either client_id must be provided, or server URL must be set for OAuth discovery and "
                "dynamic client registration"
            )
        raise OAuthSetupError(
            "server_url is required for OAuth discovery when authorize_url or token_url is not provided"
        )
    try:
        return await discover(server_url, scopes=oauth.scopes, http=http)
    except DiscoveryError as exc:
        if needs_discovery:
            raise OAuthSetupError(f"OAuth discovery failed: {exc}") from None
        log.info("OAuth discovery for %s failed (%s); using the configured endpoints", server_url, exc)
        return None


async def resolve_client(
    server_url: str | None, oauth: OAuthSettings, *, redirect_uri: str, http: httpx.AsyncClient | None = None
) -> tuple[UpstreamClient, str | None]:
    """Configured values over discovered ones; registers Heimdall when no ``client_id`` was given.

    Returns the client and the registration endpoint used or found.

    Raises:
        OAuthSetupError: settings are missing, or discovery or registration failed.
    """
    found = await _discover(server_url, oauth, http)
    metadata = found.auth_server if found else None
    if metadata is not None and oauth.token_url and oauth.token_url != metadata.token_endpoint:
        metadata = None  # the admin points at another authorization server: its metadata does not apply
    authorize_url = oauth.authorize_url or (metadata.authorization_endpoint if metadata else "")
    token_url = oauth.token_url or (metadata.token_endpoint if metadata else "")
    if not authorize_url or not token_url:
        raise OAuthSetupError("authorize_url and token_url could not be discovered; configure them")
    scopes = found.scopes if found else tuple(oauth.scopes or ())
    methods = metadata.token_endpoint_auth_methods_supported if metadata else None
    registration_url = oauth.registration_url or (metadata.registration_endpoint if metadata else None)
    if oauth.client_id:
        client_id, secret = oauth.client_id, oauth.client_secret or None
        method = secret_auth_method(methods) if secret else "none"
    else:
        if not registration_url:
            raise OAuthSetupError(
                "client_id is required when the OAuth provider does not support dynamic client registration (RFC 7591)"
            )
        try:
            registered = await register_client(
                registration_url, redirect_uri=redirect_uri, scopes=scopes, auth_methods_supported=methods, http=http
            )
        except RegistrationError as exc:
            raise OAuthSetupError(f"dynamic client registration failed: {exc}") from None
        client_id, secret = registered.client_id, registered.client_secret
        method = registered.token_endpoint_auth_method
    client = UpstreamClient(
        client_id=client_id,
        client_secret=secret,
        auth_method=method,
        authorize_url=authorize_url,
        token_url=token_url,
        revocation_url=metadata.revocation_endpoint if metadata else None,
        scopes=scopes,
        resource=found.resource if found else server_url,
        issuer=metadata.issuer if metadata else None,
    )
    return client, registration_url


def _new_attempt(box: SecretBox, row: OAuthConfigRow, *, redirect_uri: str, now: datetime) -> str:
    """Arm ``row`` with a fresh state, verifier and expiry; returns the authorize URL."""
    state, verifier = new_state(), new_verifier()
    row.state_hash = box.lookup_hash(state)
    records.set_verifier(box, row, verifier)
    row.redirect_uri = redirect_uri
    row.status = "pending"
    row.status_reason = None
    row.expires_at = now + PENDING_TTL
    challenge = s256_challenge(verifier)
    upstream = records.upstream_client(box, row)
    return build_authorize_url(upstream, state=state, code_challenge=challenge, redirect_uri=redirect_uri)


def _pending(row: OAuthConfigRow, authorize_url: str) -> PendingLogin:
    expires_at = records.as_utc(row.expires_at)
    assert expires_at is not None
    return PendingLogin(oauth_config_id=row.id, authorize_url=authorize_url, expires_at=expires_at.isoformat())


async def start_oauth_for_client(
    store: Store,
    *,
    base_url: str,
    server_url: str | None,
    oauth: OAuthSettings,
    purpose: Purpose = "server",
    pending_client: dict[str, Any] | None = None,
    http: httpx.AsyncClient | None = None,
) -> PendingLogin:
    """Create a pending login for an MCP client that is not saved yet.

    ``pending_client`` (the MCP client config as JSON) is stored encrypted on the new row and handed
    back by ``take_pending_client`` once the login completed.

    Raises:
        OAuthSetupError: settings are missing, or discovery or registration failed.
    """
    redirect_uri = callback_url(base_url)
    client, registration_url = await resolve_client(server_url, oauth, redirect_uri=redirect_uri, http=http)
    now = records.utcnow()
    row = OAuthConfigRow(
        id=str(uuid.uuid4()),
        purpose=purpose,
        server_url=server_url or "",
        client_id=client.client_id,
        token_endpoint_auth_method=client.auth_method,
        authorize_url=client.authorize_url,
        token_url=client.token_url,
        registration_url=registration_url,
        revocation_url=client.revocation_url,
        issuer=client.issuer,
        resource=client.resource,
        scopes=list(client.scopes),
    )
    records.set_client_secret(store.box, row, client.client_secret)
    records.set_pending_client(store.box, row, pending_client)
    authorize_url = _new_attempt(store.box, row, redirect_uri=redirect_uri, now=now)
    async with store.transaction() as session:
        session.add(row)
    log.info("OAuth config %s: login started for %s (%s)", row.id, server_url or client.authorize_url, purpose)
    return _pending(row, authorize_url)


async def begin_authorization(store: Store, oauth_config_id: str, *, base_url: str) -> PendingLogin:
    """Start a new login on an existing configuration (re-authorization after ``needs_reauth``).

    When the upstream asked for wider scopes (step-up, see ``step_up``), the configuration takes them
    on now, so this login and every later one asks for them.

    Raises:
        OAuthConfigNotFound: no such configuration.
    """
    async with store.transaction() as session:
        row = await session.get(OAuthConfigRow, oauth_config_id, with_for_update=True)
        if row is None:
            raise OAuthConfigNotFound(oauth_config_id)
        step = parse_step_up(row.status_reason) if row.status == "needs_reauth" else None
        if step is not None:
            row.scopes = list(step.scopes)
        authorize_url = _new_attempt(store.box, row, redirect_uri=callback_url(base_url), now=records.utcnow())
    return _pending(row, authorize_url)


# --- complete ---------------------------------------------------------------------------------


async def _set_status(store: Store, oauth_config_id: str, status: str, reason: str | None) -> None:
    async with store.transaction() as session:
        row = await session.get(OAuthConfigRow, oauth_config_id, with_for_update=True)
        if row is not None:
            row.status = status
            row.status_reason = reason
            row.code_verifier_encrypted = None


async def _claim(store: Store, state: str) -> tuple[str, UpstreamClient, str, str] | str:
    """Consume the state (single use, even across processes); the attempt's data, or why it cannot go on."""
    state_hash = store.box.lookup_hash(state)
    async with store.transaction() as session:
        claimed = await session.scalar(
            update(OAuthConfigRow)
            .where(OAuthConfigRow.state_hash == state_hash, OAuthConfigRow.status == "pending")
            .values(state_hash=None, updated_at=records.utcnow())
            .returning(OAuthConfigRow.id)
        )
        if claimed is None:
            raise UnknownState()
        row = await session.get(OAuthConfigRow, claimed, populate_existing=True)
        assert row is not None
        expires_at = records.as_utc(row.expires_at)
        if expires_at is None or expires_at <= records.utcnow():
            row.status, row.status_reason, row.code_verifier_encrypted = "expired", "the login expired", None
            return "the authorization request has expired; please start again"
        code_verifier = records.verifier(store.box, row)
        if code_verifier is None:
            return "the authorization request has no PKCE verifier"
        return row.id, records.upstream_client(store.box, row), code_verifier, row.redirect_uri


async def complete_authorization(
    store: Store, *, state: str, code: str, iss: str | None = None, http: httpx.AsyncClient | None = None
) -> OAuthConfigRow:
    """Finish a login at the callback: check the state, redeem the code, store the token.

    Raises:
        UnknownState: the state is not a pending login of ``oauth_configs`` (try other handlers).
        AuthorizationFailed: the login expired, the issuer did not match, or the token exchange failed.
    """
    claim = await _claim(store, state)
    if isinstance(claim, str):
        raise AuthorizationFailed(claim)
    config_id, upstream, code_verifier, redirect_uri = claim
    if iss is not None and upstream.issuer and not issuers_match(iss, upstream.issuer):
        # RFC 9207 §2.4: a response from another issuer is a mix-up attempt.
        await _set_status(store, config_id, "failed", "authorization response issuer mismatch (RFC 9207)")
        raise AuthorizationFailed("the authorization response came from an unexpected issuer")
    try:
        tokens = await exchange_code(upstream, code=code, verifier=code_verifier, redirect_uri=redirect_uri, http=http)
    except TokenEndpointError as exc:
        await _set_status(store, config_id, "failed", str(exc))
        log.warning("OAuth config %s: code exchange failed: %s", config_id, exc)
        raise AuthorizationFailed(f"token exchange failed: {exc}", status_code=502) from None
    now = records.utcnow()
    async with store.transaction() as session:
        row = await session.get(OAuthConfigRow, config_id, with_for_update=True, populate_existing=True)
        if row is None:
            raise AuthorizationFailed("the OAuth configuration was deleted during the login", status_code=409)
        token = records.new_token_row(store.box, tokens, scopes=list(upstream.scopes), now=now)
        session.add(token)
        await session.flush()
        previous, row.token_id = row.token_id, token.id
        row.status, row.status_reason, row.code_verifier_encrypted = "authorized", None, None
        await session.flush()
        if previous is not None:
            await session.execute(delete(OAuthTokenRow).where(OAuthTokenRow.id == previous))
    log.info("OAuth config %s: authorized", config_id)
    return row


async def fail_authorization(store: Store, *, state: str, error: str, description: str | None) -> bool:
    """Record an ``error`` callback (RFC 6749 §4.1.2.1) on the pending login it belongs to, if any."""
    state_hash = store.box.lookup_hash(state)
    async with store.transaction() as session:
        row = (
            await session.scalars(
                select(OAuthConfigRow)
                .where(OAuthConfigRow.state_hash == state_hash, OAuthConfigRow.status == "pending")
                .with_for_update()
            )
        ).first()
        if row is None:
            return False
        reason = f"{error}: {description}" if description else error
        row.state_hash, row.status, row.status_reason, row.code_verifier_encrypted = None, "failed", reason[:500], None
    log.info("OAuth config %s: the upstream refused the login (%s)", row.id, error[:64])
    return True


async def take_pending_client(
    session: AsyncSession, box: SecretBox, oauth_config_id: str
) -> tuple[OAuthConfigRow, dict[str, Any] | None]:
    """The MCP client waiting for this login, for complete-oauth (runs in the caller's transaction).

    The pending client is removed from the row only once the login is ``authorized``, so a call made
    too early can be repeated; when the caller's transaction rolls back, it stays.

    Raises:
        OAuthConfigNotFound: no such configuration.
    """
    row = await session.get(OAuthConfigRow, oauth_config_id, with_for_update=True)
    if row is None:
        raise OAuthConfigNotFound(oauth_config_id)
    client = records.pending_client(box, row)
    if row.status == "authorized":
        row.pending_client_encrypted = None
    return row, client
