"""Lazy auth on the LLM gateway and on /mcp, end to end: each identity connects and uses its own account."""

from __future__ import annotations

from typing import Any

from tests.per_user.conftest import (
    VK_ALICE,
    VK_APP,
    VK_BOB,
    Browser,
    Env,
    auth_required,
    execute,
    mcp_session,
    text_of,
    token_rows,
    tool_output,
)


def test_virtual_key_connects_its_own_account_and_then_uses_it(env: Env, browser: Browser) -> None:
    lazy = auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))
    assert lazy["mcp_client_id"] == env.client_ids["notes_a"] and lazy["mcp_client_name"] == "notes_a"
    assert lazy["authorize_url"].startswith(f"{env.gateway.url}/oauth/connect/")
    assert lazy["session_id"] and lazy["session_id"] not in lazy["authorize_url"]
    page, _ = browser.open_link(lazy["authorize_url"])
    assert 'Connect notes_a for virtual key "alice-key"' in page.text.replace("&#34;", '"')
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    landed = browser.connect(lazy["authorize_url"], "alice")
    assert landed.status_code == 200, landed.text
    assert "Authorization Successful" in landed.text and "You can close this tab." in landed.text
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"
    # Stored under exactly that identity, encrypted.
    rows = token_rows(env.db_url)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(env.client_ids["notes_a"], "vk", "vk-alice", "active")]
    assert all(r[5].startswith("v1:") for r in rows)


def test_another_key_gets_its_own_login_and_its_own_token(env: Env, browser: Browser) -> None:
    browser.connect(auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))["authorize_url"], "alice")
    lazy = auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_BOB))  # never alice's token
    with Browser() as bobs_browser:
        assert bobs_browser.connect(lazy["authorize_url"], "bob").status_code == 200
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_BOB)) == "bob"
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"
    # The second upstream is a separate account with a separate login.
    lazy_b = auth_required(execute(env.gateway, "notes_b-whoami", vk=VK_ALICE))
    assert lazy_b["mcp_client_name"] == "notes_b"
    assert browser.connect(lazy_b["authorize_url"], "alice-at-b").status_code == 200
    assert tool_output(execute(env.gateway, "notes_b-whoami", vk=VK_ALICE)) == "alice-at-b"
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"
    assert len(token_rows(env.db_url)) == 3


def test_user_ids_need_an_asserting_key_and_are_isolated(env: Env, browser: Browser) -> None:
    refused = execute(env.gateway, "notes_a-whoami", vk=VK_ALICE, user="carol")
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "user_id_assertion_not_allowed"
    lazy = auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_APP, user="carol"))
    page, _ = browser.open_link(lazy["authorize_url"])
    assert 'Connect notes_a for user "carol"' in page.text.replace("&#34;", '"')
    assert browser.connect(lazy["authorize_url"], "carol").status_code == 200
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_APP, user="carol")) == "carol"
    # Another user of the same key has no token, and the key's own identity has none either.
    auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_APP, user="dave"))
    auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_APP))
    assert [(r[1], r[2]) for r in token_rows(env.db_url)] == [("user", "carol")]


def test_a_user_id_never_falls_back_to_the_keys_own_token(env: Env, browser: Browser) -> None:
    browser.connect(auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_APP))["authorize_url"], "service")
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_APP)) == "service"
    lazy = auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_APP, user="erin"))
    assert lazy["mcp_client_name"] == "notes_a"


def test_without_an_identity_the_llm_gateway_explains_what_is_missing(env: Env) -> None:
    response = execute(env.gateway, "notes_b-whoami")
    assert response.status_code == 200, response.text
    assert response.json()["content"] == (
        "Tool execution failed: per-user OAuth for notes_b requires a user identity: include X-Bf-User-Id or a "
        "Virtual Key in your request so the token can be linked to you"
    )


async def test_a_key_token_serves_mcp_too_and_mcp_lazy_auth_is_a_tool_result(env: Env) -> None:
    async with mcp_session(env.gateway, **{"x-bf-vk": VK_BOB}) as session:
        first = await session.call_tool("notes_a-whoami", {})
        assert first.is_error
        message = text_of(first)
        prefix = "Authentication required for notes_a. Open this URL to connect your account: "
        assert message.startswith(prefix + f"{env.gateway.url}/oauth/connect/"), message
        link = message[len(prefix) :]
    with Browser() as browser:
        answer = await _connect_off_loop(browser, link, "bob")
        assert answer.status_code == 200
    async with mcp_session(env.gateway, **{"x-bf-vk": VK_BOB}) as session:
        second = await session.call_tool("notes_a-whoami", {})
        assert not second.is_error and text_of(second) == "bob"
    # Cross-gateway: the same key's token on the LLM gateway.
    response = await _off_loop(execute, env.gateway, "notes_a-whoami", vk=VK_BOB)
    assert tool_output(response) == "bob"


async def _off_loop(function: Any, *args: Any, **kwargs: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(function, *args, **kwargs)


async def _connect_off_loop(browser: Browser, link: str, user: str) -> Any:
    return await _off_loop(browser.connect, link, user)
