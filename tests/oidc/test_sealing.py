"""The OIDC client secret at rest: encrypted when literal, kept as a reference when ``env.NAME``."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from heimdall.crypto import SecretBox, generate_key, parse_key
from heimdall.oauth.oidc.sealing import SEALED_FIELD, seal, unseal
from heimdall.oauth.settings import PerUserOAuthConfig

BOX = SecretBox(parse_key(generate_key()))
SECRET = "a-literal-client-secret-0123456789"


def settings(secret: str | None) -> dict[str, Any]:
    oidc: dict[str, Any] = {"issuer": "https://idp.example", "client_id": "heimdall"}
    if secret is not None:
        oidc["client_secret"] = secret
    return PerUserOAuthConfig.model_validate({"oidc": oidc}).model_dump(exclude_none=True)


def test_a_literal_secret_is_sealed_and_opened_again() -> None:
    plain = settings(SECRET)
    stored = seal(BOX, plain)
    assert SECRET not in json.dumps(stored)
    assert "client_secret" not in stored["oidc"] and str(stored["oidc"][SEALED_FIELD]).startswith("v1:")
    assert plain["oidc"]["client_secret"] == SECRET  # the input is not changed
    opened = PerUserOAuthConfig.model_validate(unseal(BOX, stored))
    assert opened.oidc is not None and opened.oidc.client_secret == SECRET


@pytest.mark.parametrize("secret", ["env.OIDC_SECRET", None])
def test_references_and_public_clients_are_stored_as_they_are(secret: str | None) -> None:
    plain = settings(secret)
    assert seal(BOX, plain) == plain
    assert unseal(BOX, plain) == plain


def test_settings_without_oidc_are_untouched() -> None:
    plain = PerUserOAuthConfig().model_dump(exclude_none=True)
    assert seal(BOX, plain) == plain and unseal(BOX, plain) == plain


def test_a_secret_sealed_under_another_key_turns_the_sign_in_off(caplog: pytest.LogCaptureFixture) -> None:
    stored = seal(SecretBox(parse_key(generate_key())), settings(SECRET))
    with caplog.at_level(logging.ERROR):
        opened = PerUserOAuthConfig.model_validate(unseal(BOX, stored))
    assert opened.oidc is None
    assert "does not decrypt" in caplog.text and SECRET not in caplog.text
