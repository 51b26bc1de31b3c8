"""Authorization codes, access tokens and refresh tokens that Heimdall issues for ``/mcp``.

Rules (README "Tokens we issue"; RFC 6749, RFC 7636, RFC 8707, RFC 9700):

* Every code and token is 256 random bits; only its keyed hash (``SecretBox.lookup_hash``) is stored.
* A code is single use and lives ``code_ttl``. It is claimed atomically before anything else is
  checked; a code that comes back after it was used revokes the grant it produced (RFC 6749 §4.1.2).
* The token request must name the same client and the exact redirect URI, and its PKCE verifier
  must hash (S256) to the challenge (RFC 7636 §4.6, compared in constant time).
* Access tokens are opaque, live ``access_token_ttl`` and are bound to the audience ``<base>/mcp``.
* Refresh tokens rotate: each use marks the old one used and issues a new pair. A used refresh token
  presented again is a replay: the whole grant and all its tokens are revoked (RFC 9700 §4.14.2).
  Refresh tokens share the grant's absolute lifetime (``refresh_token_ttl`` from the code exchange).
* Revocation (RFC 7009): an access token alone, or a refresh token with its whole grant.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.crypto import SecretBox
from heimdall.gateway import Gateway
from heimdall.oauth.server import urls
from heimdall.oauth.server.cache import AccessGrant, cache_for
from heimdall.oauth.server.errors import OAuthError
from heimdall.oauth.upstream.pkce import s256_challenge
from heimdall.oauth.upstream.records import as_utc, utcnow
from heimdall.store.per_user_models import ASCodeRow, ASGrantRow, ASTokenRow
from heimdall.store.repos import Store, is_retryable_conflict

#: RFC 7636 §4.1 code_verifier syntax.
VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
MAX_SECRET_LENGTH = 512
ACCESS = "access"
REFRESH = "refresh"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str
    refresh_token: str
    expires_in: int
    scope: str

    def response(self) -> dict[str, Any]:
        """RFC 6749 §5.1 token response."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
        }


def _expired(value: datetime | None, now: datetime) -> bool:
    moment = as_utc(value)
    return moment is not None and moment <= now


async def create_code(
    session: AsyncSession,
    box: SecretBox,
    *,
    grant_id: str,
    client_id: str,
    redirect_uri: str,
    code_challenge: str,
    ttl: int,
) -> str:
    """Store a new authorization code for a grant; returns the code (only its hash is kept)."""
    code = new_secret()
    session.add(
        ASCodeRow(
            code_hash=box.lookup_hash(code),
            grant_id=grant_id,
            client_id=client_id,
            redirect_uri=redirect_uri,
            code_challenge=code_challenge,
            used=False,
            expires_at=utcnow() + timedelta(seconds=ttl),
        )
    )
    return code


#: Runs of a refresh transaction that the database aborted to break a deadlock.
_CONFLICT_ATTEMPTS = 3


async def revoke_grant(session: AsyncSession, grant_id: str, reason: str) -> None:
    """Revoke a grant: it and every token and code it produced stop working."""
    await session.execute(
        update(ASGrantRow)
        .where(ASGrantRow.id == grant_id, ASGrantRow.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    await session.execute(delete(ASTokenRow).where(ASTokenRow.grant_id == grant_id))
    await session.execute(delete(ASCodeRow).where(ASCodeRow.grant_id == grant_id))


async def _issue(
    session: AsyncSession, gateway: Gateway, grant: ASGrantRow, *, access_scope: str, refresh_expires_at: datetime
) -> TokenSet:
    now = utcnow()
    ttl = gateway.snapshot.per_user_oauth.access_token_ttl
    access_expires_at = min(now + timedelta(seconds=ttl), refresh_expires_at)
    access, refresh = new_secret(), new_secret()
    box = gateway.box
    audience = urls.resource_url(gateway)
    session.add_all(
        [
            ASTokenRow(
                token_hash=box.lookup_hash(access),
                grant_id=grant.id,
                kind=ACCESS,
                scope=access_scope,
                audience=audience,
                used=False,
                expires_at=access_expires_at,
            ),
            ASTokenRow(
                token_hash=box.lookup_hash(refresh),
                grant_id=grant.id,
                kind=REFRESH,
                scope=grant.scope,
                audience=audience,
                used=False,
                expires_at=refresh_expires_at,
            ),
        ]
    )
    grant.last_used_at = now
    return TokenSet(access, refresh, max(1, int((access_expires_at - now).total_seconds())), access_scope)


async def _claim(session: AsyncSession, model: type[ASCodeRow] | type[ASTokenRow], key: str) -> bool:
    """Atomically mark an unused code or refresh token used; False when it was not unused."""
    column = ASCodeRow.code_hash if model is ASCodeRow else ASTokenRow.token_hash
    result = await session.execute(
        update(model)
        .where(column == key, model.used.is_(False))
        .values(used=True)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _require(params: dict[str, str], name: str, description: str) -> str:
    value = params.get(name, "")
    if not value:
        raise OAuthError("invalid_request", description)
    if len(value) > MAX_SECRET_LENGTH and name in ("code", "refresh_token"):
        raise OAuthError("invalid_grant", f"the {name} is not valid")
    return value


Outcome = tuple[TokenSet | OAuthError, str | None]
"""A token response or an error, and the id of a grant that was revoked on the way (its cached tokens go)."""


async def _exchange_code(session: AsyncSession, gateway: Gateway, params: dict[str, str]) -> Outcome:
    key = gateway.box.lookup_hash(params["code"])
    if not await _claim(session, ASCodeRow, key):
        used = await session.get(ASCodeRow, key)
        if used is None:
            return OAuthError("invalid_grant", "Invalid or already used authorization code"), None
        await revoke_grant(session, used.grant_id, "authorization code used twice")
        return OAuthError("invalid_grant", "Invalid or already used authorization code"), used.grant_id
    row = await session.get(ASCodeRow, key)
    assert row is not None
    now = utcnow()
    if _expired(row.expires_at, now):
        return OAuthError("invalid_grant", "Authorization code expired"), None
    if not hmac.compare_digest(params["client_id"].encode(), row.client_id.encode()):
        return OAuthError("invalid_grant", "client_id mismatch"), None
    if params["redirect_uri"] != row.redirect_uri:
        return OAuthError("invalid_grant", "redirect_uri mismatch"), None
    if not hmac.compare_digest(s256_challenge(params["code_verifier"]).encode(), row.code_challenge.encode()):
        return OAuthError("invalid_grant", "PKCE verification failed"), None
    grant = await session.get(ASGrantRow, row.grant_id, with_for_update=True)
    if grant is None or grant.revoked_at is not None:
        return OAuthError("invalid_grant", "The authorization grant has been revoked"), None
    grant.expires_at = now + timedelta(seconds=gateway.snapshot.per_user_oauth.refresh_token_ttl)
    issued = await _issue(session, gateway, grant, access_scope=grant.scope, refresh_expires_at=grant.expires_at)
    return issued, None


async def _finish(gateway: Gateway, outcome: Outcome) -> TokenSet:
    result, revoked_grant = outcome
    if revoked_grant is not None:
        cache_for(gateway).drop_grant(revoked_grant)
    if isinstance(result, OAuthError):
        raise result
    return result


async def exchange_code(gateway: Gateway, params: dict[str, str]) -> TokenSet:
    """``grant_type=authorization_code`` (RFC 6749 §4.1.3).

    Raises:
        OAuthError: the request is invalid; a replayed code also revokes its grant.
    """
    _require(params, "code", "code and code_verifier are required")
    verifier = _require(params, "code_verifier", "code and code_verifier are required")
    _require(params, "client_id", "client_id is required")
    _require(params, "redirect_uri", "redirect_uri is required")
    if not VERIFIER.match(verifier):
        raise OAuthError("invalid_request", "code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]")
    resource = params.get("resource")
    if resource is not None and not urls.same_resource(resource, urls.resource_url(gateway)):
        raise OAuthError("invalid_target", f"resource must be {urls.resource_url(gateway)}")
    async with gateway.store.transaction() as session:
        outcome = await _exchange_code(session, gateway, params)
    return await _finish(gateway, outcome)


async def _refresh(session: AsyncSession, gateway: Gateway, params: dict[str, str]) -> Outcome:
    """Rotate a refresh token. Errors that must leave no trace are raised (the transaction rolls back);
    a replay is returned, so that the grant's revocation is committed."""
    key = gateway.box.lookup_hash(params["refresh_token"])
    # Claim first: the write serializes concurrent refreshes of one token on SQLite and PostgreSQL alike.
    claimed = await _claim(session, ASTokenRow, key)
    row = await session.get(ASTokenRow, key)
    if row is None or row.kind != REFRESH:
        raise OAuthError("invalid_grant", "Invalid refresh token")
    grant = await session.get(ASGrantRow, row.grant_id)
    if grant is None or grant.revoked_at is not None:
        raise OAuthError("invalid_grant", "The authorization grant has been revoked")
    if not hmac.compare_digest(params["client_id"].encode(), grant.client_id.encode()):
        raise OAuthError("invalid_grant", "client_id mismatch")
    now = utcnow()
    if _expired(row.expires_at, now):
        raise OAuthError("invalid_grant", "Refresh token expired")
    scope = grant.scope
    requested = params.get("scope")
    if requested:
        wanted = list(dict.fromkeys(requested.split()))
        if any(s not in grant.scope.split() for s in wanted):
            raise OAuthError("invalid_scope", "the requested scope exceeds the grant's scope")
        scope = " ".join(wanted)
    if not claimed:
        await revoke_grant(session, grant.id, "refresh token reused")
        return OAuthError("invalid_grant", "Refresh token reuse detected; the grant has been revoked"), grant.id
    refresh_expires_at = as_utc(row.expires_at) or now + timedelta(
        seconds=gateway.snapshot.per_user_oauth.refresh_token_ttl
    )
    issued = await _issue(session, gateway, grant, access_scope=scope, refresh_expires_at=refresh_expires_at)
    return issued, None


async def refresh(gateway: Gateway, params: dict[str, str]) -> TokenSet:
    """``grant_type=refresh_token`` with rotation and reuse detection (RFC 6749 §6, RFC 9700 §4.14.2).

    Raises:
        OAuthError: the request is invalid; a replayed refresh token also revokes the grant.
    """
    _require(params, "refresh_token", "refresh_token is required")
    _require(params, "client_id", "client_id is required")
    for attempt in range(_CONFLICT_ATTEMPTS):
        try:
            async with gateway.store.transaction() as session:
                outcome = await _refresh(session, gateway, params)
            break
        except DBAPIError as exc:
            # Concurrent replays of one refresh token can deadlock on PostgreSQL (rotation against
            # revocation); the loser was rolled back whole, and running it again gives its real answer.
            if attempt + 1 == _CONFLICT_ATTEMPTS or not is_retryable_conflict(exc):
                raise
    return await _finish(gateway, outcome)


async def revoke(gateway: Gateway, token: str, client_id: str | None) -> None:
    """RFC 7009 §2.1: revoke an access token, or a refresh token and its grant. Unknown tokens are ignored."""
    if not token or len(token) > MAX_SECRET_LENGTH:
        return
    key = gateway.box.lookup_hash(token)
    grant_id: str | None = None
    async with gateway.store.transaction() as session:
        row = await session.get(ASTokenRow, key)
        if row is None:
            return
        grant = await session.get(ASGrantRow, row.grant_id)
        if grant is None or (client_id and not hmac.compare_digest(client_id.encode(), grant.client_id.encode())):
            return
        if row.kind == ACCESS:
            await session.delete(row)
        else:
            grant_id = grant.id
            await revoke_grant(session, grant.id, "revoked by the client")
    cache = cache_for(gateway)
    cache.drop_token(key)
    if grant_id is not None:
        cache.drop_grant(grant_id)


async def load_access_token(store: Store, token_hash: str) -> tuple[AccessGrant, bool] | None:
    """The access token with this hash and its grant: ``(grant, revoked)``, or None if unknown."""
    async with store.read() as session:
        found = (
            await session.execute(
                select(ASTokenRow, ASGrantRow)
                .join(ASGrantRow, ASGrantRow.id == ASTokenRow.grant_id)
                .where(ASTokenRow.token_hash == token_hash, ASTokenRow.kind == ACCESS)
            )
        ).first()
    if found is None:
        return None
    token, grant = found
    verified = AccessGrant(
        token_hash=token_hash,
        grant_id=grant.id,
        client_id=grant.client_id,
        identity_kind=grant.identity_kind,
        identity=grant.identity,
        scopes=frozenset(token.scope.split()),
        audience=token.audience,
        expires_at=as_utc(token.expires_at),
    )
    return verified, grant.revoked_at is not None
