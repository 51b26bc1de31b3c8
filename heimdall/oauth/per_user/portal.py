"""Who is signed in to the connections page (``/oauth/connections``): a short-lived signed cookie.

The cookie ``__heimdall_connections`` holds ``<payload>.<signature>``: the payload is base64url JSON
``{"k": kind, "i": identity, "e": expiry (unix seconds), "n": nonce}`` and the signature is
``SecretBox.lookup_hash`` (HMAC-SHA256 under a key derived from the master key) of the payload with
its own domain prefix. Nothing is stored server-side: a session ends when the cookie expires
(``SESSION_TTL``) or is deleted (sign-out). Every request re-checks that a virtual key identity is
still active. Forms carry a CSRF token derived from the cookie; the sign-in form's token is derived
from a pre-session cookie.

Signing in: with a virtual key today. Hook for an OIDC user sign-in: once a login has authenticated
a user id, call ``set_session(response, gateway, Identity("user", user_id))``.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time

from starlette.responses import Response

from heimdall.crypto import csrf_ok as csrf_ok
from heimdall.gateway import Gateway
from heimdall.oauth.per_user.identity import MAX_IDENTITY_LENGTH, Identity, parse_kind, still_valid

PAGE_PATH = "/oauth/connections"
SESSION_COOKIE = "__heimdall_connections"
PRE_SESSION_COOKIE = "__heimdall_connections_pre"
#: Seconds a sign-in lasts.
SESSION_TTL = 1800
_MAX_COOKIE = 2048


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(gateway: Gateway, payload: str) -> str:
    return gateway.box.lookup_hash(f"connections-session:{payload}")


def _secure(gateway: Gateway) -> bool:
    return gateway.settings.base_url.startswith("https://")


def issue(gateway: Gateway, identity: Identity, *, now: float | None = None, ttl: int = SESSION_TTL) -> str:
    body = {"k": identity.kind, "i": identity.value, "e": int((now or time.time()) + ttl), "n": secrets.token_hex(8)}
    payload = _b64e(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_sign(gateway, payload)}"


def read(gateway: Gateway, cookie: str | None, *, now: float | None = None) -> Identity | None:
    """The signed-in identity, or None (no cookie, bad signature, expired, or its key is no longer active)."""
    if not cookie or len(cookie) > _MAX_COOKIE or "." not in cookie:
        return None
    payload, signature = cookie.rsplit(".", 1)
    if not hmac.compare_digest(_sign(gateway, payload), signature):
        return None
    try:
        body = json.loads(_b64d(payload))
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("e"), int) or body["e"] <= (now or time.time()):
        return None
    kind, value = parse_kind(body.get("k")), body.get("i")
    if kind is None or not isinstance(value, str) or not value or len(value) > MAX_IDENTITY_LENGTH:
        return None
    identity = Identity(kind, value)
    return identity if still_valid(gateway, identity) else None


def csrf_token(gateway: Gateway, cookie: str) -> str:
    return gateway.box.lookup_hash(f"connections-csrf:{cookie}")


def sign_in_csrf(gateway: Gateway, pre_session: str) -> str:
    return gateway.box.lookup_hash(f"connections-sign-in:{pre_session}")


def set_session(response: Response, gateway: Gateway, identity: Identity) -> None:
    """Sign ``identity`` in on this browser (the hook other sign-in methods use)."""
    response.set_cookie(
        SESSION_COOKIE,
        issue(gateway, identity),
        max_age=SESSION_TTL,
        path=PAGE_PATH,
        secure=_secure(gateway),
        httponly=True,
        samesite="lax",
    )
    response.delete_cookie(PRE_SESSION_COOKIE, path=PAGE_PATH, secure=_secure(gateway), httponly=True, samesite="lax")


def clear_session(response: Response, gateway: Gateway) -> None:
    response.delete_cookie(SESSION_COOKIE, path=PAGE_PATH, secure=_secure(gateway), httponly=True, samesite="lax")


def set_pre_session(response: Response, gateway: Gateway, value: str) -> None:
    response.set_cookie(
        PRE_SESSION_COOKIE, value, max_age=3600, path=PAGE_PATH, secure=_secure(gateway), httponly=True, samesite="lax"
    )
