"""Each identity's own upstream tokens: one encrypted row per (MCP client, identity), upserted (W17, W18).

Access and refresh tokens are AES-GCM encrypted with the row id and the field bound as associated
data, so a ciphertext copied into another row does not decrypt. A missing ``expires_in`` stores no
expiry (W17). A row is ``active`` or ``needs_reauth`` (a refresh failed for good, or the upstream
rejected a token that could not be renewed): the next call then turns into lazy auth.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.crypto import SecretBox
from heimdall.oauth.per_user.identity import Identity
from heimdall.oauth.upstream.locking import RowLocks
from heimdall.oauth.upstream.records import as_utc, utcnow
from heimdall.oauth.upstream.token_endpoint import TokenResponse
from heimdall.store.per_user_models import OAuthUserTokenRow
from heimdall.store.repos import Store

ACTIVE = "active"
NEEDS_REAUTH = "needs_reauth"


def _context(row_id: str, field: str) -> str:
    return f"oauth_user_token:{row_id}:{field}"


def access_token(box: SecretBox, row: OAuthUserTokenRow) -> str:
    return box.decrypt(row.access_token_encrypted, context=_context(row.id, "access"))


def refresh_token(box: SecretBox, row: OAuthUserTokenRow) -> str | None:
    if not row.refresh_token_encrypted:
        return None
    return box.decrypt(row.refresh_token_encrypted, context=_context(row.id, "refresh"))


def apply_response(
    box: SecretBox, row: OAuthUserTokenRow, tokens: TokenResponse, *, now: datetime, new_grant: bool
) -> None:
    """Store a token response on ``row``.

    After a refresh, a rotated refresh token replaces the old one and an absent one keeps it (RFC 6749
    §6). After a new login (``new_grant``) the old grant's refresh token never survives.
    """
    row.access_token_encrypted = box.encrypt(tokens.access_token, context=_context(row.id, "access"))
    if tokens.refresh_token is not None:
        row.refresh_token_encrypted = box.encrypt(tokens.refresh_token, context=_context(row.id, "refresh"))
    elif new_grant:
        row.refresh_token_encrypted = None
    row.token_type = tokens.token_type
    row.expires_at = now + timedelta(seconds=tokens.expires_in) if tokens.expires_in is not None else None
    if tokens.scopes is not None:
        row.scopes = list(tokens.scopes)


def expires_within(row: OAuthUserTokenRow, seconds: float, now: datetime | None = None) -> bool:
    """True when the access token expires within ``seconds``; never for a token with no known expiry (W17)."""
    expires_at = as_utc(row.expires_at)
    return expires_at is not None and expires_at <= (now or utcnow()) + timedelta(seconds=seconds)


#: Longest ``status_reason`` stored (longer ones are cut).
REASON_MAX = 500


def mark_needs_reauth(row: OAuthUserTokenRow, reason: str) -> None:
    row.status = NEEDS_REAUTH
    row.status_reason = reason[:REASON_MAX]


async def find(session: AsyncSession, mcp_client_id: str, identity: Identity) -> OAuthUserTokenRow | None:
    query = select(OAuthUserTokenRow).where(
        OAuthUserTokenRow.mcp_client_id == mcp_client_id,
        OAuthUserTokenRow.identity_kind == identity.kind,
        OAuthUserTokenRow.identity == identity.value,
    )
    return (await session.scalars(query)).first()


async def save_login(
    store: Store,
    locks: RowLocks,
    *,
    mcp_client_id: str,
    oauth_config_id: str | None,
    identity: Identity,
    tokens: TokenResponse,
    scopes: list[str],
    status_reason: str | None = None,
) -> str:
    """Upsert the identity's row with a new login's tokens (W18); returns the row id.

    ``scopes`` are the requested ones, kept when the token response names none (RFC 6749 §5.1).
    ``status_reason`` is stored on the active row: a step-up login records its count there (``step_up``).
    An existing row is updated in place under its refresh lock, so a refresh running at the same
    moment cannot overwrite the new grant with the old one's tokens.
    """
    box = store.box
    for _ in range(3):
        async with store.read() as session:
            existing = await find(session, mcp_client_id, identity)
            existing_id = existing.id if existing is not None else None
        now = utcnow()
        if existing_id is not None:
            async with locks.locked(OAuthUserTokenRow, existing_id) as (session, row):
                if row is not None:
                    apply_response(box, row, tokens, now=now, new_grant=True)
                    if tokens.scopes is None:
                        row.scopes = list(scopes)
                    row.oauth_config_id = oauth_config_id
                    row.status, row.status_reason = ACTIVE, status_reason
                    row.last_refreshed_at = None
                    return row.id
            continue  # deleted meanwhile: insert a new one
        try:
            async with store.transaction() as session:
                row = OAuthUserTokenRow(
                    id=uuid.uuid4().hex,
                    mcp_client_id=mcp_client_id,
                    oauth_config_id=oauth_config_id,
                    identity_kind=identity.kind,
                    identity=identity.value,
                    scopes=list(scopes),
                    status=ACTIVE,
                    status_reason=status_reason,
                )
                apply_response(box, row, tokens, now=now, new_grant=True)
                session.add(row)
            return row.id
        except IntegrityError:
            continue  # another login of the same identity inserted first: update that row
    raise RuntimeError("could not store the upstream token after concurrent changes")
