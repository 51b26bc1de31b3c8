"""Logs: requests sent through a fake provider show up, newest first, with filters, paging and a detail view."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import insert

from heimdall.store.log_repos import new_log_id
from heimdall.store.ui_models import RequestLogRow
from tests.support.fake_providers import FakeProvider, create_fake_provider_app, fail
from tests.support.gateway import RunningGateway
from tests.support.servers import RunningServer, serve_in_thread
from tests.ui.browser import PHONE, screenshot, sign_in
from tests.ui.store_access import run_sql_at

VK_APP = "sk-bf-ui-logs-app-0000000000000001"
VK_BATCH = "sk-bf-ui-logs-batch-00000000000002"
PROVIDER_KEY = "sk-ui-logs-provider-secret-0000001"


def gateway_config(upstream: str) -> dict[str, Any]:
    openai_only = [{"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"]}]
    return {
        "providers": {
            "openai": {
                "keys": [
                    {
                        "id": "openai-main",
                        "value": PROVIDER_KEY,
                        "models": ["*"],
                        "aliases": {"my-alias": "gpt-4o-mini"},
                    }
                ],
                "network_config": {"base_url": f"{upstream}/v1", "max_retries": 0},
            }
        },
        "governance": {
            "virtual_keys": [
                {"id": "vk-app", "name": "app", "value": VK_APP, "provider_configs": openai_only},
                {"id": "vk-batch", "name": "batch", "value": VK_BATCH, "provider_configs": openai_only},
            ]
        },
    }


@pytest.fixture
def fake() -> FakeProvider:
    return create_fake_provider_app()


@pytest.fixture
def upstream(fake: FakeProvider) -> Iterator[RunningServer]:
    with serve_in_thread(fake.app) as running:
        yield running


@pytest.fixture
def gateway(gateway_factory: Callable[..., RunningGateway], upstream: RunningServer) -> RunningGateway:
    return gateway_factory(gateway_config(upstream.url))


def chat(gateway: RunningGateway, vk: str, model: str, text: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    with gateway.client(vk) as http:
        return http.post("/v1/chat/completions", json=body)


def test_requests_are_listed_filtered_and_shown_in_full(
    gateway: RunningGateway, fake: FakeProvider, new_page: Callable[..., Page]
) -> None:
    first = chat(gateway, VK_APP, "my-alias", "what is the weather in Oslo")
    assert first.status_code == 200, first.text
    second = chat(gateway, VK_APP, "openai/gpt-4o-mini", "and in Bergen")
    assert second.status_code == 200, second.text
    fake.script("openai.chat", fail(400, "the upstream did not like this prompt"))
    failed = chat(gateway, VK_BATCH, "my-alias", "something the upstream refuses")
    assert failed.status_code == 400, failed.text
    usage = first.json()["usage"]

    page = new_page()
    sign_in(page, gateway.url, gateway.admin_token, "/logs")
    expect(page.get_by_text("Heimdall keeps the latest 10,000 requests, for at most 7 days.")).to_be_visible()
    rows = page.get_by_role("table").get_by_role("row")
    expect(rows).to_have_count(4)
    newest, middle, oldest = rows.nth(1), rows.nth(2), rows.nth(3)
    expect(newest).to_contain_text("batch")
    expect(newest.get_by_text("400 error")).to_be_visible()
    expect(middle).to_contain_text("openai/gpt-4o-mini")
    expect(oldest.locator("td[data-label=Caller]")).to_have_text("app")
    expect(oldest.locator("td[data-label=Endpoint]")).to_have_text("/v1/chat/completions")
    expect(oldest.locator("td[data-label=Model]")).to_have_text(
        re.compile(r"^\s*my-alias\s*→ resolved to gpt-4o-mini\s*$")
    )
    expect(oldest.locator("td[data-label=Status]")).to_have_text("200")
    tokens = f"{usage['prompt_tokens']} / {usage['completion_tokens']} / {usage['total_tokens']}"
    expect(oldest.locator("td[data-label=Tokens]")).to_have_text(tokens)
    latency = oldest.locator("td[data-label='Latency (ms)']").inner_text()
    assert float(latency.replace(",", "")) > 0
    screenshot(page, "logs")

    page.get_by_label("Status").select_option("error")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text("batch")
    page.get_by_role("link", name="Clear filters").click()
    page.get_by_label("Caller").fill("app")
    page.get_by_label("Model").fill("gpt-4o-mini")  # matches the resolved model of the alias too
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"/logs\?caller=app&model=gpt-4o-mini&status=$"))
    expect(rows).to_have_count(3)
    page.get_by_label("Caller").fill("nobody")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No requests match these filters")).to_be_visible()

    page.get_by_role("link", name="Show all requests").click()
    rows.nth(1).get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/logs/[0-9a-f]{32}$"))
    expect(page.get_by_role("alert")).to_contain_text("the upstream did not like this prompt")
    expect(page.get_by_role("heading", level=1)).to_contain_text("/v1/chat/completions")
    facts = page.locator(".fact")
    expect(facts.filter(has_text="Caller")).to_contain_text("batch")
    expect(facts.filter(has_text="Virtual key id")).to_contain_text("vk-batch")
    expect(facts.filter(has_text="Provider")).to_contain_text("openai")
    expect(facts.filter(has_text="Model resolved")).to_contain_text("gpt-4o-mini")
    expect(facts.filter(has_text="Status code")).to_contain_text("400")
    expect(page.get_by_label("Details as JSON")).to_contain_text('"key_id": "openai-main"')
    assert PROVIDER_KEY not in page.content()
    screenshot(page, "logs-detail")


def test_older_pages_and_a_pruned_entry(gateway: RunningGateway, new_page: Callable[..., Page]) -> None:
    now = time.time_ns()
    rows = [
        {
            "id": new_log_id(now - (60 - number) * 1_000_000_000),
            "endpoint": "/v1/chat/completions",
            "caller": "app",
            "model_requested": f"model-{number:02d}",
            "status_code": 200,
            "latency_ms": 12.5,
        }
        for number in range(60)
    ]
    run_sql_at(gateway.app_dir, insert(RequestLogRow).values(rows))
    page = new_page()
    sign_in(page, gateway.url, gateway.admin_token, "/logs")
    table_rows = page.get_by_role("table").get_by_role("row")
    expect(table_rows).to_have_count(51)
    expect(table_rows.nth(1)).to_contain_text("model-59")
    page.get_by_role("link", name="Older").click()
    expect(table_rows).to_have_count(11)
    expect(table_rows.nth(1)).to_contain_text("model-09")
    expect(table_rows.nth(10)).to_contain_text("model-00")
    expect(page.get_by_role("link", name="Older")).to_have_count(0)
    page.get_by_role("link", name="Newest").click()
    expect(table_rows.nth(1)).to_contain_text("model-59")

    phone = new_page(PHONE)
    sign_in(phone, gateway.url, gateway.admin_token, "/logs")
    expect(phone.get_by_role("table").get_by_role("row").first).to_contain_text("model-59")  # no header row here
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the logs list scrolls sideways on a phone ({width}px)"
    screenshot(phone, "logs-phone", full_page=False)

    page.goto(gateway.url + "/logs/" + "0" * 32)
    expect(page.get_by_text("This request is not in the log")).to_be_visible()


def test_empty_log_says_what_to_do_and_how_long_it_keeps(
    gateway_factory: Callable[..., RunningGateway], new_page: Callable[..., Page]
) -> None:
    gateway = gateway_factory(request_log_max_rows=500, request_log_max_age_hours=12)
    page = new_page(PHONE)
    sign_in(page, gateway.url, gateway.admin_token, "/logs")
    expect(page.get_by_text("No requests yet")).to_be_visible()
    expect(page.get_by_text(f"{gateway.url}/v1/chat/completions").first).to_be_visible()
    expect(page.get_by_text("Heimdall keeps the latest 500 requests, for at most 12 hours.")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the logs page scrolls sideways on a phone ({width}px)"
    screenshot(page, "logs-empty-phone")


def test_logs_need_a_session(gateway: RunningGateway) -> None:
    with httpx.Client(base_url=gateway.url, trust_env=False, timeout=15) as anonymous:
        listing = anonymous.get("/logs?status=error")
        detail = anonymous.get("/logs/" + "0" * 32)
    assert listing.status_code == 303 and listing.headers["location"] == "/sign-in?next=/logs%3Fstatus%3Derror"
    assert detail.status_code == 303 and detail.headers["location"].startswith("/sign-in?next=/logs/")
