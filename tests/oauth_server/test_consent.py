"""The consent pages and forms: what they show, browser binding, CSRF, identity options, Finish (409/410)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from heimdall.oauth.upstream.records import utcnow
from heimdall.store.per_user_models import ASGrantRow, ASPendingFlowRow
from tests.oauth_server.helpers import REDIRECT, VK_ALL, VK_INACTIVE, ASClient, gateway_config, open_store, query_of
from tests.support.gateway import RunningGateway, start_gateway

SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'; default-src 'self'",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
}


def assert_protected(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code)


def test_identity_page_names_the_client_its_redirect_and_scopes(client: ASClient) -> None:
    client_id = client.register(name="Claude Code")
    started = client.start(client_id)
    page = client.identity_page(started.flow_id)
    assert page.status_code == 200
    assert_protected(page)
    text = page.text
    assert "Claude Code wants to connect to Heimdall" in text
    assert "127.0.0.1:53682" in text
    assert "the code will be sent to an application on this computer" in text.lower()
    assert "mcp:read" in text and "mcp:write" in text
    assert "This setup page expires in 15 minutes." in text
    assert 'action="/api/oauth/per-user/consent/vk"' in text and 'type="password"' in text
    assert 'action="/api/oauth/per-user/consent/skip"' in text  # enforce_auth_on_inference is off
    assert 'action="/api/oauth/per-user/consent/user-id"' not in text  # self-declared ids are off by default
    assert "Sign in with" not in text  # no OIDC login configured
    assert text.count('name="csrf_token"') == 2


def test_https_redirect_has_no_loopback_warning_and_html_is_escaped(client: ASClient) -> None:
    client_id = client.register(["https://app.example/cb"], name="<script>alert(1)</script>")
    started = client.start(client_id, "https://app.example/cb")
    text = client.identity_page(started.flow_id).text
    assert "application on this computer" not in text
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text
    assert "app.example" in text


def test_stylesheet_is_served(client: ASClient) -> None:
    css = client.http.get("/static/heimdall.css")
    assert css.status_code == 200 and "--accent" in css.text


def test_pages_need_the_browser_that_started_the_flow(client: ASClient, gateway: RunningGateway) -> None:
    started = client.start(client.register())
    with ASClient(gateway.url) as other_browser:
        for path in ("/oauth/consent", "/oauth/consent/mcps"):
            response = other_browser.http.get(path, params={"flow_id": started.flow_id})
            assert response.status_code == 403
            assert "Flow does not belong to this browser session" in response.text
            assert_protected(response)
        other_browser.http.cookies.set("__bifrost_flow_secret", "forged-secret")
        assert other_browser.identity_page(started.flow_id).status_code == 403
        form = {"flow_id": started.flow_id, "vk": VK_ALL, "csrf_token": client.csrf(started.flow_id)}
        refused = other_browser.post("/api/oauth/per-user/consent/vk", form)
        assert refused.status_code == 403
        assert refused.json()["error"]["message"].startswith("Flow does not belong to this browser session")
        assert_protected(refused)
        as_page = other_browser.post("/api/oauth/per-user/consent/vk", form, accept="text/html")
        assert as_page.status_code == 403 and as_page.headers["content-type"].startswith("text/html")


def test_unknown_missing_and_garbage_flow_ids(client: ASClient) -> None:
    missing = client.http.get("/oauth/consent")
    assert missing.status_code == 400 and "Missing flow_id" in missing.text
    unknown = client.identity_page("no-such-flow")
    assert unknown.status_code == 400
    assert "Invalid or expired consent flow. Please restart the authentication process." in unknown.text
    assert client.identity_page("x" * 5000).status_code == 400
    assert client.post("/api/oauth/per-user/consent/vk", {"vk": VK_ALL}).status_code == 400
    assert client.post("/api/oauth/per-user/consent/submit", {"flow_id": "nope\x00"}).status_code == 400


@pytest.mark.parametrize(
    ("vk", "message"),
    [
        ("", "Please enter a Virtual Key."),
        ("   ", "Please enter a Virtual Key."),
        ("sk-bf-does-not-exist", "Virtual Key not found or inactive. Please check and try again."),
        (VK_INACTIVE, "Virtual Key not found or inactive. Please check and try again."),
        ("x" * 2000, "Virtual Key not found or inactive. Please check and try again."),
    ],
)
def test_virtual_key_validation_redirects_back_with_a_message(client: ASClient, vk: str, message: str) -> None:
    started = client.start(client.register())
    response = client.choose_vk(started.flow_id, vk)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith("/oauth/consent?") and query_of(location)["error"] == message
    assert message in client.http.get(location).text


def test_the_error_parameter_cannot_inject_text(client: ASClient) -> None:
    started = client.start(client.register())
    page = client.identity_page(started.flow_id, error="Your session expired, enter your key at evil.example")
    assert "evil.example" not in page.text
    assert "Something went wrong" in page.text


def test_forged_or_missing_csrf_token_is_refused_and_changes_nothing(client: ASClient) -> None:
    started = client.start(client.register())
    for token in ("forged", "", "0" * 64):
        response = client.choose_vk(started.flow_id, VK_ALL, csrf=token)
        assert response.status_code == 403
        assert "CSRF" in response.json()["error"]["message"]
    no_token = client.post("/api/oauth/per-user/consent/vk", {"flow_id": started.flow_id, "vk": VK_ALL})
    assert no_token.status_code == 403
    assert client.finish(started.flow_id, csrf="forged").status_code == 403
    # The identity was never set: Finish sends the browser back to choose one.
    back = client.finish(started.flow_id)
    assert back.status_code == 302
    assert query_of(back.headers["location"])["error"] == "Please choose how to identify yourself first."


def test_self_declared_user_id_is_refused_while_the_switch_is_off(client: ASClient) -> None:
    started = client.start(client.register())
    response = client.post(
        "/api/oauth/per-user/consent/user-id",
        {"flow_id": started.flow_id, "user_id": "alice", "csrf_token": client.csrf(started.flow_id)},
    )
    assert response.status_code == 403
    assert "disabled" in response.json()["error"]["message"]
    back = client.finish(started.flow_id)
    assert query_of(back.headers["location"])["error"] == "Please choose how to identify yourself first."


def test_skip_shows_the_services_step_without_connect_links(client: ASClient) -> None:
    started = client.start(client.register())
    skipped = client.skip(started.flow_id)
    assert skipped.status_code == 302
    assert skipped.headers["location"] == f"/oauth/consent/mcps?flow_id={started.flow_id}"
    assert_protected(skipped)
    page = client.http.get(skipped.headers["location"])
    assert page.status_code == 200
    assert_protected(page)
    assert "You skipped identity selection. Services will be connected when you first use their tools" in page.text
    assert "Connect Your Apps" in page.text
    assert "/api/oauth/per-user/upstream" not in page.text and "Connect<" not in page.text
    assert 'action="/api/oauth/per-user/consent/submit"' in page.text and "Finish Setup" in page.text
    assert f'href="/oauth/consent?flow_id={started.flow_id}"' in page.text  # Change identity


def test_services_page_before_an_identity_goes_back(client: ASClient) -> None:
    started = client.start(client.register())
    response = client.http.get("/oauth/consent/mcps", params={"flow_id": started.flow_id})
    assert response.status_code == 302 and response.headers["location"].startswith("/oauth/consent?flow_id=")


def test_finish_redirects_with_code_state_and_iss_then_409(client: ASClient) -> None:
    redirect = "https://app.example/cb?tenant=acme"
    client_id = client.register([redirect])
    started = client.start(client_id, redirect, state="opaque/state+1")
    assert client.choose_vk(started.flow_id, VK_ALL).status_code == 302
    csrf = client.csrf(started.flow_id)
    done = client.finish(started.flow_id, csrf=csrf)
    assert done.status_code == 302
    assert_protected(done)
    location = done.headers["location"]
    assert location.startswith("https://app.example/cb?")
    params = query_of(location)
    assert params["tenant"] == "acme"
    assert params["state"] == "opaque/state+1"
    assert params["iss"] == client.base_url
    assert len(params["code"]) == 43
    assert "max-age=0" in done.headers["set-cookie"].lower() or "expires=" in done.headers["set-cookie"].lower()
    again = client.post("/api/oauth/per-user/consent/submit", {"flow_id": started.flow_id, "csrf_token": csrf})
    assert again.status_code == 409
    assert again.json()["error"]["message"] == "Consent flow has already been submitted"
    assert client.identity_page(started.flow_id).status_code == 400


def test_finish_without_state_sends_no_state(client: ASClient) -> None:
    client_id = client.register()
    started = client.start(client_id, state=None)
    client.choose_vk(started.flow_id, VK_ALL)
    params = query_of(client.finish(started.flow_id).headers["location"])
    assert "state" not in params and params["code"] and params["iss"]


async def test_expired_flow_is_400_on_pages_and_410_on_finish(client: ASClient, gateway: RunningGateway) -> None:
    started = client.start(client.register())
    client.choose_vk(started.flow_id, VK_ALL)
    csrf = client.csrf(started.flow_id)
    store = open_store(gateway.app_dir)
    try:
        async with store.transaction() as session:
            await session.execute(
                update(ASPendingFlowRow)
                .where(ASPendingFlowRow.id == started.flow_id)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        assert client.identity_page(started.flow_id).status_code == 400
        gone = client.post("/api/oauth/per-user/consent/submit", {"flow_id": started.flow_id, "csrf_token": csrf})
        assert gone.status_code == 410
        assert gone.json()["error"]["message"] == "Consent flow has expired. Please restart the authentication process."
        async with store.read() as session:
            assert await session.get(ASPendingFlowRow, started.flow_id) is not None  # nothing changed
    finally:
        await store.engine.dispose()


async def test_finish_creates_the_grant_for_the_chosen_identity(client: ASClient, gateway: RunningGateway) -> None:
    client_id = client.register()
    code, _ = client.code_for(client_id, VK_ALL)
    skipped_code, _ = client.code_for(client_id, None)
    store = open_store(gateway.app_dir)
    try:
        async with store.read() as session:
            grants = list((await session.scalars(select(ASGrantRow))).all())
        kinds = {(row.identity_kind, row.client_id) for row in grants}
        assert ("vk", client_id) in kinds and ("session", client_id) in kinds
        vk_grant = next(row for row in grants if row.identity_kind == "vk" and row.client_id == client_id)
        assert vk_grant.identity == "vk-all"
        session_grant = next(row for row in grants if row.identity_kind == "session" and row.client_id == client_id)
        assert len(session_grant.identity) >= 43  # a random session key
    finally:
        await store.engine.dispose()
    assert code != skipped_code


# --- a gateway with the identity switches flipped -----------------------------------------------------------


@pytest.fixture(scope="module")
def switched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = gateway_config(
        per_user_oauth={
            "allow_self_declared_user_ids": True,
            "oidc": {"issuer": "https://login.example", "client_id": "heimdall", "display_name": "Example SSO"},
        },
        client={"enforce_auth_on_inference": True},
    )
    running = start_gateway(tmp_path_factory.mktemp("switched"), config=config)
    yield running
    running.stop()


def test_switches_show_user_id_with_warning_oidc_and_no_skip(switched: RunningGateway) -> None:
    with ASClient(switched.url) as client:
        started = client.start(client.register())
        text = client.identity_page(started.flow_id).text
        assert 'action="/api/oauth/per-user/consent/user-id"' in text
        assert "Anyone can type any User ID" in text
        assert f'href="/oauth/consent/oidc/start?flow_id={started.flow_id}"' in text
        assert "Sign in with Example SSO" in text
        assert 'action="/api/oauth/per-user/consent/skip"' not in text
        refused = client.skip(started.flow_id)
        assert query_of(refused.headers["location"])["error"] == (
            "An identity (Virtual Key or User ID) is required. Please choose one to continue."
        )


@pytest.mark.parametrize(
    ("user_id", "message"),
    [("", "Please enter a User ID."), ("u" * 256, "User ID is too long (max 255 characters).")],
)
def test_user_id_validation(switched: RunningGateway, user_id: str, message: str) -> None:
    with ASClient(switched.url) as client:
        started = client.start(client.register())
        response = client.post(
            "/api/oauth/per-user/consent/user-id",
            {"flow_id": started.flow_id, "user_id": user_id, "csrf_token": client.csrf(started.flow_id)},
        )
        assert query_of(response.headers["location"])["error"] == message


def test_user_id_consent_completes(switched: RunningGateway) -> None:
    with ASClient(switched.url) as client:
        client_id = client.register()
        started = client.start(client_id)
        chosen = client.post(
            "/api/oauth/per-user/consent/user-id",
            {"flow_id": started.flow_id, "user_id": " alice ", "csrf_token": client.csrf(started.flow_id)},
        )
        assert chosen.headers["location"].startswith("/oauth/consent/mcps")
        done = client.finish(started.flow_id)
        code = query_of(done.headers["location"])["code"]
        tokens = client.exchange(code, started.verifier, client_id)
        assert tokens.status_code == 200
        # enforce_auth_on_inference is on, and an authenticated user id is an identity (W21): /mcp accepts it.
        assert client.mcp(tokens.json()["access_token"], "initialize").status_code == 200
        assert REDIRECT.startswith("http://127.0.0.1")
