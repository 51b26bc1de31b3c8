"""Connected services: the list of per-user grants, its states, filters, paging and Revoke.

Grants are made the way people make them (sign in to /oauth/connections with a virtual key and
connect the ``notes`` upstream as alice or bob), headlessly here; test_consent.py does it through
consent in the browser. States and paging are set up directly in the database.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import insert, select, update

from heimdall.oauth.upstream.records import utcnow
from heimdall.store.per_user_models import OAuthUserTokenRow
from tests.support.gateway import RunningGateway
from tests.ui.browser import PHONE, screenshot, sign_in
from tests.ui.per_user_env import (
    SERVICE,
    VK_NAMES,
    PerUserEnv,
    admin_browser,
    connect_headlessly,
    grants_of,
    per_user_env,
    run_sql,
)


@pytest.fixture
def env(gateway_factory: Callable[..., RunningGateway]) -> Iterator[PerUserEnv]:
    with per_user_env(gateway_factory) as running:
        yield running


@pytest.fixture
def connected(env: PerUserEnv) -> PerUserEnv:
    """Alice and Bob have both connected ``notes``."""
    connect_headlessly(env, "alice")
    connect_headlessly(env, "bob")
    return env


def grant_id_of(env: PerUserEnv, person: str) -> str:
    return next(grant["id"] for grant in grants_of(env) if grant.get("vk_name") == VK_NAMES[person])


def test_empty_state_says_how_people_connect(admin_page: Page, ui_gateway: RunningGateway) -> None:
    admin_page.goto(ui_gateway.url + "/connected-services")
    expect(admin_page.get_by_text("No one has connected a service yet")).to_be_visible()
    expect(admin_page.get_by_text(f"{ui_gateway.url}/mcp")).to_be_visible()
    expect(admin_page.get_by_text("authorize_url")).to_be_visible()
    expect(admin_page.get_by_role("link", name=f"{ui_gateway.url}/oauth/connections")).to_be_visible()
    expect(admin_page.get_by_role("link", name="Add an MCP server")).to_have_attribute("href", "/mcp-servers/new")
    screenshot(admin_page, "connected-services-empty")


def test_states_and_filter_by_service(connected: PerUserEnv, new_page: Callable[..., Page]) -> None:
    env = connected
    past = utcnow() - timedelta(minutes=5)
    alice = OAuthUserTokenRow.identity == "vk-alice"
    run_sql(env, update(OAuthUserTokenRow).where(alice).values(expires_at=past, refresh_token_encrypted=None))
    reason = "token refresh failed: invalid_grant"
    bob = OAuthUserTokenRow.identity == "vk-bob"
    run_sql(env, update(OAuthUserTokenRow).where(bob).values(status="needs_reauth", status_reason=reason))

    page = new_page()
    sign_in(page, env.gateway.url, env.gateway.admin_token, "/connected-services")
    rows = page.get_by_role("table").get_by_role("row")
    expect(rows.filter(has_text=VK_NAMES["alice"])).to_contain_text("expired")
    expect(rows.filter(has_text=VK_NAMES["alice"])).to_contain_text("The user connects again on next use")
    expect(rows.filter(has_text=VK_NAMES["bob"])).to_contain_text("needs reauth")
    expect(rows.filter(has_text=VK_NAMES["bob"])).to_contain_text(reason)
    screenshot(page, "connected-services-states")

    page.get_by_label("Service").select_option(label=SERVICE)
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(rf"service={env.mcp_client_id}"))
    expect(rows).to_have_count(3)
    page.get_by_label("Identity").fill("vk-alice")  # the stored id works as well as the key's name
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text(VK_NAMES["alice"])
    page.get_by_label("Identity").fill("nobody")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No grants match these filters")).to_be_visible()


def test_many_grants_are_paged(env: PerUserEnv, new_page: Callable[..., Page]) -> None:
    people = [
        {
            "id": uuid.uuid4().hex,
            "mcp_client_id": env.mcp_client_id,
            "identity_kind": "user",
            "identity": f"user-{number:02d}",
            "access_token_encrypted": "not-used-by-the-list",
            "scopes": [],
        }
        for number in range(55)
    ]
    run_sql(env, insert(OAuthUserTokenRow).values(people))
    page = new_page()
    sign_in(page, env.gateway.url, env.gateway.admin_token, "/connected-services")
    rows = page.get_by_role("table").get_by_role("row")
    expect(page.get_by_text("55 grants; showing 1–50")).to_be_visible()
    expect(rows).to_have_count(51)
    page.get_by_role("link", name="Next").click()
    expect(page.get_by_text("55 grants; showing 51–55")).to_be_visible()
    expect(rows).to_have_count(6)
    expect(rows.nth(5)).to_contain_text("user-54")
    page.get_by_role("link", name="Previous").click()
    expect(rows.nth(1)).to_contain_text("user-00")


def test_fits_a_phone(connected: PerUserEnv, new_page: Callable[..., Page]) -> None:
    page = new_page(PHONE)
    sign_in(page, connected.gateway.url, connected.gateway.admin_token, "/connected-services")
    expect(page.get_by_role("button", name=f"Revoke {SERVICE} for {VK_NAMES['alice']}")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"connected services scroll sideways on a phone ({width}px)"
    screenshot(page, "connected-services-phone")


# --- the Revoke form over plain HTTP ---------------------------------------------------------------------------------


def test_revoke_without_the_csrf_token_is_refused_and_changes_nothing(connected: PerUserEnv) -> None:
    grant_id = grant_id_of(connected, "bob")
    with admin_browser(connected.gateway) as (client, _):
        for form in ({}, {"csrf_token": "forged"}):
            answer = client.post(f"/connected-services/{grant_id}/revoke", data=form)
            assert answer.status_code == 403
            assert "nothing was changed" in answer.text
    assert grant_id in {grant["id"] for grant in grants_of(connected)}


def test_revoke_from_another_site_is_refused(connected: PerUserEnv) -> None:
    grant_id = grant_id_of(connected, "bob")
    with admin_browser(connected.gateway) as (client, csrf):
        answer = client.post(
            f"/connected-services/{grant_id}/revoke",
            data={"csrf_token": csrf},
            headers={"Origin": "http://127.0.0.2:9"},
        )
    assert answer.status_code == 403
    assert grant_id in {grant["id"] for grant in grants_of(connected)}


def test_revoke_without_a_session_goes_to_sign_in(connected: PerUserEnv) -> None:
    grant_id = grant_id_of(connected, "bob")
    with httpx.Client(base_url=connected.gateway.url, trust_env=False, timeout=15) as anonymous:
        answer = anonymous.post(f"/connected-services/{grant_id}/revoke", data={"csrf_token": "x"})
        listing = anonymous.get("/connected-services?identity=bob-key")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in?next=")
    assert listing.status_code == 303
    assert listing.headers["location"] == "/sign-in?next=/connected-services%3Fidentity%3Dbob-key"
    assert grant_id in {grant["id"] for grant in grants_of(connected)}


def test_revoke_removes_the_grant_and_returns_only_to_this_page(connected: PerUserEnv) -> None:
    grant_id = grant_id_of(connected, "bob")
    with admin_browser(connected.gateway) as (client, csrf):
        done = client.post(
            f"/connected-services/{grant_id}/revoke", data={"csrf_token": csrf, "return_to": "//evil.example/"}
        )
        assert done.status_code == 303 and done.headers["location"] == "/connected-services"
        page = client.get("/connected-services")
        assert f"Revoked {SERVICE} for virtual key &#34;{VK_NAMES['bob']}&#34;" in page.text
        again = client.post(
            f"/connected-services/{grant_id}/revoke",
            data={"csrf_token": csrf, "return_to": "/connected-services?identity=bob-key"},
        )
        assert again.status_code == 303 and again.headers["location"] == "/connected-services?identity=bob-key"
        assert "That grant was already revoked." in client.get(again.headers["location"]).text
    remaining = run_sql(connected, select(OAuthUserTokenRow.identity))
    assert remaining == [("vk-alice",)]
