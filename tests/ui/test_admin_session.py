"""The admin session of the web UI over plain HTTP: CSRF, Origin, throttling, sign-out and credential changes."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from heimdall.oauth.upstream.records import utcnow
from heimdall.store.engine import create_engine, create_sessionmaker
from heimdall.store.session_repos import delete_expired_sessions
from heimdall.ui.throttle import FailureThrottle
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.run_async import run_async

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def browser_client(gateway: RunningGateway) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, follow_redirects=False, trust_env=False, timeout=30)


def sign_in_form(client: httpx.Client) -> str:
    response = client.get("/sign-in")
    assert response.status_code == 200
    match = CSRF.search(response.text)
    assert match
    return match.group(1)


def signed_in(gateway: RunningGateway) -> httpx.Client:
    client = browser_client(gateway)
    token = sign_in_form(client)
    response = client.post("/sign-in", data={"csrf_token": token, "admin_token": gateway.admin_token, "next": "/"})
    assert response.status_code == 303, response.text
    return client


def page_csrf(client: httpx.Client) -> str:
    match = CSRF.search(client.get("/").text)
    assert match
    return match.group(1)


def test_session_cookie_is_http_only_strict_and_scoped_to_the_site(ui_gateway: RunningGateway) -> None:
    client = browser_client(ui_gateway)
    token = sign_in_form(client)
    response = client.post("/sign-in", data={"csrf_token": token, "admin_token": ui_gateway.admin_token})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("heimdall_admin=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert ui_gateway.admin_token not in cookie


def test_sign_in_needs_the_forms_csrf_token(ui_gateway: RunningGateway) -> None:
    client = browser_client(ui_gateway)
    sign_in_form(client)
    response = client.post("/sign-in", data={"csrf_token": "forged", "admin_token": ui_gateway.admin_token})
    assert response.status_code == 403
    assert "heimdall_admin=" not in response.headers.get("set-cookie", "")
    fresh = browser_client(ui_gateway)  # no pre-session cookie at all
    response = fresh.post("/sign-in", data={"csrf_token": "x", "admin_token": ui_gateway.admin_token})
    assert response.status_code == 403


def test_cross_origin_posts_are_refused(ui_gateway: RunningGateway) -> None:
    client = browser_client(ui_gateway)
    token = sign_in_form(client)
    response = client.post(
        "/sign-in",
        data={"csrf_token": token, "admin_token": ui_gateway.admin_token},
        headers={"Origin": "http://127.0.0.2:1"},
    )
    assert response.status_code == 403
    admin = signed_in(ui_gateway)
    response = admin.post("/sign-out", data={"csrf_token": page_csrf(admin)}, headers={"Origin": "null"})
    assert response.status_code == 403
    assert admin.get("/").status_code == 200, "a refused sign-out must leave the session alone"


def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(ui_gateway: RunningGateway) -> None:
    admin = signed_in(ui_gateway)
    stolen = dict(admin.cookies)
    assert admin.post("/sign-out", data={"csrf_token": "wrong"}).status_code == 403
    assert admin.post("/sign-out", data={"csrf_token": page_csrf(admin)}).headers["location"] == "/sign-in"
    replay = browser_client(ui_gateway)
    replay.cookies.update(stolen)
    assert replay.get("/").headers["location"] == "/sign-in?next=/"


def test_repeated_failures_are_throttled(ui_gateway: RunningGateway) -> None:
    client = browser_client(ui_gateway)
    token = sign_in_form(client)
    for _ in range(FailureThrottle().limit):
        assert client.post("/sign-in", data={"csrf_token": token, "admin_token": "guess"}).status_code == 401
    response = client.post("/sign-in", data={"csrf_token": token, "admin_token": ui_gateway.admin_token})
    assert response.status_code == 429
    assert "Too many failed attempts" in response.text


def test_a_new_admin_credential_ends_old_sessions(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path / "app")
    try:
        admin = signed_in(gateway)
        cookies = dict(admin.cookies)
    finally:
        gateway.stop()
    same = start_gateway(tmp_path / "app")
    try:
        client = browser_client(same)
        client.cookies.update(cookies)
        assert client.get("/").status_code == 200, "a restart with the same credential keeps sessions"
    finally:
        same.stop()
    rotated = start_gateway(tmp_path / "app", admin_token="hk-admin-rotated-token")
    try:
        client = browser_client(rotated)
        client.cookies.update(cookies)
        assert client.get("/").headers["location"] == "/sign-in?next=/"
    finally:
        rotated.stop()


def test_forged_flash_messages_are_ignored(ui_gateway: RunningGateway) -> None:
    admin = signed_in(ui_gateway)
    admin.cookies.set("heimdall_flash", "eyJtIjoiUGhpc2hpbmcifQ.0000")
    assert "Phishing" not in admin.get("/").text


def test_expired_sessions_are_swept(ui_gateway: RunningGateway) -> None:
    signed_in(ui_gateway)
    url = f"sqlite+aiosqlite:///{ui_gateway.app_dir / 'heimdall.db'}"

    async def sweep(at_hours: float) -> int:
        engine = create_engine(url)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                return await delete_expired_sessions(session, utcnow() + timedelta(hours=at_hours))
        finally:
            await engine.dispose()

    assert run_async(sweep(1)) == 0
    assert run_async(sweep(13)) == 1


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_sign_in_never_redirects_off_site(ui_gateway: RunningGateway, target: str) -> None:
    client = browser_client(ui_gateway)
    token = sign_in_form(client)
    response = client.post(
        "/sign-in", data={"csrf_token": token, "admin_token": ui_gateway.admin_token, "next": target}
    )
    assert response.headers["location"] == "/"
