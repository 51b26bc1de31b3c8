"""Secrets at rest: AES-GCM with context binding, the key file, configured keys and lookup hashes."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest

from heimdall.crypto import (
    KEY_FILE_NAME,
    CryptoError,
    SecretBox,
    constant_time_equals,
    generate_key,
    load_or_create_key,
    parse_key,
)

SECRET = "sk-live-0123456789abcdefSECRET"


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(parse_key(generate_key()))


def test_round_trip(box: SecretBox) -> None:
    token = box.encrypt(SECRET, context="provider_key:k1")
    assert token.startswith("v1:")
    assert SECRET not in token
    assert box.decrypt(token, context="provider_key:k1") == SECRET


@pytest.mark.parametrize("plaintext", ["", "x", "ünïcödé ✓ 🔑", "a" * 10_000, "env.OPENAI_API_KEY"])
def test_round_trip_any_text(box: SecretBox, plaintext: str) -> None:
    assert box.decrypt(box.encrypt(plaintext, context="c"), context="c") == plaintext


def test_every_encryption_uses_a_fresh_nonce(box: SecretBox) -> None:
    tokens = {box.encrypt(SECRET, context="c") for _ in range(50)}
    assert len(tokens) == 50


def test_context_is_bound(box: SecretBox) -> None:
    token = box.encrypt(SECRET, context="provider_key:k1")
    for wrong in ("provider_key:k2", "", "provider_key:k1 "):
        with pytest.raises(CryptoError) as info:
            box.decrypt(token, context=wrong)
        assert SECRET not in str(info.value)
    assert box.decrypt(token, context="provider_key:k1") == SECRET


def test_wrong_key_fails_without_echoing_the_value(box: SecretBox) -> None:
    token = box.encrypt(SECRET, context="c")
    other = SecretBox(parse_key(generate_key()))
    with pytest.raises(CryptoError) as info:
        other.decrypt(token, context="c")
    text = f"{info.value} {info.value!r} {info.value.__cause__!r}"
    assert SECRET not in text
    assert token not in text
    assert "does not decrypt" in str(info.value)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "plaintext-secret",
        "v1:",
        "v1:AAAA",
        "v1:!!!not-base64!!!",
        "v1:" + "A" * 7,  # length that is not valid base64
        "v2:" + "A" * 40,
    ],
)
def test_malformed_ciphertext_is_a_crypto_error(box: SecretBox, token: str) -> None:
    with pytest.raises(CryptoError) as info:
        box.decrypt(token, context="c")
    if token:
        assert token not in str(info.value)


def test_tampered_ciphertext_fails(box: SecretBox) -> None:
    token = box.encrypt(SECRET, context="c")
    raw = bytearray(base64.urlsafe_b64decode(token[3:] + "=" * (-len(token[3:]) % 4)))
    raw[-1] ^= 1
    tampered = "v1:" + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(CryptoError):
        box.decrypt(tampered, context="c")


# --- keys -------------------------------------------------------------------------------------


def test_generated_keys_are_32_random_bytes() -> None:
    keys = {generate_key() for _ in range(20)}
    assert len(keys) == 20
    assert all(len(parse_key(key)) == 32 for key in keys)


def test_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    first = load_or_create_key(app_dir, None)
    path = app_dir / KEY_FILE_NAME
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 32
    assert load_or_create_key(app_dir, None) == first
    assert parse_key(path.read_text()) == first
    assert [p.name for p in app_dir.iterdir()] == [KEY_FILE_NAME], "no temporary files are left behind"


def test_key_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load_or_create_key(tmp_path, None)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / KEY_FILE_NAME).stat().st_mode) == 0o600


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    results: list[bytes] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        try:
            barrier.wait()
            results.append(load_or_create_key(tmp_path, None))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1
    assert parse_key((tmp_path / KEY_FILE_NAME).read_text()) == results[0]
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE_NAME]


def test_configured_key_wins_and_no_file_is_written(tmp_path: Path) -> None:
    configured = generate_key()
    assert load_or_create_key(tmp_path / "app", configured) == parse_key(configured)
    assert not (tmp_path / "app" / KEY_FILE_NAME).exists()


def test_configured_key_accepts_padding_and_standard_base64() -> None:
    raw = bytes(range(32))
    assert parse_key(base64.urlsafe_b64encode(raw).decode()) == raw  # with "=" padding
    assert parse_key(base64.b64encode(raw).decode() + "\n") == raw


@pytest.mark.parametrize(
    "configured",
    [
        "short",
        base64.urlsafe_b64encode(b"x" * 16).decode(),  # 16 bytes: AES-128 is not accepted
        base64.urlsafe_b64encode(b"x" * 33).decode(),
        "00" * 32,  # hex, not base64: decodes to 48 bytes
        "ключ-шифрования-не-base64-ключ-шифрования",
        "QUJD",  # 3 bytes
    ],
)
def test_bad_configured_keys_are_rejected_without_echoing_them(tmp_path: Path, configured: str) -> None:
    with pytest.raises(CryptoError) as info:
        load_or_create_key(tmp_path, configured)
    assert configured not in str(info.value)
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_corrupt_key_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    path.write_text("not-a-key\n")
    with pytest.raises(CryptoError) as info:
        load_or_create_key(tmp_path, None)
    assert str(path) in str(info.value)
    assert path.read_text() == "not-a-key\n", "an existing key file is never replaced"


def test_secrets_encrypted_under_one_key_do_not_open_under_the_regenerated_one(tmp_path: Path) -> None:
    box = SecretBox(load_or_create_key(tmp_path, None))
    token = box.encrypt(SECRET, context="c")
    (tmp_path / KEY_FILE_NAME).unlink()
    fresh = SecretBox(load_or_create_key(tmp_path, None))
    with pytest.raises(CryptoError):
        fresh.decrypt(token, context="c")


# --- lookup hashes --------------------------------------------------------------------------------


def test_lookup_hash_is_stable_and_keyed() -> None:
    key = parse_key(generate_key())
    first, second = SecretBox(key), SecretBox(key)
    digest = first.lookup_hash("sk-bf-value")
    assert digest == second.lookup_hash("sk-bf-value")
    assert len(digest) == 64
    int(digest, 16)
    assert "sk-bf-value" not in digest
    assert first.lookup_hash("sk-bf-value2") != digest
    assert SecretBox(parse_key(generate_key())).lookup_hash("sk-bf-value") != digest


def test_lookup_hash_is_not_a_plain_hash() -> None:
    import hashlib

    box = SecretBox(parse_key(generate_key()))
    assert box.lookup_hash("sk-bf-value") != hashlib.sha256(b"sk-bf-value").hexdigest()


def test_encryption_and_hash_keys_are_separate() -> None:
    """The hash of a value reveals nothing usable against its ciphertext and vice versa (distinct derived keys)."""
    key = parse_key(generate_key())
    box = SecretBox(key)
    assert box.lookup_hash("x") != SecretBox(parse_key(generate_key())).lookup_hash("x")
    assert box._hash_key != key


def test_constant_time_equals() -> None:
    assert constant_time_equals("abc", "abc")
    assert not constant_time_equals("abc", "abd")
    assert not constant_time_equals("abc", "abcd")
    assert constant_time_equals("ünï", "ünï")
