"""Step-up authorization of per-user tokens, end to end: a 403 ``insufficient_scope`` turns into a login
that asks for the wider scopes, a bounded number of times (MCP authorization 2025-11-25)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from heimdall.store.mcp_models import MCPClientRow, OAuthConfigRow
from heimdall.store.per_user_models import OAuthUserTokenRow
from tests.per_user.conftest import VK_ALICE, Browser, Env, auth_required, execute, run_sql, tool_output

READ, WRITE = "notes:read", "notes:write"


@pytest.fixture
def read_only(env: Env) -> Env:
    """notes_a's template asks for ``notes:read`` only, and its ``whoami`` needs ``notes:write``."""
    config_id = select(MCPClientRow.oauth_config_id).where(MCPClientRow.id == env.client_ids["notes_a"])
    run_sql(
        env.db_url, update(OAuthConfigRow).where(OAuthConfigRow.id == config_id.scalar_subquery()).values(scopes=[READ])
    )
    env.a.knobs.tool_scopes = {"whoami": WRITE}
    return env


def token_row(env: Env) -> tuple[Any, ...]:
    """``(status, status_reason, scopes)`` of alice's notes_a token."""
    (row,) = run_sql(
        env.db_url,
        select(OAuthUserTokenRow.status, OAuthUserTokenRow.status_reason, OAuthUserTokenRow.scopes).where(
            OAuthUserTokenRow.mcp_client_id == env.client_ids["notes_a"]
        ),
    )
    return row


def asked_scopes(env: Env) -> list[str]:
    return env.a.counters.authorize_requests[-1]["scope"].split(" ")


def test_insufficient_scope_becomes_a_login_for_the_wider_scopes(read_only: Env, browser: Browser) -> None:
    env = read_only
    browser.connect(auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))["authorize_url"], "alice")
    assert asked_scopes(env) == [READ]
    assert token_row(env) == ("active", None, [READ])

    lazy = auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))
    assert lazy["mcp_client_name"] == "notes_a"
    assert token_row(env) == (
        "needs_reauth",
        "upstream requires wider scope (step-up 1 of 2): notes:read notes:write",
        [READ],
    )
    assert env.a.counters.refreshes == 0  # a refresh cannot widen a grant
    landed = browser.connect(lazy["authorize_url"], "alice")
    assert landed.status_code == 200 and "Authorization Successful" in landed.text
    assert asked_scopes(env) == [READ, WRITE]
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"
    status, reason, scopes = token_row(env)
    assert (status, scopes) == ("active", [READ, WRITE]) and "step-up 1 of 2" in (reason or "")


def test_step_ups_are_bounded_then_the_upstream_error_is_returned(read_only: Env, browser: Browser) -> None:
    env = read_only
    env.a.knobs.grant_scope = READ  # the upstream never grants notes:write: every login comes back narrow
    browser.connect(auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))["authorize_url"], "alice")
    for step in (1, 2):
        lazy = auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))
        assert token_row(env)[:2] == (
            "needs_reauth",
            f"upstream requires wider scope (step-up {step} of 2): {READ} {WRITE}",
        )
        browser.connect(lazy["authorize_url"], "alice")
        assert asked_scopes(env) == [READ, WRITE]
        status, reason, scopes = token_row(env)
        assert (status, scopes) == ("active", [READ]) and f"step-up {step} of 2" in (reason or "")
    logins = len(env.a.counters.authorize_requests)

    # A third challenge is beyond the bound: no new login, the call fails with the upstream's refusal.
    response = execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)
    assert response.status_code == 200, response.text
    assert response.json()["content"].startswith("Tool execution failed: "), response.text
    assert "403" in response.json()["content"]
    assert token_row(env)[0] == "active" and len(env.a.counters.authorize_requests) == logins
    # The token still serves the tools it has the scope for.
    env.a.knobs.tool_scopes = {}
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"


def test_a_regular_login_starts_the_count_again(read_only: Env, browser: Browser) -> None:
    env = read_only
    browser.connect(auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))["authorize_url"], "alice")
    lazy = auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))
    browser.connect(lazy["authorize_url"], "alice")
    assert "step-up 1 of 2" in (token_row(env)[1] or "")
    # Reconnecting from the connections page is a fresh grant with the template's scopes.
    browser.connect(browser.connection_link(env, VK_ALICE, "notes_a"), "alice")
    assert asked_scopes(env) == [READ] and token_row(env) == ("active", None, [READ])
