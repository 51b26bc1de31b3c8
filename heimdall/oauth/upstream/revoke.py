"""Token revocation at the upstream (RFC 7009), best effort, and dropping the stored token.

Revoking the refresh token first matters: RFC 7009 §2.1 lets (and most servers do) revoke the
whole grant with it, access tokens included.
"""

from __future__ import annotations

import logging

import httpx
from sqlalchemy import delete

from heimdall.oauth.upstream import records
from heimdall.oauth.upstream.flow import OAuthConfigNotFound
from heimdall.oauth.upstream.http import TOKEN_TIMEOUT, UpstreamHTTPError, client_or_new, post
from heimdall.oauth.upstream.token_endpoint import UpstreamClient, authenticate
from heimdall.store.mcp_models import OAuthConfigRow, OAuthTokenRow
from heimdall.store.repos import Store

log = logging.getLogger(__name__)


async def revoke_at_upstream(
    upstream: UpstreamClient, token: str, token_type_hint: str, *, http: httpx.AsyncClient | None = None
) -> bool:
    """POST one token to the revocation endpoint (RFC 7009 §2.1); True when the server accepted it (HTTP 200)."""
    if not upstream.revocation_url:
        return False
    form = {"token": token, "token_type_hint": token_type_hint}
    headers = authenticate(upstream, form)
    if upstream.auth_method == "none":
        # RFC 6749 §2.3.1 allows sending an empty secret; the MCP SDK's revocation endpoint insists on the field.
        form["client_secret"] = ""
    try:
        async with client_or_new(http, TOKEN_TIMEOUT) as client:
            status, _, _ = await post(client, upstream.revocation_url, data=form, headers=headers)
    except (httpx.HTTPError, UpstreamHTTPError) as exc:
        log.warning("token revocation at %s failed: %s", upstream.revocation_url, type(exc).__name__)
        return False
    if status != 200:
        log.warning("token revocation at %s answered HTTP %d", upstream.revocation_url, status)
    return status == 200


async def revoke_stored_token(
    store: Store, oauth_config_id: str, *, status: str | None = "revoked", http: httpx.AsyncClient | None = None
) -> bool:
    """Revoke the configuration's token upstream (when it has a revocation endpoint), then delete it.

    ``status`` is the configuration's new status (``None`` keeps it, e.g. for a per-user template).
    Returns whether the upstream confirmed the revocation.

    Raises:
        OAuthConfigNotFound: no such configuration.
    """
    async with store.read() as session:
        config = await session.get(OAuthConfigRow, oauth_config_id)
        if config is None:
            raise OAuthConfigNotFound(oauth_config_id)
        token = await session.get(OAuthTokenRow, config.token_id) if config.token_id else None
        upstream = records.upstream_client(store.box, config)
        secrets: list[tuple[str | None, str]] = []
        if token is not None:
            secrets.append((records.refresh_token(store.box, token), "refresh_token"))
            secrets.append((records.access_token(store.box, token), "access_token"))
    confirmed = False
    for value, hint in secrets:
        if value:
            confirmed = await revoke_at_upstream(upstream, value, hint, http=http) or confirmed
    async with store.transaction() as session:
        config = await session.get(OAuthConfigRow, oauth_config_id, with_for_update=True, populate_existing=True)
        if config is None:
            raise OAuthConfigNotFound(oauth_config_id)
        token_id, config.token_id = config.token_id, None
        if status is not None:
            config.status, config.status_reason = status, None
            config.state_hash = None
            config.code_verifier_encrypted = None
        await session.flush()
        if token_id is not None:
            await session.execute(delete(OAuthTokenRow).where(OAuthTokenRow.id == token_id))
    outcome = "confirmed" if confirmed else "not confirmed"
    log.info("OAuth config %s: token removed (upstream revocation %s)", oauth_config_id, outcome)
    return confirmed


async def discard_token(store: Store, oauth_config_id: str, *, http: httpx.AsyncClient | None = None) -> None:
    """Drop the admin's verification token of a ``per_user_oauth`` template, keeping the template usable (W22).

    The configuration keeps its status (``authorized``: the OAuth app was verified) and its client
    registration; only the token goes, revoked upstream when possible.

    Raises:
        OAuthConfigNotFound: no such configuration.
    """
    await revoke_stored_token(store, oauth_config_id, status=None, http=http)
