"""Bad input and upstream faults: each gets a clear envelope with the right status, is counted in
/metrics, and leaves the store unchanged."""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest

from tests.llm.conftest import VK_ALL, chat
from tests.support.fake_providers import FakeProvider, drop_stream, fail, slow, stream_error
from tests.support.gateway import RunningGateway


def store_version(http: httpx.Client) -> int:
    return int(http.get("/health").json()["store_version"])


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"", 400, "empty"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"messages": []}', 400, "model is required"),
        (b'{"model": 42, "messages": []}', 400, "model is required"),
        (b'{"model": "nowhere/gpt-4o", "messages": []}', 400, "unknown provider 'nowhere'"),
        (b'{"model": "no-such-alias", "messages": []}', 400, "no provider serves model"),
        (b'{"model": "tiered/gpt-4o", "messages": []}', 400, "no key of provider 'tiered' serves model 'gpt-4o'"),
    ],
)
def test_caller_mistakes_are_4xx_envelopes(
    http: httpx.Client, fake: FakeProvider, body: bytes, status: int, fragment: str
) -> None:
    before = store_version(http)
    response = http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    payload = response.json()
    assert payload["status_code"] == status and payload["is_bifrost_error"] is True
    assert fragment in payload["error"]["message"]
    assert fake.count() == 0
    assert store_version(http) == before


def test_oversized_body_is_413(http: httpx.Client, fake: FakeProvider) -> None:
    big = json.dumps(chat("openai/gpt-4o-mini", "x" * 100_000))
    response = http.post("/v1/chat/completions", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["error"]["message"]
    assert fake.count() == 0


def test_oversized_chunked_body_is_413(gateway: RunningGateway) -> None:
    """A body without Content-Length is cut off as soon as it passes the limit."""

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b"x" * 4096

    with gateway.client() as http:
        response = http.post("/v1/chat/completions", content=chunks())
    assert response.status_code == 413


def test_wrong_method_is_405(http: httpx.Client) -> None:
    response = http.get("/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "method_not_allowed"


def test_upstream_timeout_is_504(http: httpx.Client, fake: FakeProvider) -> None:
    fake.script("openai.chat", slow(3))
    started = time.monotonic()
    response = http.post("/v1/chat/completions", json=chat("slow/gpt-4o-mini"))
    assert time.monotonic() - started < 2.5
    assert response.status_code == 504
    body = response.json()
    assert body["error"]["type"] == "timeout_error"
    assert body["is_bifrost_error"] is False
    assert body["extra_fields"]["provider"] == "slow"


def test_upstream_4xx_is_relayed_without_retry(http: httpx.Client, fake: FakeProvider) -> None:
    fake.script("openai.chat", fail(400, "context_length_exceeded: too long", code="context_length_exceeded"))
    response = http.post("/v1/chat/completions", json=chat("openai/gpt-4o-mini"))
    assert response.status_code == 400
    assert "context_length_exceeded" in response.json()["error"]["message"]
    assert fake.count("openai.chat") == 1


def test_5xx_and_429_are_retried_with_backoff(http: httpx.Client, fake: FakeProvider) -> None:
    fake.script("openai.chat", [fail(503), fail(429, headers={"retry-after": "0"})])
    response = http.post("/v1/chat/completions", json=chat("openai/gpt-4o-mini"))
    assert response.status_code == 200
    assert fake.count("openai.chat") == 3


def test_retries_are_bounded(http: httpx.Client, fake: FakeProvider) -> None:
    fake.always("openai.chat", fail(500, "upstream exploded"))
    response = http.post("/v1/chat/completions", json=chat("openai/gpt-4o-mini"))
    assert response.status_code == 500
    assert "upstream exploded" in response.json()["error"]["message"]
    assert fake.count("openai.chat") == 3  # max_retries = 2


def test_retries_move_to_another_key(http: httpx.Client, fake: FakeProvider) -> None:
    fake.always("openai.chat", fail(429))
    fake.script("openai.chat", [])
    for _ in range(5):
        fake.clear()
        http.post("/v1/chat/completions", json=chat("tiered/best"), headers={"x-bf-vk": VK_ALL})
        keys = [r.headers["authorization"] for r in fake.find("openai.chat")]
        assert len(keys) == 2 and set(keys) == {"Bearer sk-free", "Bearer sk-paid"}


def test_unreachable_upstream_is_502(gateway: RunningGateway, http: httpx.Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    with gateway.admin() as admin:
        created = admin.post(
            "/api/providers",
            json={
                "name": "dead",
                "custom_provider_config": {"base_provider_type": "openai"},
                "network_config": {"base_url": f"http://127.0.0.1:{dead}", "max_retries": 0},
                "keys": [{"value": "sk-dead", "models": ["*"]}],
            },
        )
        assert created.status_code == 201, created.text
        try:
            response = http.post("/v1/chat/completions", json=chat("dead/model"))
            assert response.status_code == 502
            assert "could not be reached" in response.json()["error"]["message"]
        finally:
            admin.delete("/api/providers/dead")


def test_stream_dropped_midway_ends_with_an_error_frame(gateway: RunningGateway, fake: FakeProvider) -> None:
    fake.script("openai.chat", drop_stream(after=2))
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=10) as client:
        stream = client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "a b c d e f"}], stream=True
        )
        received = []
        with pytest.raises(openai.APIError) as info:
            for chunk in stream:
                received.append(chunk)
    assert received, "frames before the drop reach the caller"
    assert "stream failed" in str(info.value) or "closed the stream" in str(info.value)


def test_in_band_stream_error_from_anthropic(gateway: RunningGateway, fake: FakeProvider) -> None:
    fake.script("anthropic", stream_error(after=3, message="overloaded right now", type="overloaded_error"))
    body = chat("anthropic/claude", stream=True)
    with gateway.client() as http, http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        frames = [line for line in response.iter_lines() if line.startswith("data: ")]
    last = json.loads(frames[-1][6:])
    assert last["error"]["type"] == "upstream_stream_broken"
    assert "overloaded right now" in last["error"]["message"]
    assert "data: [DONE]" not in frames


def test_stream_that_fails_before_the_first_frame_gets_a_status(http: httpx.Client, fake: FakeProvider) -> None:
    fake.script("openai.chat", fail(401, "Incorrect API key provided"))
    response = http.post("/v1/chat/completions", json=chat("openai/gpt-4o-mini", stream=True))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert "Incorrect API key" in response.json()["error"]["message"]


def test_failures_are_counted_in_metrics(http: httpx.Client, fake: FakeProvider) -> None:
    fake.script("openai.chat", fail(400))
    http.post("/v1/chat/completions", json=chat("openai/counted-model"))
    http.post("/v1/chat/completions", content=b"{bad", headers={"content-type": "application/json"})
    text = http.get("/metrics").text
    assert 'heimdall_requests_total{endpoint="chat",model="counted-model",provider="openai",status="400"} 1.0' in text
    assert 'heimdall_upstream_errors_total{kind="upstream_error",model="counted-model",provider="openai"} 1.0' in text
    assert 'heimdall_requests_total{endpoint="chat",model="unknown",provider="unknown",status="400"}' in text
    assert "heimdall_request_duration_seconds_bucket" in text
