"""Every inference request leaves one request log row: who, which model, what happened, and no secrets."""

from __future__ import annotations

import json
from pathlib import Path

from tests.logs.conftest import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    VK_APP,
    VK_USERS,
    StartGateway,
    chat,
    detail_of,
    post,
    stored_rows,
    wait_for_logs,
)
from tests.support.fake_providers import FakeProvider, drop_stream, fail, reply, tool_call
from tests.support.gateway import ADMIN_TOKEN


def test_a_chat_completion_through_an_alias(start: StartGateway) -> None:
    gateway = start()
    response = post(gateway, "/v1/chat/completions", chat("my-alias", "what is the weather"))
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]

    [row] = wait_for_logs(gateway, 1)
    assert row["endpoint"] == "/v1/chat/completions"
    assert row["caller"] == "app"
    assert row["virtual_key_id"] == "vk-app"
    assert row["user_id"] is None
    assert row["provider"] == "openai"
    assert row["model_requested"] == "my-alias"
    assert row["model_resolved"] == "gpt-4o-mini"
    assert row["status_code"] == 200
    assert row["stream"] is False
    assert row["latency_ms"] > 0
    assert row["prompt_tokens"] == usage["prompt_tokens"] > 0
    assert row["completion_tokens"] == usage["completion_tokens"] > 0
    assert row["total_tokens"] == usage["total_tokens"]
    assert row["error"] is None
    detail = detail_of(gateway, row["id"])["detail"]
    assert detail == {"key_id": "openai-main", "attempts": 1, "messages": 1, "finish_reason": "stop"}


def test_a_stream_records_usage_from_its_last_chunk(start: StartGateway) -> None:
    gateway = start()
    body = chat("openai/gpt-4o-mini", "one two three", stream=True, stream_options={"include_usage": True})
    with gateway.client(VK_APP) as http, http.stream("POST", "/v1/chat/completions", json=body) as response:
        text = response.read().decode()
    assert response.status_code == 200 and "[DONE]" in text
    usage = json.loads([line for line in text.split("\n\n") if '"usage":{' in line][-1][6:])["usage"]

    [row] = wait_for_logs(gateway, 1)
    assert row["stream"] is True
    assert row["status_code"] == 200
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    detail = detail_of(gateway, row["id"])["detail"]
    assert detail["finish_reason"] == "stop"
    assert 0 < detail["ttfb_ms"] <= row["latency_ms"]


def test_a_stream_without_usage_still_has_its_finish_reason(start_sqlite: StartGateway) -> None:
    gateway = start_sqlite()
    with gateway.client(VK_APP) as http:
        assert "[DONE]" in http.post("/v1/chat/completions", json=chat("my-alias", stream=True)).text
    [row] = wait_for_logs(gateway, 1)
    assert row["stream"] is True and row["prompt_tokens"] is None and row["total_tokens"] is None
    assert detail_of(gateway, row["id"])["detail"]["finish_reason"] == "stop"


def test_an_upstream_error_is_recorded_with_its_status_and_message(start: StartGateway, fake: FakeProvider) -> None:
    gateway = start()
    fake.script("openai.chat", fail(400, "bad things happened"))
    assert post(gateway, "/v1/chat/completions", chat("my-alias")).status_code == 400

    [row] = wait_for_logs(gateway, 1)
    assert row["status_code"] == 400
    assert "bad things happened" in row["error"]
    assert row["model_resolved"] == "gpt-4o-mini"
    assert row["prompt_tokens"] is None
    assert detail_of(gateway, row["id"])["detail"]["error_type"] == "upstream_error"


def test_retries_are_counted(start_sqlite: StartGateway, fake: FakeProvider) -> None:
    gateway = start_sqlite()
    fake.script("openai.chat", [fail(500), reply("fine")])
    assert post(gateway, "/v1/chat/completions", chat("my-alias")).status_code == 200
    [row] = wait_for_logs(gateway, 1)
    assert row["status_code"] == 200 and row["error"] is None
    assert detail_of(gateway, row["id"])["detail"]["attempts"] == 2


def test_a_stream_that_breaks_is_an_error(start_sqlite: StartGateway, fake: FakeProvider) -> None:
    gateway = start_sqlite()
    fake.script("openai.chat", drop_stream(after=2))
    with gateway.client(VK_APP) as http:
        http.post("/v1/chat/completions", json=chat("my-alias", stream=True))
    [row] = wait_for_logs(gateway, 1, status="error")
    assert row["status_code"] == 200
    assert "stream" in row["error"]
    assert detail_of(gateway, row["id"])["detail"]["error_type"] == "upstream_stream_broken"


def test_refused_callers_are_recorded_without_an_identity(start_sqlite: StartGateway) -> None:
    gateway = start_sqlite()
    assert (
        post(gateway, "/v1/chat/completions", chat("my-alias"), vk="sk-bf-no-such-key-000000000000").status_code == 401
    )
    [row] = wait_for_logs(gateway, 1)
    assert (row["status_code"], row["caller"], row["virtual_key_id"]) == (401, None, None)
    assert row["model_requested"] == "my-alias" and row["provider"] is None


def test_user_ids_come_only_from_keys_that_may_assert_them(start_sqlite: StartGateway) -> None:
    gateway = start_sqlite()
    post(gateway, "/v1/chat/completions", chat("my-alias"), vk=VK_USERS, **{"X-Bf-User-Id": "alice@example.com"})
    post(gateway, "/v1/chat/completions", chat("my-alias"), vk=VK_APP, **{"X-Bf-User-Id": "mallory"})
    rows = wait_for_logs(gateway, 2)
    by_caller = {row["caller"]: row for row in rows}
    assert by_caller["users"]["user_id"] == "alice@example.com"
    assert by_caller["app"]["user_id"] is None


def test_embeddings_and_anthropic_messages(start_sqlite: StartGateway) -> None:
    gateway = start_sqlite()
    embedded = post(gateway, "/v1/embeddings", {"model": "openai/text-embedding-3-small", "input": "two words"})
    assert embedded.status_code == 200, embedded.text
    message = {"model": "anthropic/claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    answered = post(gateway, "/anthropic/v1/messages", message)
    assert answered.status_code == 200, answered.text
    with gateway.client(VK_APP) as http:
        streamed = http.post("/anthropic/v1/messages", json={**message, "stream": True}).text
    assert "message_stop" in streamed

    rows = {(row["endpoint"], row["stream"]): row for row in wait_for_logs(gateway, 3)}
    embeddings = rows[("/v1/embeddings", False)]
    assert embeddings["prompt_tokens"] == embedded.json()["usage"]["prompt_tokens"] > 0
    plain = rows[("/anthropic/v1/messages", False)]
    assert plain["provider"] == "anthropic" and plain["model_resolved"] == "claude-haiku-4-5"
    assert plain["prompt_tokens"] == answered.json()["usage"]["input_tokens"]
    assert plain["completion_tokens"] == answered.json()["usage"]["output_tokens"]
    stream = rows[("/anthropic/v1/messages", True)]
    assert stream["completion_tokens"] == plain["completion_tokens"] and stream["status_code"] == 200


def test_tools_offered_and_called(start_sqlite: StartGateway, fake: FakeProvider) -> None:
    gateway = start_sqlite()
    fake.script("openai.chat", tool_call("get_weather", {"city": "Oslo"}))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    assert post(gateway, "/v1/chat/completions", chat("my-alias", tools=tools)).status_code == 200
    [row] = wait_for_logs(gateway, 1)
    detail = detail_of(gateway, row["id"])["detail"]
    assert detail["tools_offered"] == ["get_weather"]
    assert detail["tools_called"] == ["get_weather"]
    assert detail["finish_reason"] == "tool_calls"


def test_nothing_secret_is_stored(start: StartGateway, fake: FakeProvider, db_url: str) -> None:
    gateway = start(request_log_bodies=True)
    # An upstream that echoes the key it was sent (some do, in their 401 messages).
    fake.script("openai.chat", fail(401, f"Incorrect API key provided: {OPENAI_KEY}"))
    post(gateway, "/v1/chat/completions", chat("my-alias"))
    with gateway.client(None, Authorization=f"Bearer {VK_APP}") as http:
        http.post("/v1/chat/completions", json=chat("my-alias", stream=True))
    post(gateway, "/v1/embeddings", {"model": "openai/text-embedding-3-small", "input": "x"}, **{"x-api-key": VK_USERS})
    post(gateway, "/anthropic/v1/messages", {"model": "anthropic/claude-haiku-4-5", "max_tokens": 5, "messages": []})
    wait_for_logs(gateway, 4)

    rows = stored_rows(db_url)
    assert len(rows) == 4
    dumped = json.dumps(rows, default=str)
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, VK_APP, VK_USERS, ADMIN_TOKEN, "Bearer "):
        assert secret not in dumped
    assert any("[redacted]" in (row["error"] or "") for row in rows)
    assert all(row["detail"] and "request_body" in row["detail"] for row in rows)


def test_bodies_are_kept_only_when_enabled_and_then_truncated(start_sqlite: StartGateway, tmp_path: Path) -> None:
    quiet = start_sqlite()
    post(quiet, "/v1/chat/completions", chat("my-alias", "not kept"))
    [row] = wait_for_logs(quiet, 1)
    assert "request_body" not in detail_of(quiet, row["id"])["detail"]

    loud = start_sqlite(request_log_bodies=True, db_url=f"sqlite+aiosqlite:///{tmp_path / 'loud.db'}")
    long_text = "word " * 5000
    post(loud, "/v1/chat/completions", chat("my-alias", long_text))
    [row] = wait_for_logs(loud, 1)
    detail = detail_of(loud, row["id"])["detail"]
    assert detail["request_body"].startswith('{"model":"my-alias"')
    assert len(detail["request_body"].encode()) <= 8 * 1024
    assert '"content":"echo: ' in detail["response_body"]


def test_disabled_records_nothing(start_sqlite: StartGateway, sqlite_url: str) -> None:
    gateway = start_sqlite(request_log_enabled=False)
    assert post(gateway, "/v1/chat/completions", chat("my-alias")).status_code == 200
    assert post(gateway, "/v1/chat/completions", chat("my-alias", stream=True)).status_code == 200
    with gateway.admin() as admin:
        assert admin.get("/api/logs").json() == {"logs": [], "next_before": None}
    gateway.stop()
    assert stored_rows(sqlite_url) == []


def test_shutdown_writes_what_is_queued(start_sqlite: StartGateway, sqlite_url: str) -> None:
    gateway = start_sqlite()
    for _ in range(3):
        assert post(gateway, "/v1/chat/completions", chat("my-alias")).status_code == 200
    gateway.stop()
    assert len(stored_rows(sqlite_url)) == 3


def test_names_longer_than_their_column_are_cut_to_fit(start: StartGateway) -> None:
    gateway = start()
    model = "openai/" + "m" * 300
    assert post(gateway, "/v1/chat/completions", chat(model)).status_code == 200
    [row] = wait_for_logs(gateway, 1)
    assert row["model_requested"] == model[:255]
    assert row["model_resolved"] == ("m" * 300)[:255]
