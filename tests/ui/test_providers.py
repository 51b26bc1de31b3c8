"""The Providers section of the web UI, in a real browser and over plain HTTP, against a fake OpenAI upstream."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.fake_providers import FakeProvider, create_fake_provider_app
from tests.support.gateway import RunningGateway
from tests.support.servers import RunningServer, serve_in_thread
from tests.ui.admin_http import sign_in_http
from tests.ui.browser import PHONE, screenshot, sign_in

SECRET = "sk-live-provider-secret-0123456789"
OTHER_SECRET = "sk-live-replacement-secret-987654"


@pytest.fixture(scope="module")
def fake() -> FakeProvider:
    return create_fake_provider_app(azure_deployments={"chat-prod": "gpt-4o-2024-08-06"})


@pytest.fixture(scope="module")
def upstream(fake: FakeProvider) -> Iterator[RunningServer]:
    with serve_in_thread(fake.app) as running:
        yield running


@pytest.fixture(autouse=True)
def _reset_fake(fake: FakeProvider) -> None:
    fake.reset()


def providers_state(gateway: RunningGateway) -> list[dict[str, Any]]:
    with gateway.admin() as admin:
        providers: list[dict[str, Any]] = admin.get("/api/providers").json()["providers"]
    return providers


def create_provider(gateway: RunningGateway, upstream: RunningServer, name: str = "fakeai", **key: Any) -> None:
    body = {
        "name": name,
        "custom_provider_config": {"base_provider_type": "openai"},
        "network_config": {"base_url": upstream.url, "max_retries": 0},
        "keys": [{"name": "main", "value": SECRET, "models": ["gpt-4o"], "aliases": {"house": "gpt-4o-mini"}, **key}],
    }
    with gateway.admin() as admin:
        assert admin.post("/api/providers", json=body).status_code == 201


def fill_new_provider(page: Page, upstream: RunningServer, aliases: list[tuple[str, str]]) -> None:
    page.locator("#f-name").fill("fakeai")
    page.get_by_label("API format").select_option("openai")
    page.get_by_label("Base URL").fill(upstream.url)
    page.get_by_label("Retries").fill("0")
    page.get_by_label("Key name").fill("main")
    page.get_by_label("API key").fill(SECRET)
    page.get_by_label("Allowed models").fill("gpt-4o")
    for index, (alias, target) in enumerate(aliases, start=1):
        page.get_by_label(f"Alias {index}", exact=True).fill(alias)
        page.get_by_label(f"Provider model id for alias {index}").fill(target)


def test_add_provider_then_send_a_test_request(
    admin_page: Page, ui_gateway: RunningGateway, upstream: RunningServer, fake: FakeProvider
) -> None:
    page = admin_page
    page.goto(ui_gateway.url + "/providers")
    expect(page.get_by_text("No providers yet — add one to route requests")).to_be_visible()
    page.get_by_role("link", name="Add a provider").first.click()

    # Two aliases that differ only in case: refused inline, next to the second row, and nothing is saved.
    fill_new_provider(page, upstream, [("house", "gpt-4o-mini"), ("HOUSE", "gpt-4o")])
    page.get_by_role("button", name="Add provider").click()
    row_error = page.locator("#alias-2-error")
    expect(row_error).to_contain_text("duplicates 'house'")
    expect(page.get_by_label("Alias 2", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Alias 1", exact=True)).to_have_value("house")
    expect(page.get_by_label("API key")).to_have_value("")
    assert SECRET not in page.content()
    assert providers_state(ui_gateway) == []
    screenshot(page, "provider-add-error")

    page.get_by_label("Alias 2", exact=True).fill("")
    page.get_by_label("Provider model id for alias 2").fill("")
    page.get_by_label("API key").fill(SECRET)
    page.get_by_role("button", name="Add provider").click()
    expect(page).to_have_url(ui_gateway.url + "/providers/fakeai")
    expect(page.get_by_role("status").first).to_contain_text("Provider 'fakeai' added.")
    expect(page.get_by_role("heading", name="main", exact=True)).to_be_visible()
    assert SECRET not in page.content()
    expect(page.get_by_text("…6789")).to_be_visible()

    page.get_by_role("button", name="Send test request to house with key main").click()
    probe = page.locator(".probe")
    expect(probe).to_contain_text("200 OK")
    expect(probe).to_contain_text("echo: Reply with one short sentence")
    expect(probe.locator("dd", has_text="gpt-4o-mini")).to_be_visible()
    expect(probe).to_contain_text(re.compile(r"\d+ ms"))
    sent = fake.last("openai.chat")
    assert sent is not None and sent.model == "gpt-4o-mini"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.body["max_tokens"] == 16
    assert SECRET not in page.content()
    screenshot(page, "provider-page")

    page.get_by_role("link", name="Providers", exact=True).click()
    row = page.get_by_role("row", name=re.compile("fakeai"))
    expect(row).to_contain_text("house → gpt-4o-mini")
    expect(row).to_contain_text("OpenAI-compatible")
    screenshot(page, "providers-list")
    [stored] = providers_state(ui_gateway)
    assert stored["keys"][0]["aliases"] == {"house": "gpt-4o-mini"}
    assert stored["keys"][0]["models"] == ["gpt-4o"]


def test_a_failing_model_shows_the_error(admin_page: Page, ui_gateway: RunningGateway, upstream: RunningServer) -> None:
    create_provider(ui_gateway, upstream, models=["*"])
    admin_page.goto(ui_gateway.url + "/providers/fakeai")
    admin_page.get_by_label("Another model to test with key main").fill("gpt-4o;status=401")
    admin_page.get_by_role("button", name="Send test request to the model typed for key main").click()
    probe = admin_page.locator(".probe")
    expect(probe).to_contain_text("401 failed")
    expect(probe.locator(".probe-error")).not_to_be_empty()
    expect(probe.locator("dd", has_text="gpt-4o;status=401")).to_be_visible()


def test_edit_a_key_without_seeing_or_losing_its_value(
    admin_page: Page, ui_gateway: RunningGateway, upstream: RunningServer, fake: FakeProvider
) -> None:
    create_provider(ui_gateway, upstream)
    page = admin_page
    page.goto(ui_gateway.url + "/providers/fakeai")
    page.get_by_role("link", name="Edit key main").click()
    expect(page.get_by_label("New API key")).to_have_value("")
    expect(page.get_by_text("Leave empty to keep the current key.")).to_be_visible()
    assert SECRET not in page.content()

    # A bad row first: an alias without a target. Inline error; the stored aliases are untouched.
    page.get_by_label("Alias 2", exact=True).fill("orphan")
    page.get_by_role("button", name="Save key").click()
    expect(page.locator("#alias-2-error")).to_contain_text("target model must be a non-empty string")
    assert providers_state(ui_gateway)[0]["keys"][0]["aliases"] == {"house": "gpt-4o-mini"}
    screenshot(page, "provider-key-edit-error")

    # Clearing row 1 removes "house"; row 2 becomes a new alias.
    page.get_by_label("Alias 1", exact=True).fill("")
    page.get_by_label("Provider model id for alias 1").fill("")
    page.get_by_label("Provider model id for alias 2").fill("gpt-4o-mini")
    page.get_by_label("Weight").fill("2.5")
    page.get_by_role("button", name="Save key").click()
    expect(page).to_have_url(ui_gateway.url + "/providers/fakeai")
    [key] = providers_state(ui_gateway)[0]["keys"]
    assert key["aliases"] == {"orphan": "gpt-4o-mini"} and key["weight"] == 2.5
    assert key["value_hint"] == "…6789"

    page.get_by_role("button", name="Send test request to orphan with key main").click()
    expect(page.locator(".probe")).to_contain_text("200 OK")
    sent = fake.last("openai.chat")
    assert sent is not None and sent.headers["authorization"] == f"Bearer {SECRET}"


def test_add_a_key_then_delete_it_and_the_provider(
    admin_page: Page, ui_gateway: RunningGateway, upstream: RunningServer
) -> None:
    create_provider(ui_gateway, upstream)
    page = admin_page
    page.goto(ui_gateway.url + "/providers/fakeai")
    page.get_by_role("link", name="Add a key").click()
    page.get_by_label("Key name").fill("backup")
    page.get_by_label("API key").fill("env.FAKEAI_BACKUP_KEY")
    page.get_by_role("button", name="Add key").click()
    expect(page.get_by_role("heading", name="backup", exact=True)).to_be_visible()
    expect(page.get_by_text("env.FAKEAI_BACKUP_KEY")).to_be_visible()
    assert [k["id"] for k in providers_state(ui_gateway)[0]["keys"]] == ["fakeai-main", "fakeai-backup"]

    page.get_by_role("link", name="Delete key backup").click()
    page.get_by_role("button", name="Delete key").click()
    expect(page.get_by_role("status").first).to_contain_text("deleted")
    assert [k["id"] for k in providers_state(ui_gateway)[0]["keys"]] == ["fakeai-main"]

    page.get_by_role("link", name="Delete provider fakeai").click()
    expect(page.get_by_role("heading", name="Delete provider fakeai?")).to_be_visible()
    page.get_by_role("button", name="Delete provider").click()
    expect(page).to_have_url(ui_gateway.url + "/providers")
    expect(page.get_by_text("No providers yet")).to_be_visible()
    assert providers_state(ui_gateway) == []


def test_settings_are_editable(admin_page: Page, ui_gateway: RunningGateway, upstream: RunningServer) -> None:
    create_provider(ui_gateway, upstream)
    page = admin_page
    page.goto(ui_gateway.url + "/providers/fakeai")
    page.get_by_label("Timeout (seconds)").fill("0")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#f-timeout-error")).to_contain_text("greater than 0")
    assert providers_state(ui_gateway)[0]["network_config"]["default_request_timeout_in_seconds"] == 30

    page.get_by_label("Timeout (seconds)").fill("12.5")
    page.get_by_label("Extra headers").fill("X-Team: research")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status").first).to_contain_text("Settings saved.")
    network = providers_state(ui_gateway)[0]["network_config"]
    assert network["default_request_timeout_in_seconds"] == 12.5
    assert network["extra_headers"] == {"X-Team": "research"}
    assert network["base_url"] == upstream.url


def test_providers_fit_a_phone(
    new_page: Callable[..., Page], ui_gateway: RunningGateway, upstream: RunningServer
) -> None:
    create_provider(ui_gateway, upstream, aliases={"house": "gpt-4o-mini", "a-rather-long-alias-name": "gpt-4o"})
    page = new_page(PHONE)
    sign_in(page, ui_gateway.url, ui_gateway.admin_token, "/providers")
    for path in ("/providers", "/providers/fakeai"):
        page.goto(ui_gateway.url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} scrolls sideways on a phone ({width}px)"
    screenshot(page, "provider-page-phone")
    page.goto(ui_gateway.url + "/providers")
    screenshot(page, "providers-phone")


# --- plain HTTP: forms, refusals and secrets ------------------------------------------------------


def new_provider_form(upstream: RunningServer, **overrides: str | list[str]) -> dict[str, str | list[str]]:
    form: dict[str, str | list[str]] = {
        "name": "fakeai",
        "api_format": "openai",
        "base_url": upstream.url,
        "timeout": "30",
        "max_retries": "0",
        "backoff_initial": "200",
        "backoff_max": "2000",
        "extra_headers": "",
        "key_name": "main",
        "key_value": SECRET,
        "key_weight": "1",
        "key_models": "*",
        "alias_name": ["house", "", ""],
        "alias_target": ["gpt-4o-mini", "", ""],
    }
    form.update(overrides)
    return form


def test_bad_input_is_a_400_with_inline_errors(ui_gateway: RunningGateway, upstream: RunningServer) -> None:
    browser = sign_in_http(ui_gateway)
    cases: list[tuple[dict[str, str | list[str]], str, str]] = [
        ({"base_url": "ftp://example"}, "f-base_url-error", "base_url must be an http(s) URL"),
        ({"name": "no spaces please"}, "f-name-error", "provider names are 1-64 letters"),
        ({"api_format": "", "name": "custom", "base_url": ""}, "f-api_format-error", "not a built-in provider name"),
        ({"key_models": "*, gpt-4o"}, "f-key_models-error", "cannot be combined"),
        ({"key_weight": "heavy"}, "f-key_weight-error", "valid number"),
        ({"key_value": ""}, "f-key_value-error", "Enter the provider's API key"),
        ({"alias_name": ["house", "house"], "alias_target": ["a", "b"]}, "alias-2-error", "appears twice"),
        ({"extra_headers": "no colon here"}, "f-extra_headers-error", "Name: value"),
        ({"name": "azure", "api_format": "", "base_url": ""}, "f-azure_endpoint-error", "endpoint"),
    ]
    for overrides, error_id, message in cases:
        response = browser.post("/providers/new", new_provider_form(upstream, **overrides))
        assert response.status_code == 400, (overrides, response.status_code)
        match = re.search(rf'id="{error_id}"[^>]*>([^<]*)<', response.text)
        assert match and message in match.group(1).replace("&#39;", "'"), (overrides, error_id, response.text[-3000:])
        assert SECRET not in response.text
    assert providers_state(ui_gateway) == []


def test_an_existing_name_is_refused_inline(ui_gateway: RunningGateway, upstream: RunningServer) -> None:
    create_provider(ui_gateway, upstream)
    before = providers_state(ui_gateway)
    response = sign_in_http(ui_gateway).post("/providers/new", new_provider_form(upstream, key_value=OTHER_SECRET))
    assert response.status_code == 400
    assert "already exists" in response.text and OTHER_SECRET not in response.text
    assert providers_state(ui_gateway) == before


def test_azure_keys_and_their_deployments(ui_gateway: RunningGateway, upstream: RunningServer) -> None:
    browser = sign_in_http(ui_gateway)
    form = new_provider_form(
        upstream,
        name="azure",
        api_format="",
        base_url="",
        key_models="gpt-4o",
        alias_name=["gpt-4o"],
        alias_target=["chat-prod"],
        azure_endpoint=upstream.url,
        azure_api_version="2024-10-21",
    )
    assert browser.post("/providers/new", form).status_code == 303
    [provider] = providers_state(ui_gateway)
    assert provider["kind"] == "azure"
    assert provider["keys"][0]["azure_key_config"] == {"endpoint": upstream.url, "api_version": "2024-10-21"}
    page = browser.post("/providers/azure/test", {"key_id": "azure-main", "model": "gpt-4o"})
    assert page.status_code == 200
    assert "200 OK" in page.text and "echo: Reply" in page.text
    assert re.search(r"Resolved model</dt><dd><code>chat-prod</code>", page.text)
    edit = browser.http.get("/providers/azure/keys/azure-main/edit")
    assert f'value="{upstream.url}"' in edit.text and SECRET not in edit.text


def test_key_values_never_reach_the_browser(ui_gateway: RunningGateway, upstream: RunningServer) -> None:
    create_provider(ui_gateway, upstream)
    browser = sign_in_http(ui_gateway)
    pages = [
        "/",
        "/providers",
        "/providers/fakeai",
        "/providers/fakeai/keys/new",
        "/providers/fakeai/keys/fakeai-main/edit",
        "/providers/fakeai/keys/fakeai-main/delete",
        "/providers/fakeai/delete",
    ]
    for path in pages:
        response = browser.http.get(path)
        assert response.status_code == 200, path
        assert SECRET not in response.text and SECRET[-12:] not in response.text, path
    posted = [
        ("/providers/fakeai/test", {"key_id": "fakeai-main", "model": "house"}),
        ("/providers/fakeai/keys/fakeai-main/edit", {"key_value": "", "key_models": "*, x"}),
        ("/providers/fakeai", {"timeout": "-1"}),
    ]
    for path, data in posted:
        response = browser.post(path, data)
        assert SECRET not in response.text, path


def test_unknown_providers_and_keys_are_404_pages(ui_gateway: RunningGateway) -> None:
    browser = sign_in_http(ui_gateway)
    for path in ("/providers/nothing", "/providers/nothing/keys/new", "/providers/nothing/keys/k/edit"):
        response = browser.http.get(path)
        assert response.status_code == 404 and "Not found" in response.text, path


POSTS: list[tuple[str, dict[str, str | list[str]]]] = [
    ("/providers/fakeai", {"timeout": "5", "max_retries": "0"}),
    ("/providers/fakeai/keys/new", {"key_name": "second", "key_value": OTHER_SECRET, "key_models": "*"}),
    ("/providers/fakeai/keys/fakeai-main/edit", {"key_models": "*", "key_weight": "9"}),
    ("/providers/fakeai/keys/fakeai-main/delete", {}),
    ("/providers/fakeai/delete", {}),
    ("/providers/fakeai/test", {"key_id": "fakeai-main", "model": "house"}),
]


@pytest.mark.parametrize(("path", "data"), POSTS, ids=[path for path, _ in POSTS])
def test_posts_need_a_session_and_a_csrf_token(
    ui_gateway: RunningGateway, upstream: RunningServer, fake: FakeProvider, path: str, data: dict[str, str | list[str]]
) -> None:
    create_provider(ui_gateway, upstream)
    if path == "/providers/fakeai":
        data = {**data, "api_format": "openai", "base_url": upstream.url}
    before = providers_state(ui_gateway)
    browser = sign_in_http(ui_gateway)

    without_token = browser.post(path, data, csrf=False)
    assert without_token.status_code == 403 and "nothing was changed" in without_token.text
    wrong_origin = browser.http.post(
        path, data={**data, "csrf_token": browser.csrf}, headers={"Origin": "http://evil.example"}
    )
    assert wrong_origin.status_code == 403
    with httpx.Client(base_url=ui_gateway.url, trust_env=False) as anonymous:
        signed_out = anonymous.post(path, data={**data, "csrf_token": browser.csrf})
    assert signed_out.status_code == 303 and signed_out.headers["location"].startswith("/sign-in")
    assert providers_state(ui_gateway) == before
    assert fake.count("openai.chat") == 0
    # The same post with the token is accepted (so the refusals above were about the token).
    assert browser.post(path, data).status_code in (200, 303)
