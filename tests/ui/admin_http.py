"""The web UI over plain HTTP (no browser): a signed-in httpx client and the CSRF token its forms need."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from tests.support.gateway import RunningGateway

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@dataclass
class AdminBrowser:
    """An httpx client holding an admin session cookie, like a signed-in browser without JavaScript."""

    http: httpx.Client
    csrf: str

    def post(self, path: str, data: dict[str, str | list[str]], *, csrf: bool = True) -> httpx.Response:
        fields: dict[str, str | list[str]] = {**data, "csrf_token": self.csrf} if csrf else dict(data)
        return self.http.post(path, data=fields)


def sign_in_http(gateway: RunningGateway) -> AdminBrowser:
    http = httpx.Client(base_url=gateway.url, follow_redirects=False, trust_env=False, timeout=30)
    form = http.get("/sign-in")
    signed_in = http.post(
        "/sign-in", data={"admin_token": gateway.admin_token, "csrf_token": csrf_token(form.text), "next": "/"}
    )
    assert signed_in.status_code == 303, signed_in.text
    return AdminBrowser(http, csrf_token(http.get("/").text))
