"""The OIDC client secret at rest: a literal secret is stored encrypted, an ``env.NAME`` reference as it is.

The ``per_user_oauth`` settings live as JSON in ``gateway_settings``. Before they are stored,
``seal`` replaces a literal ``oidc.client_secret`` by ``oidc.client_secret_encrypted`` (AES-GCM,
bound to ``SECRET_CONTEXT``); ``unseal`` turns it back when the settings are read. A secret that
does not decrypt with the configured key disables the OIDC login (fail closed) instead of
stopping the gateway.
"""

from __future__ import annotations

import logging
from typing import Any

from heimdall.config.loader import ENV_PREFIX
from heimdall.crypto import CryptoError, SecretBox

log = logging.getLogger(__name__)

SECRET_CONTEXT = "per_user_oauth:oidc_client_secret"
SECRET_FIELD = "client_secret"
SEALED_FIELD = "client_secret_encrypted"


def seal(box: SecretBox, settings: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``per_user_oauth`` settings fit to store: no literal OIDC client secret in it."""
    oidc = settings.get("oidc")
    if not isinstance(oidc, dict):
        return settings
    secret = oidc.get(SECRET_FIELD)
    if not isinstance(secret, str) or secret.startswith(ENV_PREFIX):
        return settings
    sealed = {name: value for name, value in oidc.items() if name != SECRET_FIELD}
    sealed[SEALED_FIELD] = box.encrypt(secret, context=SECRET_CONTEXT)
    return {**settings, "oidc": sealed}


def unseal(box: SecretBox, stored: dict[str, Any]) -> dict[str, Any]:
    """Stored ``per_user_oauth`` settings with the OIDC client secret decrypted again."""
    oidc = stored.get("oidc")
    if not isinstance(oidc, dict) or SEALED_FIELD not in oidc:
        return stored
    opened = {name: value for name, value in oidc.items() if name != SEALED_FIELD}
    try:
        opened[SECRET_FIELD] = box.decrypt(str(oidc[SEALED_FIELD]), context=SECRET_CONTEXT)
    except CryptoError:
        log.error("the stored OIDC client secret does not decrypt with this encryption key; OIDC sign-in is off")
        return {name: value for name, value in stored.items() if name != "oidc"}
    return {**stored, "oidc": opened}
