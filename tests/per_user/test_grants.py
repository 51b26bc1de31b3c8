"""Listing and revoking grants: the admin API and the user's connections page."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.per_user.conftest import (
    CSRF,
    VK_ALICE,
    VK_APP,
    VK_BOB,
    Browser,
    Env,
    auth_required,
    execute,
    token_rows,
    tool_output,
)

GRANTS = "/api/oauth/per-user/grants"


def connect(env: Env, browser: Browser, tool: str, upstream_user: str, **caller: Any) -> None:
    link = auth_required(execute(env.gateway, tool, **caller))["authorize_url"]
    assert browser.connect(link, upstream_user).status_code == 200


def listed(env: Env, **params: str) -> dict[str, Any]:
    with env.gateway.admin() as api:
        response = api.get(GRANTS, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_grants_are_listed_and_filtered_without_tokens(env: Env, browser: Browser) -> None:
    connect(env, browser, "notes_a-whoami", "alice", vk=VK_ALICE)
    connect(env, browser, "notes_b-whoami", "alice", vk=VK_ALICE)
    connect(env, browser, "notes_a-whoami", "carol", vk=VK_APP, user="carol")
    everything = listed(env)
    assert everything["total_count"] == 3
    grant = next(g for g in everything["grants"] if g["identity_kind"] == "vk" and g["mcp_client_name"] == "notes_a")
    assert set(grant) == {
        "id", "mcp_client_id", "mcp_client_name", "identity_kind", "identity", "vk_name", "status",
        "status_reason", "expires_at", "last_used_at", "created_at", "scopes",
    }  # fmt: skip
    assert grant["identity"] == "vk-alice" and grant["vk_name"] == "alice-key" and grant["status"] == "active"
    assert grant["expires_at"] and grant["created_at"] and grant["last_used_at"] is None
    assert grant["scopes"]
    user_grant = next(g for g in everything["grants"] if g["identity_kind"] == "user")
    assert user_grant["identity"] == "carol" and "vk_name" not in user_grant
    text = str(everything)
    for token in env.a.provider.live_tokens() | env.b.provider.live_tokens():
        assert token not in text
    assert listed(env, identity_kind="vk")["total_count"] == 2
    assert listed(env, identity_kind="vk", identity="vk-alice")["total_count"] == 2
    assert listed(env, identity_kind="user", identity="carol")["total_count"] == 1
    assert listed(env, mcp_client_id=env.client_ids["notes_a"])["total_count"] == 2
    assert listed(env, identity="nobody")["grants"] == []
    page = listed(env, limit="1", offset="1")
    assert page["total_count"] == 3 and len(page["grants"]) == 1


def test_last_use_is_recorded(env: Env, browser: Browser) -> None:
    connect(env, browser, "notes_a-whoami", "alice", vk=VK_ALICE)
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"
    assert listed(env)["grants"][0]["last_used_at"] is not None


def test_bad_filters_and_missing_credentials_are_refused(env: Env) -> None:
    with env.gateway.admin() as api:
        bad = api.get(GRANTS, params={"identity_kind": "robot"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "identity_kind"
        assert api.get(GRANTS, params={"limit": "0"}).status_code == 400
        assert api.delete(f"{GRANTS}/nope").status_code == 404
    with env.gateway.client() as anonymous:
        assert anonymous.get(GRANTS).status_code == 401
        assert anonymous.delete(f"{GRANTS}/nope").status_code == 401


def test_revoking_a_grant_revokes_upstream_and_asks_to_connect_again(env: Env, browser: Browser) -> None:
    connect(env, browser, "notes_a-whoami", "alice", vk=VK_ALICE)
    with Browser() as other:
        connect(env, other, "notes_a-whoami", "bob", vk=VK_BOB)
    alice = listed(env, identity="vk-alice")["grants"][0]
    live_before = env.a.provider.live_tokens()
    with env.gateway.admin() as api:
        assert api.delete(f"{GRANTS}/{alice['id']}").status_code == 200
        assert api.delete(f"{GRANTS}/{alice['id']}").status_code == 404
    hints = sorted(r["token_type_hint"] for r in env.a.counters.revocations)
    assert hints == ["access_token", "refresh_token"]
    assert len(env.a.provider.live_tokens()) < len(live_before)
    auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_BOB)) == "bob"  # others keep theirs
    assert [(row[1], row[2]) for row in token_rows(env.db_url)] == [("vk", "vk-bob")]


# --- the connections page ------------------------------------------------------------------------


def csrf_of(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match is not None, page.text
    return match.group(1)


def test_connections_page_sign_in_list_connect_disconnect_sign_out(env: Env, browser: Browser) -> None:
    url = env.gateway.url
    connect(env, browser, "notes_a-whoami", "alice", vk=VK_ALICE)
    with Browser() as other:
        connect(env, other, "notes_a-whoami", "bob", vk=VK_BOB)
    bobs_grant = listed(env, identity="vk-bob")["grants"][0]["id"]
    sign_in = browser.http.get(f"{url}/oauth/connections")
    assert sign_in.status_code == 200 and "Sign in" in sign_in.text
    assert sign_in.headers["x-frame-options"] == "DENY"
    form = {"vk": "sk-bf-wrong", "csrf_token": csrf_of(sign_in)}
    wrong = browser.http.post(f"{url}/oauth/connections/sign-in", data=form)
    assert wrong.status_code == 400 and "not found or inactive" in wrong.text
    forged = browser.http.post(f"{url}/oauth/connections/sign-in", data={"vk": VK_ALICE, "csrf_token": "x"})
    assert forged.status_code == 403
    page = browser.sign_in(env.gateway, VK_ALICE)
    assert 'Services for virtual key "alice-key"' in page.text.replace("&#34;", '"')
    services = re.findall(r'class="service-name">([^<]+)<', page.text)
    assert services == ["notes_a", "notes_b"]
    assert "✓ Connected" in page.text and "Not connected" in page.text
    csrf = csrf_of(page)
    # Connect the other service from the page: a connection link for this identity.
    started = browser.http.post(
        f"{url}/oauth/connections/connect", data={"csrf_token": csrf, "mcp_client_id": env.client_ids["notes_b"]}
    )
    assert started.status_code == 303 and started.headers["location"].startswith(f"{url}/oauth/connect/")
    assert browser.connect(started.headers["location"], "alice-b").status_code == 200
    assert tool_output(execute(env.gateway, "notes_b-whoami", vk=VK_ALICE)) == "alice-b"
    # Another identity's grant cannot be disconnected from here; the form needs the page's token.
    foreign = {"csrf_token": csrf, "grant_id": bobs_grant}
    refused = browser.http.post(f"{url}/oauth/connections/disconnect", data=foreign)
    assert refused.status_code == 404
    alices = listed(env, identity="vk-alice", mcp_client_id=env.client_ids["notes_a"])["grants"][0]["id"]
    no_token = browser.http.post(f"{url}/oauth/connections/disconnect", data={"grant_id": alices})
    assert no_token.status_code == 403
    done = browser.http.post(f"{url}/oauth/connections/disconnect", data={"csrf_token": csrf, "grant_id": alices})
    assert done.status_code == 303
    after = browser.http.get(url + done.headers["location"])
    assert "The service was disconnected." in after.text
    assert len(env.a.counters.revocations) == 2
    auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_BOB)) == "bob"
    out = browser.http.post(f"{url}/oauth/connections/sign-out", data={"csrf_token": csrf})
    assert out.status_code == 303
    assert "Sign in" in browser.http.get(f"{url}/oauth/connections").text


def test_a_forged_or_foreign_session_cookie_is_not_signed_in(env: Env, browser: Browser) -> None:
    page = browser.sign_in(env.gateway, VK_ALICE)
    assert "Services for" in page.text
    cookie = browser.http.cookies.get("__heimdall_connections")
    assert cookie
    payload, signature = cookie.rsplit(".", 1)
    with httpx.Client(trust_env=False, timeout=30) as other:
        other.cookies.set("__heimdall_connections", f"{payload}.{'0' * len(signature)}", path="/oauth/connections")
        assert "Sign in" in other.get(f"{env.gateway.url}/oauth/connections").text
        other.cookies.set("__heimdall_connections", cookie, path="/oauth/connections")
        assert "Services for" in other.get(f"{env.gateway.url}/oauth/connections").text  # a bearer cookie, by design
