"""How upstream OAuth rows hold their secrets: every one encrypted, bound to its row and field.

The encryption context names the row and the field, so a ciphertext copied into another row or
column does not decrypt. ``state`` is never stored: only its keyed hash.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from heimdall.crypto import SecretBox
from heimdall.oauth.upstream.token_endpoint import TokenResponse, UpstreamClient
from heimdall.store.mcp_models import OAuthConfigRow, OAuthTokenRow


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands timezone-aware columns back naive; every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _context(row_kind: str, row_id: str, field: str) -> str:
    return f"{row_kind}:{row_id}:{field}"


# --- oauth_configs ---------------------------------------------------------------------------


def set_client_secret(box: SecretBox, row: OAuthConfigRow, secret: str | None) -> None:
    context = _context("oauth_config", row.id, "client_secret")
    row.client_secret_encrypted = box.encrypt(secret, context=context) if secret else None


def client_secret(box: SecretBox, row: OAuthConfigRow) -> str | None:
    if not row.client_secret_encrypted:
        return None
    return box.decrypt(row.client_secret_encrypted, context=_context("oauth_config", row.id, "client_secret"))


def set_verifier(box: SecretBox, row: OAuthConfigRow, value: str | None) -> None:
    context = _context("oauth_config", row.id, "verifier")
    row.code_verifier_encrypted = box.encrypt(value, context=context) if value else None


def verifier(box: SecretBox, row: OAuthConfigRow) -> str | None:
    if not row.code_verifier_encrypted:
        return None
    return box.decrypt(row.code_verifier_encrypted, context=_context("oauth_config", row.id, "verifier"))


def set_pending_client(box: SecretBox, row: OAuthConfigRow, client: dict[str, Any] | None) -> None:
    context = _context("oauth_config", row.id, "pending_client")
    row.pending_client_encrypted = box.encrypt(json.dumps(client), context=context) if client is not None else None


def pending_client(box: SecretBox, row: OAuthConfigRow) -> dict[str, Any] | None:
    if not row.pending_client_encrypted:
        return None
    context = _context("oauth_config", row.id, "pending_client")
    value = json.loads(box.decrypt(row.pending_client_encrypted, context=context))
    return value if isinstance(value, dict) else None


def upstream_client(box: SecretBox, row: OAuthConfigRow) -> UpstreamClient:
    """The registered client an OAuth configuration describes (also a per-user template's client)."""
    return UpstreamClient(
        client_id=row.client_id,
        client_secret=client_secret(box, row),
        auth_method=row.token_endpoint_auth_method,
        authorize_url=row.authorize_url,
        token_url=row.token_url,
        revocation_url=row.revocation_url,
        scopes=tuple(row.scopes or ()),
        resource=row.resource,
        issuer=row.issuer,
    )


# --- oauth_tokens ----------------------------------------------------------------------------


def access_token(box: SecretBox, row: OAuthTokenRow) -> str:
    return box.decrypt(row.access_token_encrypted, context=_context("oauth_token", row.id, "access"))


def refresh_token(box: SecretBox, row: OAuthTokenRow) -> str | None:
    if not row.refresh_token_encrypted:
        return None
    return box.decrypt(row.refresh_token_encrypted, context=_context("oauth_token", row.id, "refresh"))


def apply_token_response(box: SecretBox, row: OAuthTokenRow, tokens: TokenResponse, *, now: datetime) -> None:
    """Store a token response: a rotated refresh token replaces the old one, else the old one stays (RFC 6749 §6)."""
    row.access_token_encrypted = box.encrypt(tokens.access_token, context=_context("oauth_token", row.id, "access"))
    if tokens.refresh_token is not None:
        context = _context("oauth_token", row.id, "refresh")
        row.refresh_token_encrypted = box.encrypt(tokens.refresh_token, context=context)
    row.token_type = tokens.token_type
    row.expires_at = now + timedelta(seconds=tokens.expires_in) if tokens.expires_in is not None else None
    if tokens.scopes is not None:
        row.scopes = list(tokens.scopes)


def new_token_row(box: SecretBox, tokens: TokenResponse, *, scopes: list[str], now: datetime) -> OAuthTokenRow:
    row = OAuthTokenRow(id=str(uuid.uuid4()), access_token_encrypted="", scopes=list(scopes))
    apply_token_response(box, row, tokens, now=now)
    return row
