"""``GET /api/logs`` and ``GET /api/logs/{log_id}``: filters, cursor paging, errors and admin auth."""

from __future__ import annotations

from typing import Any

import httpx

from tests.logs.conftest import VK_USERS, StartGateway, chat, post, wait_for_logs
from tests.support.fake_providers import FakeProvider, fail
from tests.support.gateway import RunningGateway


def _ids(admin: httpx.Client, **params: Any) -> list[str]:
    response = admin.get("/api/logs", params=params)
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["logs"]]


def _traffic(gateway: RunningGateway, fake: FakeProvider) -> None:
    """Six requests: four by "app" (one failing upstream, one embeddings), two by "users"."""
    post(gateway, "/v1/chat/completions", chat("my-alias"))
    post(gateway, "/v1/chat/completions", chat("openai/gpt-4.1"))
    fake.script("openai.chat", fail(503, "try later"))
    fake.script("openai.chat", fail(503, "try later"))
    post(gateway, "/v1/chat/completions", chat("openai/gpt-4o-mini"))
    post(gateway, "/v1/embeddings", {"model": "openai/text-embedding-3-small", "input": "hi"})
    post(gateway, "/v1/chat/completions", chat("my-alias"), vk=VK_USERS)
    post(gateway, "/v1/chat/completions", chat("anthropic/claude-haiku-4-5"), vk=VK_USERS)
    wait_for_logs(gateway, 6)


def test_filters(start: StartGateway, fake: FakeProvider) -> None:
    gateway = start()
    _traffic(gateway, fake)
    with gateway.admin() as admin:
        everything = admin.get("/api/logs").json()["logs"]
        assert len(everything) == 6
        by_id = {row["id"]: row for row in everything}

        app = _ids(admin, caller="app")
        assert len(app) == 4 and all(by_id[i]["caller"] == "app" for i in app)
        assert len(_ids(admin, caller="users")) == 2
        assert _ids(admin, caller="nobody") == []

        # The alias matches as requested, its target as resolved (which the failed call also used).
        assert len(_ids(admin, model="my-alias")) == 2
        assert len(_ids(admin, model="gpt-4o-mini")) == 3
        assert len(_ids(admin, model="claude-haiku-4-5")) == 1

        [failed] = _ids(admin, status="error")
        assert by_id[failed]["status_code"] == 503 and "try later" in by_id[failed]["error"]
        assert len(_ids(admin, status="ok")) == 5
        assert len(_ids(admin, status="error", caller="users")) == 0

        [embedding] = _ids(admin, endpoint="/v1/embeddings")
        assert by_id[embedding]["model_requested"] == "openai/text-embedding-3-small"

        bad = admin.get("/api/logs", params={"status": "maybe"})
        assert bad.status_code == 400 and "status" in bad.json()["error"]["message"]


def test_paging_walks_every_row_newest_first(start: StartGateway, fake: FakeProvider) -> None:
    gateway = start()
    _traffic(gateway, fake)
    with gateway.admin() as admin:
        everything = _ids(admin)
        seen: list[str] = []
        before = None
        while True:
            params: dict[str, Any] = {"limit": 4}
            if before:
                params["before"] = before
            page = admin.get("/api/logs", params=params).json()
            seen += [row["id"] for row in page["logs"]]
            before = page["next_before"]
            if before is None:
                break
        assert seen == everything
        assert seen == sorted(seen, reverse=True)
        times = [row["created_at"] for row in admin.get("/api/logs").json()["logs"]]
        assert times == sorted(times, reverse=True)
        # A page that exactly ends the list has no next page.
        assert admin.get("/api/logs", params={"limit": 6}).json()["next_before"] is None
        assert len(_ids(admin, caller="app", limit=2, before=everything[0])) == 2


def test_one_entry_and_404(start: StartGateway) -> None:
    gateway = start()
    post(gateway, "/v1/chat/completions", chat("my-alias"))
    [row] = wait_for_logs(gateway, 1)
    with gateway.admin() as admin:
        one = admin.get(f"/api/logs/{row['id']}").json()
        assert {key: one[key] for key in row} == row
        assert one["detail"]["key_id"] == "openai-main"
        missing = admin.get("/api/logs/0000000000000000nothere")
        assert missing.status_code == 404
        body = missing.json()
        assert body["status_code"] == 404 and body["error"]["type"] == "not_found_error"
        assert "nothere" in body["error"]["message"]


def test_admin_credential_is_required(start: StartGateway) -> None:
    gateway = start()
    with gateway.client() as anonymous:
        assert anonymous.get("/api/logs").status_code == 401
        assert anonymous.get("/api/logs/anything").status_code == 401
    with gateway.client(None, Authorization="Bearer not-the-admin-token") as wrong:
        assert wrong.get("/api/logs").status_code == 401
