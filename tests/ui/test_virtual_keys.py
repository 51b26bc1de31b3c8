"""The Virtual keys section of the web UI: a key's value is shown once, and the key really gates inference."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.fake_providers import FakeProvider, create_fake_provider_app
from tests.support.gateway import RunningGateway
from tests.support.mcp_servers import UpstreamServer
from tests.support.servers import RunningServer, serve_in_thread
from tests.ui.admin_http import sign_in_http
from tests.ui.browser import screenshot, sign_in

CHAT = {"model": "fakeai/gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
VALUE = re.compile(r"sk-bf-[A-Za-z0-9_-]{20,}")


@pytest.fixture(scope="module")
def fake() -> FakeProvider:
    return create_fake_provider_app()


@pytest.fixture(scope="module")
def upstream(fake: FakeProvider) -> Iterator[RunningServer]:
    with serve_in_thread(fake.app) as running:
        yield running


@pytest.fixture(scope="module")
def notes() -> Iterator[UpstreamServer]:
    with UpstreamServer("http") as server:
        yield server


@pytest.fixture
def vk_gateway(gateway_factory: Any, upstream: RunningServer, notes: UpstreamServer) -> RunningGateway:
    """A gateway with two providers and one MCP server that requires a virtual key for inference."""
    network = {"base_url": upstream.url, "max_retries": 0}
    custom = {"base_provider_type": "openai"}
    config = {
        "providers": {
            "fakeai": {
                "custom_provider_config": custom,
                "network_config": network,
                "keys": [{"value": "sk-a", "models": ["*"]}],
            },
            "other": {
                "custom_provider_config": custom,
                "network_config": network,
                "keys": [{"value": "sk-b", "models": ["*"]}],
            },
        },
        "mcp": {
            "client_configs": [
                {"name": "notes", "connection_type": "http", "connection_string": notes.url, "tools_to_execute": ["*"]}
            ]
        },
        "client": {"enforce_auth_on_inference": True},
    }
    gateway: RunningGateway = gateway_factory(config=config)
    return gateway


def virtual_keys(gateway: RunningGateway) -> list[dict[str, Any]]:
    with gateway.admin() as admin:
        keys: list[dict[str, Any]] = admin.get("/api/governance/virtual-keys").json()["virtual_keys"]
    return keys


def chat_status(gateway: RunningGateway, value: str, model: str = "fakeai/gpt-4o") -> int:
    with httpx.Client(base_url=gateway.url, trust_env=False, timeout=30) as http:
        response = http.post(
            "/v1/chat/completions", json={**CHAT, "model": model}, headers={"Authorization": f"Bearer {value}"}
        )
    return response.status_code


def test_create_a_key_see_its_value_once_and_use_it(new_page: Any, vk_gateway: RunningGateway) -> None:
    page: Page = new_page()
    sign_in(page, vk_gateway.url, vk_gateway.admin_token, "/virtual-keys")
    expect(page.get_by_text("No virtual keys yet")).to_be_visible()
    page.get_by_role("link", name="Create a virtual key").first.click()

    page.get_by_label("Name").fill("billing-app")
    page.get_by_label("Description").fill("The billing service")
    page.get_by_label("Allow fakeai").check()
    page.get_by_label("Models of fakeai").fill("gpt-4o\ngpt-4o-mini")
    page.get_by_label("Allow notes").check()
    page.get_by_label("Tools of notes").fill("echo, add")
    page.get_by_label("Can assert user IDs").check()
    expect(page.get_by_text("can act as any end user")).to_be_visible()
    response_status: list[int] = []
    page.on("response", lambda r: response_status.append(r.status) if r.request.method == "POST" else None)
    page.get_by_role("button", name="Create virtual key").click()

    secret_box = page.locator(".secret-once")
    expect(secret_box).to_be_visible()
    value = VALUE.search(secret_box.inner_text())
    assert value is not None
    vk_value = value.group(0)
    assert response_status == [201]
    expect(page.get_by_text("This is the only time the key is shown")).to_be_visible()
    screenshot(page, "vk-created")

    [stored] = virtual_keys(vk_gateway)
    assert stored["provider_configs"] == [
        {"provider": "fakeai", "allowed_models": ["gpt-4o", "gpt-4o-mini"], "key_ids": ["*"], "weight": 1.0}
    ]
    assert [(c["mcp_client_name"], c["tools_to_execute"]) for c in stored["mcp_configs"]] == [
        ("notes", ["echo", "add"])
    ]
    assert stored["can_assert_user_ids"] is True and stored["value_hint"] == f"…{vk_value[-4:]}"

    page.get_by_role("link", name="back to virtual keys").click()
    page.reload()
    assert vk_value not in page.content()
    row = page.get_by_role("row", name=re.compile("billing-app"))
    expect(row).to_contain_text("fakeai: gpt-4o, gpt-4o-mini")
    expect(row).to_contain_text("notes: echo, add")
    expect(row).to_contain_text("can assert")
    expect(row).to_contain_text(f"…{vk_value[-4:]}")

    assert chat_status(vk_gateway, vk_value) == 200
    assert chat_status(vk_gateway, vk_value, "other/gpt-4o") == 403

    row.get_by_role("button", name="Deactivate billing-app").click()
    expect(page.get_by_role("status").first).to_contain_text("is inactive")
    expect(page.get_by_role("row", name=re.compile("billing-app"))).to_contain_text("inactive")
    assert chat_status(vk_gateway, vk_value) == 403
    screenshot(page, "vk-list")

    page.get_by_role("link", name="Edit billing-app").click()
    assert vk_value not in page.content()
    page.get_by_role("button", name="Activate billing-app").click()
    expect(page).to_have_url(re.compile(r"/virtual-keys/vk-[0-9a-f]+$"))
    expect(page.get_by_role("status").first).to_contain_text("is active again")
    assert chat_status(vk_gateway, vk_value) == 200
    screenshot(page, "vk-edit")
    assert vk_value not in page.content()


def test_edit_changes_what_the_key_may_use(new_page: Any, vk_gateway: RunningGateway) -> None:
    with vk_gateway.admin() as admin:
        created = admin.post(
            "/api/governance/virtual-keys",
            json={
                "name": "app",
                "provider_configs": [{"provider": "fakeai", "allowed_models": ["*"], "key_ids": ["*"], "weight": 3}],
            },
        ).json()
    page: Page = new_page()
    sign_in(page, vk_gateway.url, vk_gateway.admin_token, f"/virtual-keys/{created['id']}")
    expect(page.get_by_label("Allow fakeai")).to_be_checked()
    expect(page.get_by_label("Allow other")).not_to_be_checked()
    assert created["value"] not in page.content()

    page.get_by_label("Models of fakeai").fill("*\ngpt-4o")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#models-1-error")).to_contain_text("cannot be combined")
    assert virtual_keys(vk_gateway)[0]["provider_configs"][0]["allowed_models"] == ["*"]

    page.get_by_label("Allow fakeai").uncheck()
    page.get_by_label("Allow other").check()
    page.get_by_label("Name").fill("app-renamed")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status").first).to_contain_text("'app-renamed' saved")
    [stored] = virtual_keys(vk_gateway)
    assert [pc["provider"] for pc in stored["provider_configs"]] == ["other"]
    assert chat_status(vk_gateway, created["value"]) == 403
    assert chat_status(vk_gateway, created["value"], "other/gpt-4o") == 200


def test_delete_after_confirming(new_page: Any, vk_gateway: RunningGateway) -> None:
    with vk_gateway.admin() as admin:
        value = admin.post("/api/governance/virtual-keys", json={"name": "doomed"}).json()["value"]
    page: Page = new_page()
    sign_in(page, vk_gateway.url, vk_gateway.admin_token, "/virtual-keys")
    page.get_by_role("link", name="Delete doomed").click()
    expect(page.get_by_role("heading", name="Delete virtual key doomed?")).to_be_visible()
    page.get_by_role("button", name="Delete virtual key").click()
    expect(page.get_by_text("No virtual keys yet")).to_be_visible()
    assert virtual_keys(vk_gateway) == []
    assert chat_status(vk_gateway, value) == 401


# --- plain HTTP ------------------------------------------------------------------------------------


def test_the_value_is_only_in_the_creation_response(vk_gateway: RunningGateway) -> None:
    browser = sign_in_http(vk_gateway)
    created = browser.post(
        "/virtual-keys/new", {"name": "once", "provider": "fakeai", "models.fakeai": "*", "keys.fakeai": "*"}
    )
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    assert "location" not in created.headers
    match = VALUE.search(created.text)
    assert match is not None
    value = match.group(0)
    assert all(value not in cookie for cookie in created.headers.get_list("set-cookie"))
    assert '<div class="secret-once">' in created.text
    [stored] = virtual_keys(vk_gateway)
    for path in ("/", "/virtual-keys", f"/virtual-keys/{stored['id']}", f"/virtual-keys/{stored['id']}/delete"):
        response = browser.http.get(path)
        assert response.status_code == 200 and value not in response.text, path
        assert not VALUE.search(response.text), path
    saved = browser.post(
        f"/virtual-keys/{stored['id']}",
        {"name": "once", "provider": "fakeai", "models.fakeai": "*", "keys.fakeai": "*"},
    )
    assert saved.status_code == 303 and value not in saved.text
    assert chat_status(vk_gateway, value) == 200


def test_bad_input_is_a_400_and_creates_nothing(vk_gateway: RunningGateway) -> None:
    browser = sign_in_http(vk_gateway)
    cases: list[tuple[dict[str, str | list[str]], str, str]] = [
        ({"name": ""}, "f-name-error", "Enter a name"),
        ({"name": "x", "provider": "fakeai", "models.fakeai": "*, gpt-4o"}, "models-1-error", "cannot be combined"),
        (
            {"name": "x", "provider": "fakeai", "models.fakeai": "a", "keys.fakeai": "k1\nk1"},
            "keys-1-error",
            "duplicate entry",
        ),
    ]
    for form, error_id, message in cases:
        response = browser.post("/virtual-keys/new", form)
        assert response.status_code == 400, form
        found = re.search(rf'id="{error_id}"[^>]*>([^<]*)<', response.text)
        assert found and message in found.group(1).replace("&#34;", '"'), (form, response.text[-2000:])
        assert not VALUE.search(response.text)
    assert virtual_keys(vk_gateway) == []

    assert browser.post("/virtual-keys/new", {"name": "taken"}).status_code == 201
    clash = browser.post("/virtual-keys/new", {"name": "taken"})
    assert clash.status_code == 409 and "already exists" in clash.text and not VALUE.search(clash.text)
    assert len(virtual_keys(vk_gateway)) == 1


def test_posts_need_a_session_and_a_csrf_token(vk_gateway: RunningGateway) -> None:
    with vk_gateway.admin() as admin:
        vk_id = admin.post("/api/governance/virtual-keys", json={"name": "kept"}).json()["id"]
    before = virtual_keys(vk_gateway)
    browser = sign_in_http(vk_gateway)
    posts: list[tuple[str, dict[str, str | list[str]]]] = [
        ("/virtual-keys/new", {"name": "sneaky"}),
        (f"/virtual-keys/{vk_id}", {"name": "renamed"}),
        (f"/virtual-keys/{vk_id}/activation", {"active": "false"}),
        (f"/virtual-keys/{vk_id}/delete", {}),
    ]
    for path, data in posts:
        refused = browser.post(path, data, csrf=False)
        assert refused.status_code == 403 and "nothing was changed" in refused.text, path
        with httpx.Client(base_url=vk_gateway.url, trust_env=False) as anonymous:
            signed_out = anonymous.post(path, data={**data, "csrf_token": browser.csrf})
        assert signed_out.status_code == 303 and signed_out.headers["location"].startswith("/sign-in"), path
        assert virtual_keys(vk_gateway) == before, path
    assert browser.post(f"/virtual-keys/{vk_id}/activation", {"active": "false"}).status_code == 303
    assert virtual_keys(vk_gateway)[0]["is_active"] is False


def test_unknown_keys_are_404_pages(vk_gateway: RunningGateway) -> None:
    browser = sign_in_http(vk_gateway)
    for path in ("/virtual-keys/vk-missing", "/virtual-keys/vk-missing/delete"):
        response = browser.http.get(path)
        assert response.status_code == 404 and "Not found" in response.text, path
