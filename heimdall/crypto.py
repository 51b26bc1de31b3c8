"""Secrets at rest: AES-256-GCM for values we must read back, keyed hashes for values we only compare.

The key comes from ``HEIMDALL_ENCRYPTION_KEY`` or from ``<app_dir>/encryption.key``, which is
generated with mode 0600 on first run. There is no plaintext fallback: without a key the gateway
does not start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_FILE_NAME = "encryption.key"
_PREFIX = "v1:"


class CryptoError(Exception):
    """A key is malformed, or a ciphertext does not decrypt with the configured key."""


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def generate_key() -> str:
    return _b64e(secrets.token_bytes(32))


def parse_key(text: str) -> bytes:
    try:
        raw = _b64d(text.strip())
    except (ValueError, TypeError) as exc:
        raise CryptoError("encryption key is not valid base64") from exc
    if len(raw) != 32:
        raise CryptoError(f"encryption key must decode to 32 bytes, got {len(raw)}")
    return raw


def load_or_create_key(app_dir: Path, configured: str | None) -> bytes:
    """Return the master key: the configured one, else the app dir's key file, created 0600 if missing."""
    if configured:
        return parse_key(configured)
    path = app_dir / KEY_FILE_NAME
    if not path.exists():
        app_dir.mkdir(parents=True, exist_ok=True)
        # Write a private temporary file, then link it into place: several processes starting at once
        # (``--workers``) all end up with the one key that won, and nobody reads a half-written file.
        tmp = app_dir / f".{KEY_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(generate_key() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process created it first: use that one
        finally:
            tmp.unlink(missing_ok=True)
    try:
        return parse_key(path.read_text())
    except CryptoError as exc:
        raise CryptoError(f"{path}: {exc}") from None


class SecretBox:
    """Encrypts with AES-256-GCM and hashes with HMAC-SHA256, each under its own derived key."""

    def __init__(self, master_key: bytes) -> None:
        self._aead = AESGCM(self._derive(master_key, b"heimdall/aes-gcm/v1"))
        self._hash_key = self._derive(master_key, b"heimdall/lookup-hash/v1")

    @staticmethod
    def _derive(master_key: bytes, info: bytes) -> bytes:
        return HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(master_key)

    def encrypt(self, plaintext: str, *, context: str = "") -> str:
        """Encrypt; ``context`` (e.g. the row id) is bound as associated data so ciphertexts can't be swapped."""
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return _PREFIX + _b64e(nonce + sealed)

    def decrypt(self, token: str, *, context: str = "") -> str:
        if not token.startswith(_PREFIX):
            raise CryptoError("value is not an encrypted secret")
        try:
            raw = _b64d(token[len(_PREFIX) :])
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except Exception as exc:  # cryptography raises InvalidTag; never echo the value
            raise CryptoError("secret does not decrypt with the configured encryption key") from exc

    def lookup_hash(self, value: str) -> str:
        """Keyed hash for values we only ever compare (virtual keys, issued tokens, codes)."""
        return hmac.new(self._hash_key, value.encode(), hashlib.sha256).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def csrf_ok(expected: str, submitted: str | None) -> bool:
    """A submitted form token equals the expected one (constant time; absurd lengths refused early)."""
    return bool(submitted) and len(submitted or "") <= 128 and hmac.compare_digest(expected, submitted or "")
