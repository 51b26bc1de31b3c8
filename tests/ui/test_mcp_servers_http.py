"""The MCP servers section over plain HTTP: who may do what, CSRF, bad input, and the sign-in endpoints."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import update

from heimdall.store.mcp_models import OAuthConfigRow
from tests.support.gateway import RunningGateway
from tests.support.mcp_servers import UpstreamServer
from tests.ui.admin_http import AdminBrowser, sign_in_http
from tests.ui.store_access import run_sql_at

DEAD = "http://127.0.0.1:9"
OLD_KEY = "old-key-9f3b2c71e4"
NEW_KEY = "new-key-1a6d5e08b2"
PENDING_OAUTH = {
    "name": "wiki",
    "connection_type": "http",
    "connection_string": f"{DEAD}/mcp",
    "auth_type": "per_user_oauth",
    "oauth_config": {
        "client_id": "heimdall",
        "authorize_url": f"{DEAD}/authorize",
        "token_url": f"{DEAD}/token",
    },
}
NEW_SERVER: dict[str, str | list[str]] = {
    "name": "notes",
    "connection_type": "http",
    "connection_string": f"{DEAD}/mcp",
    "auth_type": "none",
    "tools_mode": "all",
    "is_ping_available": "on",
    "tool_sync_interval": "0",
}


@pytest.fixture
def admin(ui_gateway: RunningGateway) -> Iterator[AdminBrowser]:
    browser = sign_in_http(ui_gateway)
    yield browser
    browser.http.close()


@pytest.fixture
def keyed() -> Iterator[UpstreamServer]:
    with UpstreamServer("http", api_keys={OLD_KEY, NEW_KEY}) as server:
        yield server


def clients(gateway: RunningGateway) -> list[dict[str, Any]]:
    with gateway.admin() as api:
        listed: list[dict[str, Any]] = api.get("/api/mcp/clients").json()["clients"]
    return listed


def add_keyed(gateway: RunningGateway, server: UpstreamServer) -> str:
    body = {
        "name": "keyed",
        "connection_type": "http",
        "connection_string": server.url,
        "auth_type": "headers",
        "headers": {"X-Api-Key": OLD_KEY},
    }
    with gateway.admin() as api:
        created = api.post("/api/mcp/client", json=body)
    assert created.status_code == 200, created.text
    client_id: str = created.json()["mcp_client_id"]
    return client_id


def start_pending(gateway: RunningGateway) -> str:
    with gateway.admin() as api:
        started = api.post("/api/mcp/client", json=PENDING_OAUTH)
    assert started.status_code == 200, started.text
    oauth_config_id: str = started.json()["oauth_config_id"]
    return oauth_config_id


def sent_keys(server: UpstreamServer) -> list[str | None]:
    return [request.headers.get("x-api-key") for request in server.requests]


def wait_for(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- who may ----------------------------------------------------------------------------------


def test_without_a_session_pages_redirect_json_is_401_and_posts_change_nothing(
    ui_gateway: RunningGateway, keyed: UpstreamServer
) -> None:
    client_id = add_keyed(ui_gateway, keyed)
    pending = start_pending(ui_gateway)
    with httpx.Client(base_url=ui_gateway.url, follow_redirects=False, trust_env=False) as anonymous:
        for path in (
            "/mcp-servers",
            "/mcp-servers/new",
            f"/mcp-servers/{client_id}",
            f"/mcp-servers/pending/{pending}",
        ):
            answer = anonymous.get(path)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in?next="), path
        authorize = anonymous.get(f"/mcp-servers/pending/{pending}/authorize")
        assert authorize.status_code == 303 and authorize.headers["location"].startswith("/sign-in")
        status = anonymous.get(f"/mcp-servers/pending/{pending}/status")
        assert status.status_code == 401 and status.json()["state"] == "signed_out"
        posts = {
            "/mcp-servers/new": {**NEW_SERVER, "name": "intruder"},
            f"/mcp-servers/{client_id}/edit": {"name": "renamed", "tools_mode": "all"},
            f"/mcp-servers/{client_id}/reconnect": {},
            f"/mcp-servers/{client_id}/delete": {},
            f"/mcp-servers/pending/{pending}/finish": {},
            f"/mcp-servers/pending/{pending}/discard": {},
        }
        for path, form in posts.items():
            answer = anonymous.post(path, data={**form, "csrf_token": "guessed"})
            assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in"), path
    assert [client["config"]["name"] for client in clients(ui_gateway)] == ["keyed"]
    with ui_gateway.admin() as api:
        assert api.get(f"/api/oauth/config/{pending}/status").json()["status"] == "pending"


def test_posts_without_the_csrf_token_are_refused_and_change_nothing(
    ui_gateway: RunningGateway, admin: AdminBrowser, keyed: UpstreamServer
) -> None:
    client_id = add_keyed(ui_gateway, keyed)
    pending = start_pending(ui_gateway)
    initializations = keyed.initializations()
    posts = {
        "/mcp-servers/new": {**NEW_SERVER, "name": "forged"},
        f"/mcp-servers/{client_id}/edit": {"name": "renamed", "tools_mode": "all"},
        f"/mcp-servers/{client_id}/reconnect": {},
        f"/mcp-servers/{client_id}/delete": {},
        f"/mcp-servers/pending/{pending}/finish": {},
        f"/mcp-servers/pending/{pending}/discard": {},
    }
    for path, form in posts.items():
        missing = admin.post(path, form, csrf=False)
        assert missing.status_code == 403, path
        assert "nothing was changed" in missing.text
        wrong = admin.post(path, {**form, "csrf_token": "x" * 64}, csrf=False)
        assert wrong.status_code == 403, path
        cross_site = admin.http.post(
            path, data={**form, "csrf_token": admin.csrf}, headers={"Origin": "https://evil.example"}
        )
        assert cross_site.status_code == 403, path
    assert [client["config"]["name"] for client in clients(ui_gateway)] == ["keyed"]
    assert keyed.initializations() == initializations  # no reconnect happened
    status = admin.http.get(f"/mcp-servers/pending/{pending}/status")
    assert status.json()["state"] == "waiting"  # neither finished nor discarded


# --- adding -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"name": "has-hyphen"}, "f-name", "name may only contain"),
        ({"connection_string": "ftp://example.com"}, "f-connection_string", "http(s) URL"),
        ({"connection_string": ""}, "f-connection_string", "connection_string is required"),
        ({"connection_type": "stdio"}, "f-stdio_command", "Enter the command"),
        ({"tool_sync_interval": "soon"}, "f-tool_sync_interval", "whole number"),
        ({"tools_mode": "some", "tools_list": "a", "auto_tools": "b"}, "f-auto_tools", "subset"),
        ({"auth_type": "headers", "header_name": ["X-Api-Key"], "header_value": [""]}, "f-headers", "Enter a value"),
    ],
)
def test_bad_input_is_a_400_with_inline_errors_and_saves_nothing(
    ui_gateway: RunningGateway, admin: AdminBrowser, form: dict[str, str | list[str]], field: str, message: str
) -> None:
    answer = admin.post("/mcp-servers/new", {**NEW_SERVER, **form})
    assert answer.status_code == 400, answer.text
    assert f'id="{field}-error"' in answer.text, answer.text
    assert message in answer.text
    assert "Nothing was saved" in answer.text
    assert clients(ui_gateway) == []


def test_secret_values_are_never_sent_back(ui_gateway: RunningGateway, admin: AdminBrowser) -> None:
    form = {
        **NEW_SERVER,
        "name": "bad name",
        "auth_type": "headers",
        "header_name": ["X-Api-Key"],
        "header_value": [NEW_KEY],
    }
    answer = admin.post("/mcp-servers/new", form)
    assert answer.status_code == 400
    assert 'value="X-Api-Key"' in answer.text and NEW_KEY not in answer.text
    oauth = {**NEW_SERVER, "name": "bad name", "auth_type": "oauth", "oauth_client_secret": NEW_KEY}
    answer = admin.post("/mcp-servers/new", oauth)
    assert answer.status_code == 400 and NEW_KEY not in answer.text


def test_a_duplicate_name_is_reported_on_the_name_field(
    ui_gateway: RunningGateway, admin: AdminBrowser, keyed: UpstreamServer
) -> None:
    add_keyed(ui_gateway, keyed)
    answer = admin.post("/mcp-servers/new", {**NEW_SERVER, "name": "keyed"})
    assert answer.status_code == 400
    assert 'id="f-name-error"' in answer.text and "already exists" in answer.text
    assert len(clients(ui_gateway)) == 1


def test_header_values_are_kept_or_replaced_by_an_edit(
    ui_gateway: RunningGateway, admin: AdminBrowser, keyed: UpstreamServer
) -> None:
    client_id = add_keyed(ui_gateway, keyed)
    page = admin.http.get(f"/mcp-servers/{client_id}/edit")
    assert page.status_code == 200 and OLD_KEY not in page.text
    base = {"name": "keyed", "tools_mode": "all", "header_kept": "X-Api-Key", "is_ping_available": "on"}
    kept = admin.post(f"/mcp-servers/{client_id}/edit", {**base, "header_kept_value": ""})
    assert kept.status_code == 303, kept.text
    assert admin.post(f"/mcp-servers/{client_id}/reconnect", {}).status_code == 303
    wait_for(lambda: sent_keys(keyed)[-1:] == [OLD_KEY])

    replaced = admin.post(f"/mcp-servers/{client_id}/edit", {**base, "header_kept_value": NEW_KEY})
    assert replaced.status_code == 303, replaced.text
    assert admin.post(f"/mcp-servers/{client_id}/reconnect", {}).status_code == 303
    wait_for(lambda: sent_keys(keyed)[-1:] == [NEW_KEY])

    removed = admin.post(f"/mcp-servers/{client_id}/edit", {**base, "header_remove": "X-Api-Key"})
    assert removed.status_code == 400  # headers auth needs at least one header
    assert "needs at least one header" in removed.text
    assert 'value="X-Api-Key" checked' in removed.text  # the removal is still ticked after the error


# --- the sign-in endpoints -----------------------------------------------------------------------


def test_the_sign_in_link_arms_a_fresh_attempt_each_time(ui_gateway: RunningGateway, admin: AdminBrowser) -> None:
    pending = start_pending(ui_gateway)
    page = admin.http.get(f"/mcp-servers/pending/{pending}")
    assert page.status_code == 200
    assert f"{DEAD}/authorize" not in page.text  # the page never holds an authorize URL (single use)
    states = []
    for _ in range(2):
        opened = admin.http.get(f"/mcp-servers/pending/{pending}/authorize")
        assert opened.status_code == 303
        assert opened.headers["referrer-policy"] == "no-referrer" and opened.headers["cache-control"] == "no-store"
        location = opened.headers["location"]
        assert location.startswith(f"{DEAD}/authorize?")
        query = parse_qs(urlsplit(location).query)
        assert query["code_challenge_method"] == ["S256"]
        assert query["redirect_uri"] == [f"{ui_gateway.url}/api/oauth/callback"]
        states.append(query["state"][0])
    assert states[0] != states[1]


def test_status_and_finish_before_the_sign_in(ui_gateway: RunningGateway, admin: AdminBrowser) -> None:
    pending = start_pending(ui_gateway)
    status = admin.http.get(f"/mcp-servers/pending/{pending}/status")
    assert status.status_code == 200 and status.headers["cache-control"] == "no-store"
    body = status.json()
    assert body["state"] == "waiting" and body["next_url"] is None and body["attempt"]
    assert "authorize" not in status.text and "state=" not in status.text

    early = admin.http.post(
        f"/mcp-servers/pending/{pending}/finish",
        data={"csrf_token": admin.csrf},
        headers={"Accept": "application/json"},
    )
    assert early.status_code == 409 and early.json()["ok"] is False
    assert "not finished signing in" in early.json()["message"]
    no_js = admin.post(f"/mcp-servers/pending/{pending}/finish", {})
    assert no_js.status_code == 303 and no_js.headers["location"] == f"/mcp-servers/pending/{pending}"
    assert clients(ui_gateway) == []

    gone = admin.http.get("/mcp-servers/pending/no-such-login/status")
    assert gone.status_code == 404 and gone.json()["state"] == "gone"
    assert admin.http.get("/mcp-servers/pending/no-such-login").status_code == 404


def test_discarding_a_pending_server(ui_gateway: RunningGateway, admin: AdminBrowser) -> None:
    pending = start_pending(ui_gateway)
    listed = admin.http.get("/mcp-servers")
    assert "Waiting for sign-in" in listed.text and "wiki" in listed.text
    discarded = admin.post(f"/mcp-servers/pending/{pending}/discard", {})
    assert discarded.status_code == 303 and discarded.headers["location"] == "/mcp-servers"
    assert "Waiting for sign-in" not in admin.http.get("/mcp-servers").text
    assert admin.http.get(f"/mcp-servers/pending/{pending}/status").status_code == 404
    with ui_gateway.admin() as api:
        assert api.get(f"/api/oauth/config/{pending}/status").status_code == 404


def test_a_server_declared_in_config_json_starts_its_test_sign_in_once(gateway_factory: Any) -> None:
    declared = {**PENDING_OAUTH, "name": "notion", "client_id": "notion"}
    gateway: RunningGateway = gateway_factory(config={"mcp": {"client_configs": [declared]}})
    admin = sign_in_http(gateway)
    try:
        page = admin.http.get("/mcp-servers/notion")
        assert "Pending verification" in page.text and "Start the test sign-in" in page.text
        assert "Reconnect" not in page.text  # a per-user server has no shared connection
        started = admin.post("/mcp-servers/notion/verify", {})
        assert started.status_code == 303 and started.headers["location"].startswith("/mcp-servers/pending/")
        again = admin.post("/mcp-servers/notion/verify", {})
        assert again.headers["location"] == started.headers["location"]  # the same sign-in, not a new one
        assert "Continue the test sign-in" in admin.http.get("/mcp-servers/notion").text
        listed = admin.http.get("/mcp-servers").text
        assert "Waiting for sign-in" not in listed and "Pending verification" in listed
        sign_in_page = admin.http.get(started.headers["location"])
        assert sign_in_page.status_code == 200 and "Sign in with notion" in sign_in_page.text
    finally:
        admin.http.close()


def test_an_expired_sign_in_says_so_and_the_link_starts_a_new_one(
    ui_gateway: RunningGateway, admin: AdminBrowser
) -> None:
    pending = start_pending(ui_gateway)
    past = datetime.now(UTC) - timedelta(minutes=1)
    run_sql_at(ui_gateway.app_dir, update(OAuthConfigRow).where(OAuthConfigRow.id == pending).values(expires_at=past))
    expired = admin.http.get(f"/mcp-servers/pending/{pending}/status").json()
    assert expired["state"] == "expired" and "15 minutes" in expired["message"]
    page = admin.http.get(f"/mcp-servers/pending/{pending}")
    assert "15 minutes" in page.text and ">Try again</a>" in page.text
    assert admin.http.get(f"/mcp-servers/pending/{pending}/authorize").status_code == 303
    renewed = admin.http.get(f"/mcp-servers/pending/{pending}/status").json()
    assert renewed["state"] == "waiting" and renewed["attempt"] != expired["attempt"]
