"""Sign-in attempts at the OIDC provider (``oidc_login_attempts``): created at start, claimed once at the callback.

Stored: keyed hashes of ``state`` and of the browser-binding cookie; the nonce and the PKCE verifier
encrypted with the row id as context (a ciphertext moved to another row does not decrypt). The
binding cookie is per attempt (its name carries the attempt id), so two sign-ins in two tabs do
not overwrite each other; it is sent only to the callback path.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.crypto import SecretBox
from heimdall.oauth.upstream.pkce import new_state, new_verifier
from heimdall.oauth.upstream.records import as_utc, utcnow
from heimdall.store.oidc_models import OIDCLoginAttemptRow

CALLBACK_PATH = "/oauth/consent/oidc/callback"
COOKIE_PREFIX = "__heimdall_oidc_"
_SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{20,128}$")


@dataclass(frozen=True, slots=True)
class NewAttempt:
    """The values that leave the server once: ``state`` and ``nonce`` to the provider, ``binding`` to the browser."""

    attempt_id: str
    state: str
    nonce: str
    verifier: str
    binding: str

    @property
    def cookie_name(self) -> str:
        return cookie_name(self.attempt_id)


def cookie_name(attempt_id: str) -> str:
    return COOKIE_PREFIX + attempt_id


def _state_hash(box: SecretBox, state: str) -> str:
    return box.lookup_hash(f"oidc-state:{state}")


def _binding_hash(box: SecretBox, binding: str) -> str:
    return box.lookup_hash(f"oidc-binding:{binding}")


def _context(attempt_id: str, field: str) -> str:
    return f"oidc_login_attempt:{attempt_id}:{field}"


def valid_secret(value: str | None) -> bool:
    return value is not None and _SECRET_PATTERN.match(value) is not None


def create(
    session: AsyncSession,
    box: SecretBox,
    *,
    issuer: str,
    client_id: str,
    redirect_uri: str,
    ttl: int,
    flow_id: str | None = None,
    next_path: str | None = None,
) -> NewAttempt:
    """Add an attempt row to ``session`` (the caller commits)."""
    attempt = NewAttempt(
        attempt_id=secrets.token_hex(8),
        state=new_state(),
        nonce=secrets.token_urlsafe(32),
        verifier=new_verifier(),
        binding=secrets.token_urlsafe(32),
    )
    session.add(
        OIDCLoginAttemptRow(
            id=attempt.attempt_id,
            state_hash=_state_hash(box, attempt.state),
            binding_hash=_binding_hash(box, attempt.binding),
            nonce_encrypted=box.encrypt(attempt.nonce, context=_context(attempt.attempt_id, "nonce")),
            code_verifier_encrypted=box.encrypt(attempt.verifier, context=_context(attempt.attempt_id, "verifier")),
            issuer=issuer,
            client_id=client_id,
            redirect_uri=redirect_uri,
            flow_id=flow_id,
            next_path=next_path,
            used=False,
            expires_at=utcnow() + timedelta(seconds=ttl),
        )
    )
    return attempt


async def find(session: AsyncSession, box: SecretBox, state: str | None) -> OIDCLoginAttemptRow | None:
    """The attempt a callback's ``state`` belongs to, used or not, expired or not."""
    if not valid_secret(state):
        return None
    assert state is not None
    query = select(OIDCLoginAttemptRow).where(OIDCLoginAttemptRow.state_hash == _state_hash(box, state))
    return (await session.scalars(query)).first()


def bound(box: SecretBox, row: OIDCLoginAttemptRow, binding: str | None) -> bool:
    """Whether ``binding`` (the browser's cookie for this attempt) is the one the attempt was started with."""
    if not valid_secret(binding):
        return False
    assert binding is not None
    return hmac.compare_digest(_binding_hash(box, binding), row.binding_hash)


def expired(row: OIDCLoginAttemptRow, now: datetime | None = None) -> bool:
    expires_at = as_utc(row.expires_at)
    return expires_at is None or expires_at <= (now or utcnow())


async def claim(session: AsyncSession, row: OIDCLoginAttemptRow) -> bool:
    """Mark the attempt used; True for exactly one caller, even across processes (single use)."""
    result = await session.execute(
        update(OIDCLoginAttemptRow)
        .where(
            OIDCLoginAttemptRow.id == row.id,
            OIDCLoginAttemptRow.used.is_(False),
            OIDCLoginAttemptRow.expires_at > utcnow(),
        )
        .values(used=True, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1


def nonce_of(box: SecretBox, row: OIDCLoginAttemptRow) -> str:
    return box.decrypt(row.nonce_encrypted, context=_context(row.id, "nonce"))


def verifier_of(box: SecretBox, row: OIDCLoginAttemptRow) -> str:
    return box.decrypt(row.code_verifier_encrypted, context=_context(row.id, "verifier"))


async def sweep_expired(session: AsyncSession, now: datetime) -> int:
    """A ``Sweeper`` job (``heimdall.oauth.server.sweeper.SweepJob``): delete expired attempts."""
    result = await session.execute(delete(OIDCLoginAttemptRow).where(OIDCLoginAttemptRow.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)
