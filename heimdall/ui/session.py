"""Admin sessions of the web UI and their CSRF tokens.

Signing in with the admin credential opens a server-side session: the browser holds a random
cookie value, the store holds only its keyed hash (``admin_sessions``). A session ends when it
expires (``SESSION_TTL``), when the browser signs out (the row is deleted), or when the admin
credential changes (every row remembers the credential it was opened with).

The cookie is ``HttpOnly`` and ``SameSite=Strict`` (``Secure`` and ``__Host-`` prefixed behind
HTTPS). Every form also carries a CSRF token derived from the cookie value, and the sign-in form one
derived from a pre-session cookie, so a cross-site form can neither sign the browser in to an
attacker's session nor act in the admin's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from heimdall.gateway import Gateway
from heimdall.oauth.upstream.records import utcnow
from heimdall.store import session_repos

#: Seconds a sign-in lasts.
SESSION_TTL = 12 * 3600
_MAX_COOKIE = 128


@dataclass(frozen=True)
class AdminSession:
    """A signed-in browser: its cookie value and the CSRF token its forms must send back."""

    cookie: str
    csrf_token: str


def _secure(gateway: Gateway) -> bool:
    return gateway.settings.base_url.startswith("https://")


def cookie_name(gateway: Gateway) -> str:
    return "__Host-heimdall_admin" if _secure(gateway) else "heimdall_admin"


def pre_cookie_name(gateway: Gateway) -> str:
    return "__Host-heimdall_admin_pre" if _secure(gateway) else "heimdall_admin_pre"


def _session_hash(gateway: Gateway, cookie: str) -> str:
    return gateway.box.lookup_hash(f"admin-session:{cookie}")


def csrf_for(gateway: Gateway, cookie: str) -> str:
    return gateway.box.lookup_hash(f"admin-csrf:{cookie}")


def sign_in_csrf(gateway: Gateway, pre_session: str) -> str:
    return gateway.box.lookup_hash(f"admin-sign-in:{pre_session}")


async def open_session(gateway: Gateway) -> str:
    """A new session for the current admin credential; returns the cookie value."""
    cookie = secrets.token_urlsafe(32)
    async with gateway.store.transaction() as session:
        credential = await session_repos.current_credential_hash(session)
        if credential is None:
            raise RuntimeError("no admin credential is installed")
        await session_repos.add_session(
            session, _session_hash(gateway, cookie), credential, utcnow() + timedelta(seconds=SESSION_TTL)
        )
    return cookie


async def read_session(gateway: Gateway, request: Request) -> AdminSession | None:
    cookie = request.cookies.get(cookie_name(gateway))
    if not cookie or len(cookie) > _MAX_COOKIE:
        return None
    async with gateway.store.read() as session:
        row = await session_repos.live_session(session, _session_hash(gateway, cookie), utcnow())
        if row is None:
            return None
        if row.credential_hash != await session_repos.current_credential_hash(session):
            return None
    return AdminSession(cookie=cookie, csrf_token=csrf_for(gateway, cookie))


async def close_session(gateway: Gateway, admin: AdminSession) -> None:
    async with gateway.store.transaction() as session:
        await session_repos.delete_session(session, _session_hash(gateway, admin.cookie))


def set_session_cookie(response: Response, gateway: Gateway, cookie: str) -> None:
    response.set_cookie(
        cookie_name(gateway),
        cookie,
        max_age=SESSION_TTL,
        path="/",
        secure=_secure(gateway),
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie(pre_cookie_name(gateway), path="/", secure=_secure(gateway), httponly=True)


def clear_session_cookie(response: Response, gateway: Gateway) -> None:
    response.delete_cookie(cookie_name(gateway), path="/", secure=_secure(gateway), httponly=True, samesite="strict")


def pre_session(gateway: Gateway, request: Request) -> tuple[str, bool]:
    """The sign-in form's pre-session value and whether it is new (then the response must set it)."""
    value = request.cookies.get(pre_cookie_name(gateway))
    if value and len(value) <= _MAX_COOKIE:
        return value, False
    return secrets.token_urlsafe(24), True


def set_pre_session_cookie(response: Response, gateway: Gateway, value: str) -> None:
    response.set_cookie(
        pre_cookie_name(gateway), value, max_age=3600, path="/", secure=_secure(gateway), httponly=True, samesite="lax"
    )
