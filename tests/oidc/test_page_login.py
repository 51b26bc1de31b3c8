"""Signing in outside a consent flow (``/oauth/oidc/login?next=``) for a page that installed a login hook."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import Request
from starlette.responses import Response

from heimdall.app import create_app
from heimdall.oauth.oidc.client import AuthenticatedUser
from heimdall.oauth.oidc.routes import install_login_hook
from heimdall.settings import Settings
from tests.oidc.helpers import ALICE, CALLBACK_PATH, assert_protected, oidc_gateway_config, reserve_port
from tests.support.fake_oidc import FakeOIDCProvider
from tests.support.gateway import ADMIN_TOKEN
from tests.support.servers import ServerThread

SESSION_COOKIE = "test_page_session"


@pytest.fixture(scope="module")
def signed_in() -> list[AuthenticatedUser]:
    return []


@pytest.fixture(scope="module")
def gateway_url(
    idp: FakeOIDCProvider, tmp_path_factory: pytest.TempPathFactory, signed_in: list[AuthenticatedUser]
) -> Iterator[str]:
    """A gateway whose (test) connections page installed a login hook that sets its own session cookie."""
    app_dir: Path = tmp_path_factory.mktemp("pagelogin")
    config_path = app_dir / "config.json"
    config_path.write_text(json.dumps(oidc_gateway_config(idp)))
    port = reserve_port(idp)
    app = create_app(Settings(app_dir=app_dir, port=port, config=config_path, admin_token=ADMIN_TOKEN))

    async def hook(request: Request, response: Response, user: AuthenticatedUser) -> None:
        signed_in.append(user)
        response.set_cookie(SESSION_COOKIE, user.user_id, path="/", httponly=True, samesite="lax")

    install_login_hook(app.api, hook)
    server = ServerThread(app, port=port, lifespan="on").start(timeout=30)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def http(gateway_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_url, trust_env=False, timeout=15) as client:
        yield client


def test_sign_in_returns_to_next_with_the_pages_session(
    http: httpx.Client, idp: FakeOIDCProvider, signed_in: list[AuthenticatedUser]
) -> None:
    start = http.get("/oauth/oidc/login", params={"next": "/oauth/connections?tab=all"})
    assert start.status_code == 302, start.text
    assert_protected(start)
    approved = http.get(start.headers["location"] + "&user=" + ALICE)
    assert approved.status_code == 302
    done = http.get(approved.headers["location"])
    assert done.status_code == 302, done.text
    assert_protected(done)
    assert done.headers["location"] == "/oauth/connections?tab=all"
    assert http.cookies[SESSION_COOKIE].strip('"') == ALICE
    user = signed_in[-1]
    assert (user.user_id, user.subject, user.issuer) == (ALICE, idp.subject_of(ALICE), idp.issuer)
    assert not [c for c in http.cookies.jar if c.name.startswith("__heimdall_oidc_")]


@pytest.mark.parametrize(
    "next_path",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "evil", "", "/a b", "/x\\y", "/" + "a" * 1100],
)
def test_next_must_be_a_path_on_this_gateway(http: httpx.Client, next_path: str, idp: FakeOIDCProvider) -> None:
    response = http.get("/oauth/oidc/login", params={"next": next_path})
    assert response.status_code == 400
    assert_protected(response)
    assert "must be a path on this gateway" in response.text
    assert idp.authorize_requests == []


def test_a_bad_id_token_fails_without_a_session(
    http: httpx.Client, idp: FakeOIDCProvider, signed_in: list[AuthenticatedUser]
) -> None:
    before = len(signed_in)
    idp.knobs.bad_signature = True
    start = http.get("/oauth/oidc/login", params={"next": "/oauth/connections"})
    done = http.get(http.get(start.headers["location"] + "&user=" + ALICE).headers["location"])
    assert done.status_code == 400
    assert "could not be verified" in done.text and "/oauth/consent?flow_id=" not in done.text
    assert len(signed_in) == before and SESSION_COOKIE not in http.cookies


def test_the_callback_refuses_another_browser(http: httpx.Client, gateway_url: str, idp: FakeOIDCProvider) -> None:
    start = http.get("/oauth/oidc/login", params={"next": "/oauth/connections"})
    callback = http.get(start.headers["location"] + "&user=" + ALICE).headers["location"]
    assert callback.startswith(f"{gateway_url}{CALLBACK_PATH}?")
    with httpx.Client(trust_env=False, timeout=15) as other:
        refused = other.get(callback)
        assert refused.status_code == 400 and "started in another browser" in refused.text
        assert SESSION_COOKIE not in other.cookies


def test_the_connections_page_signs_users_in_with_oidc(idp: FakeOIDCProvider, tmp_path: Path) -> None:
    """The gateway's own hook: an OIDC sign-in opens the user's connected-services page as that user."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(oidc_gateway_config(idp)))
    port = reserve_port(idp)
    app = create_app(Settings(app_dir=tmp_path, port=port, config=config_path, admin_token=ADMIN_TOKEN))
    server = ServerThread(app, port=port, lifespan="on").start(timeout=30)
    try:
        with httpx.Client(base_url=server.url, trust_env=False, timeout=15) as browser:
            signed_out = browser.get("/oauth/connections")
            assert signed_out.status_code == 200 and "/oauth/oidc/login?next=/oauth/connections" in signed_out.text
            start = browser.get("/oauth/oidc/login", params={"next": "/oauth/connections"})
            approved = browser.get(start.headers["location"] + "&user=" + ALICE)
            done = browser.get(approved.headers["location"])
            assert done.status_code == 302 and done.headers["location"] == "/oauth/connections"
            page = browser.get("/oauth/connections")
            assert page.status_code == 200
            assert ALICE in page.text
    finally:
        server.stop()
