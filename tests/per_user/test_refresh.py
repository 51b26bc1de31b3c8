"""Silent refresh by row id (W16), unknown expiry (W17), rotation, and needs_reauth turning into lazy auth."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from tests.per_user.conftest import (
    VK_ALICE,
    VK_BOB,
    Browser,
    Env,
    auth_required,
    execute,
    expire_tokens,
    mcp_session,
    text_of,
    token_rows,
    tool_output,
)


def connect(env: Env, browser: Browser, vk: str, user: str, tool: str = "notes_a-whoami") -> None:
    link = auth_required(execute(env.gateway, tool, vk=vk))["authorize_url"]
    assert browser.connect(link, user).status_code == 200
    assert tool_output(execute(env.gateway, tool, vk=vk)) == user


def grants(env: Env, **params: str) -> list[dict[str, object]]:
    with env.gateway.admin() as api:
        response = api.get("/api/oauth/per-user/grants", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, object]] = response.json()["grants"]
    return found


def test_a_token_without_expires_in_has_no_expiry_and_keeps_working(env: Env, browser: Browser) -> None:
    env.a.knobs.omit_expires_in = True
    connect(env, browser, VK_ALICE, "alice")
    assert [row[4] for row in token_rows(env.db_url)] == [None]
    assert grants(env)[0]["expires_at"] is None
    for _ in range(3):
        assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"
    assert env.a.counters.refreshes == 0


def test_rotating_refresh_tokens_are_followed_silently(env: Env, browser: Browser) -> None:
    connect(env, browser, VK_ALICE, "alice")
    stored = token_rows(env.db_url)[0]
    expire_tokens(env.db_url)
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"
    refreshed = token_rows(env.db_url)[0]
    assert env.a.counters.refreshes == 1
    assert refreshed[5] != stored[5] and refreshed[6] != stored[6]  # new access and refresh tokens stored
    assert refreshed[4] is not None and refreshed[3] == "active"
    first_used = env.a.counters.grants("refresh_token")[0]["form"]["refresh_token"]
    assert first_used not in env.a.provider.live_tokens()  # rotated away at the upstream
    expire_tokens(env.db_url)
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"
    second_used = env.a.counters.grants("refresh_token")[1]["form"]["refresh_token"]
    assert env.a.counters.refreshes == 2 and second_used != first_used  # the old one is never reused
    assert grants(env)[0]["status"] == "active"


def test_concurrent_calls_share_one_refresh(env: Env, browser: Browser) -> None:
    connect(env, browser, VK_ALICE, "alice")
    env.a.knobs.refresh_delay = 0.5
    expire_tokens(env.db_url)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: execute(env.gateway, "notes_a-whoami", vk=VK_ALICE), range(4)))
    assert [tool_output(answer) for answer in answers] == ["alice"] * 4
    assert env.a.counters.refreshes == 1


def test_only_the_expired_identitys_row_is_refreshed(env: Env, browser: Browser) -> None:
    connect(env, browser, VK_ALICE, "alice")
    with Browser() as other:
        connect(env, other, VK_BOB, "bob")
    connect(env, browser, VK_ALICE, "alice-b", tool="notes_b-whoami")
    expire_tokens(env.db_url)
    assert tool_output(execute(env.gateway, "notes_b-whoami", vk=VK_ALICE)) == "alice-b"
    assert (env.a.counters.refreshes, env.b.counters.refreshes) == (0, 1)
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_BOB)) == "bob"
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"
    assert (env.a.counters.refreshes, env.b.counters.refreshes) == (2, 1)


def test_a_refresh_that_fails_for_good_turns_into_lazy_auth(env: Env, browser: Browser) -> None:
    connect(env, browser, VK_ALICE, "alice")
    env.a.knobs.refresh_failure = "invalid_grant"
    expire_tokens(env.db_url)
    lazy = auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))
    listed = grants(env)[0]
    assert listed["status"] == "needs_reauth" and "invalid_grant" in str(listed["status_reason"])
    auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))  # no refresh retried for a dead grant
    assert env.a.counters.refreshes == 1
    env.a.knobs.refresh_failure = None
    assert browser.connect(lazy["authorize_url"], "alice").status_code == 200
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"
    assert grants(env)[0]["status"] == "active" and len(token_rows(env.db_url)) == 1


def test_a_transient_refresh_failure_is_retried(env: Env, browser: Browser) -> None:
    connect(env, browser, VK_ALICE, "alice")
    env.a.knobs.refresh_failure = "transient"
    env.a.knobs.refresh_failures_left = 1
    expire_tokens(env.db_url)
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"
    assert env.a.counters.refreshes == 2 and grants(env)[0]["status"] == "active"


def test_a_rejected_token_is_refreshed_on_the_spot(env: Env, browser: Browser) -> None:
    connect(env, browser, VK_ALICE, "alice")
    env.a.provider.invalidate_access_tokens()  # the upstream no longer accepts it, though it has not expired
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"
    assert env.a.counters.refreshes == 1


def test_a_rejected_token_that_cannot_be_renewed_asks_to_connect_again(env: Env, browser: Browser) -> None:
    connect(env, browser, VK_ALICE, "alice")
    env.a.knobs.refresh_failure = "invalid_grant"
    env.a.provider.invalidate_access_tokens()
    auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))
    assert grants(env)[0]["status"] == "needs_reauth"

    async def over_mcp() -> tuple[set[str], str]:
        async with mcp_session(env.gateway, **{"x-bf-vk": VK_ALICE}) as session:
            names = {tool.name for tool in (await session.list_tools()).tools}
            return names, text_of(await session.call_tool("notes_a-whoami", {}))

    names, answer = asyncio.run(over_mcp())
    assert {"notes_a-whoami", "notes_a-add_note", "notes_b-whoami"} <= names  # no tool vanished
    assert answer.startswith("Authentication required for notes_a. Open this URL to connect your account: ")


def test_an_expired_token_without_refresh_token_asks_to_connect_again(env: Env, browser: Browser) -> None:
    env.a.knobs.issue_refresh_tokens = False
    connect(env, browser, VK_ALICE, "alice")
    expire_tokens(env.db_url)
    auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))
    assert grants(env)[0]["status"] == "needs_reauth"
    assert env.a.counters.refreshes == 0
