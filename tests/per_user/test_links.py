"""Connection links and the callback: single use, expiry, CSRF, and the browser binding (W1, W9, W12)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select, update

from heimdall.store.per_user_models import OAuthHandoffRow, OAuthUserAttemptRow
from tests.per_user.conftest import (
    VK_ALICE,
    Browser,
    Env,
    auth_required,
    execute,
    login_upstream,
    run_sql,
    token_rows,
    tool_output,
)


def new_link(env: Env) -> str:
    link: str = auth_required(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE))["authorize_url"]
    return link


def test_the_page_does_not_consume_the_link(env: Env, browser: Browser) -> None:
    link = new_link(env)
    with httpx.Client(trust_env=False, timeout=30) as preview:  # a chat app's link preview
        assert preview.get(link).status_code == 200
    browser.open_link(link)
    assert browser.connect(link, "alice").status_code == 200
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"


def test_a_link_works_once(env: Env, browser: Browser) -> None:
    link = new_link(env)
    _, csrf = browser.open_link(link)
    assert browser.http.post(link, data={"csrf_token": csrf}).status_code == 302
    again = browser.http.post(link, data={"csrf_token": csrf})
    assert again.status_code == 400 and "already used" in again.text
    page = browser.http.get(link)
    assert page.status_code == 400 and "already used" in page.text


def test_an_expired_link_is_refused(env: Env, browser: Browser) -> None:
    link = new_link(env)
    _, csrf = browser.open_link(link)
    run_sql(env.db_url, update(OAuthHandoffRow).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    refused = browser.http.post(link, data={"csrf_token": csrf})
    assert refused.status_code == 400 and "expired" in refused.text
    assert browser.http.get(link).status_code == 400
    assert run_sql(env.db_url, select(OAuthUserAttemptRow.id)) == []


def test_unknown_and_malformed_links_are_refused(env: Env, browser: Browser) -> None:
    for handoff_id in ("A" * 43, "short", "x" * 300, "not%20valid%20at%20all%20really"):
        page = browser.http.get(f"{env.gateway.url}/oauth/connect/{handoff_id}")
        assert page.status_code == 400, (handoff_id, page.text)
        assert "not valid" in page.text


def test_continue_needs_the_pages_csrf_token_and_cookie(env: Env, browser: Browser) -> None:
    link = new_link(env)
    _, csrf = browser.open_link(link)
    assert browser.http.post(link, data={"csrf_token": "forged"}).status_code == 403
    assert browser.http.post(link, data={}).status_code == 403
    with httpx.Client(trust_env=False, timeout=30) as other_site:  # a cross-site form: no page cookie
        assert other_site.post(link, data={"csrf_token": csrf}).status_code == 403
    # Refusals changed nothing: the link still works.
    assert browser.connect(link, "alice").status_code == 200


def test_continue_binds_the_login_to_this_browser_and_pins_the_redirect(env: Env, browser: Browser) -> None:
    link = new_link(env)
    authorize_url = browser.continue_to_upstream(link)
    cookie = next(c for c in browser.http.cookies.jar if c.name == "__heimdall_upstream_attempt")
    assert cookie.path == "/api/oauth/callback" and cookie.has_nonstandard_attr("HttpOnly")
    assert not cookie.secure  # the public URL is http in tests
    query = parse_qs(urlsplit(authorize_url).query)
    assert query["redirect_uri"] == [f"{env.gateway.url}/api/oauth/callback"]
    assert query["code_challenge_method"] == ["S256"] and query["response_type"] == ["code"]
    assert query["resource"] == [env.a.mcp_url]
    attempt = run_sql(env.db_url, select(OAuthUserAttemptRow.redirect_uri, OAuthUserAttemptRow.state_hash))
    assert attempt[0][0] == f"{env.gateway.url}/api/oauth/callback"
    assert attempt[0][1] != query["state"][0]  # only a keyed hash of the state is stored
    browser.http.get(login_upstream(browser.http, authorize_url, "alice"))
    exchange = env.a.counters.grants("authorization_code")[-1]["form"]
    assert exchange["redirect_uri"] == f"{env.gateway.url}/api/oauth/callback"
    assert exchange["resource"] == env.a.mcp_url and exchange["code_verifier"]


def test_a_callback_in_another_browser_is_refused_and_stores_nothing(env: Env, browser: Browser) -> None:
    link = new_link(env)
    callback = login_upstream(browser.http, browser.continue_to_upstream(link), "alice")
    with httpx.Client(trust_env=False, timeout=30) as victim:
        refused = victim.get(callback)
        assert refused.status_code == 400 and "another browser" in refused.text
        victim.cookies.set("__heimdall_upstream_attempt", "W" * 43, path="/api/oauth/callback")
        wrong = victim.get(callback)
        assert wrong.status_code == 400 and "another browser" in wrong.text
    assert token_rows(env.db_url) == []
    assert env.a.counters.code_exchanges == 0
    # The browser that started it can still finish.
    assert browser.http.get(callback).status_code == 200
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice"


def test_a_callback_works_once(env: Env, browser: Browser) -> None:
    callback = login_upstream(browser.http, browser.continue_to_upstream(new_link(env)), "alice")
    binding = browser.http.cookies.get("__heimdall_upstream_attempt", path="/api/oauth/callback")
    assert binding
    assert browser.http.get(callback).status_code == 200
    assert browser.http.cookies.get("__heimdall_upstream_attempt") is None  # cleared by the callback
    browser.http.cookies.set("__heimdall_upstream_attempt", binding, path="/api/oauth/callback")
    again = browser.http.get(callback)
    assert again.status_code == 400 and "already completed" in again.text
    assert env.a.counters.code_exchanges == 1


def test_an_expired_login_is_refused(env: Env, browser: Browser) -> None:
    callback = login_upstream(browser.http, browser.continue_to_upstream(new_link(env)), "alice")
    run_sql(env.db_url, update(OAuthUserAttemptRow).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    refused = browser.http.get(callback)
    assert refused.status_code == 400 and "expired" in refused.text
    assert token_rows(env.db_url) == []
    assert run_sql(env.db_url, select(OAuthUserAttemptRow.status)) == [("expired",)]


def test_an_upstream_refusal_is_shown_and_fails_the_attempt(env: Env, browser: Browser) -> None:
    authorize_url = browser.continue_to_upstream(new_link(env))
    first = browser.http.get(authorize_url)
    denied = browser.http.get(first.headers["location"] + "&deny=1")
    answer = browser.http.get(denied.headers["location"])
    assert answer.status_code == 400 and "access_denied" in answer.text
    assert run_sql(env.db_url, select(OAuthUserAttemptRow.status)) == [("failed",)]
    assert token_rows(env.db_url) == []


def test_a_rejected_code_exchange_is_a_failure_page(env: Env, browser: Browser) -> None:
    callback = login_upstream(browser.http, browser.continue_to_upstream(new_link(env)), "alice")
    query = parse_qs(urlsplit(callback).query)
    forged = f"{env.gateway.url}/api/oauth/callback?code=not-the-code&state={query['state'][0]}"
    answer = browser.http.get(forged)
    assert answer.status_code == 502 and "did not accept the login" in answer.text
    assert "not-the-code" not in answer.text
    assert token_rows(env.db_url) == []


def test_a_new_login_replaces_the_identitys_row(env: Env, browser: Browser) -> None:
    browser.connect(new_link(env), "alice")
    before = token_rows(env.db_url)
    browser.connect(new_link_even_if_connected(env), "alice2")
    after = token_rows(env.db_url)
    assert len(before) == len(after) == 1
    assert before[0][5] != after[0][5]
    assert tool_output(execute(env.gateway, "notes_a-whoami", vk=VK_ALICE)) == "alice2"


def new_link_even_if_connected(env: Env) -> str:
    """A connection link for vk-alice and notes_a made through the connections page."""
    with Browser() as page_user:
        return page_user.connection_link(env, VK_ALICE, "notes_a")


def test_a_response_from_another_issuer_is_refused(env: Env, browser: Browser) -> None:
    callback = login_upstream(browser.http, browser.continue_to_upstream(new_link(env)), "alice")
    query = parse_qs(urlsplit(callback).query)
    assert query["iss"] == [env.a.issuer]
    mixed_up = (
        f"{env.gateway.url}/api/oauth/callback?code={query['code'][0]}&state={query['state'][0]}&iss=http://evil.test"
    )
    answer = browser.http.get(mixed_up)
    assert answer.status_code == 400 and "unexpected issuer" in answer.text
    assert token_rows(env.db_url) == [] and env.a.counters.code_exchanges == 0
