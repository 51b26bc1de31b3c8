"""PKCE (RFC 7636) and the ``state`` value of an authorization request (RFC 6749 §10.12)."""

from __future__ import annotations

import base64
import hashlib
import secrets

#: RFC 7636 §4.1: 43 to 128 characters; 96 random bytes give the maximum, 128.
VERIFIER_BYTES = 96


def new_verifier() -> str:
    """A code verifier of 128 characters from the unreserved set (RFC 7636 §4.1)."""
    return secrets.token_urlsafe(VERIFIER_BYTES)


def s256_challenge(verifier: str) -> str:
    """``BASE64URL(SHA256(verifier))`` without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    """An unguessable, single-use ``state`` (256 bits)."""
    return secrets.token_urlsafe(32)
