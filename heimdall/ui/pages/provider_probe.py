""" "Send test request": one small chat completion through the inference pipeline, for one key and one model.

The request goes through ``gateway.pipeline.chat`` (the code behind ``/v1/chat/completions``: routing,
alias resolution, retries, the provider adapter and the pooled HTTP client) with the current snapshot
narrowed to the provider and key the admin clicked. That is preferred over an HTTP call to our own
``/v1/chat/completions`` on loopback because:

* a request by model name may be served by any key of the provider, while the button tests one key;
* with ``enforce_auth_on_inference`` the endpoint needs a virtual key, which the admin does not have;
  here the caller is the admin (no virtual key, so no virtual-key allow-lists apply);
* the endpoint would also add MCP tools for agent mode, which is not what a provider check is about.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

from heimdall.errors import GatewayError
from heimdall.gateway import Gateway
from heimdall.llm.pipeline import Attempted, Caller

PROMPT = "Reply with one short sentence: is this provider working?"
MAX_TOKENS = 16
#: Upper bound for the whole test (all retries), so the admin's page always comes back.
TIMEOUT_SECONDS = 60.0
REPLY_CHARS = 200


@dataclass(frozen=True)
class ProbeOutcome:
    key_id: str
    model: str
    ok: bool
    status: int
    latency_ms: int
    #: The provider's model id after alias resolution (what was sent upstream).
    resolved_model: str | None
    reply: str | None = None
    error: str | None = None


def _reply_text(result: dict[str, Any]) -> str:
    try:
        content = result["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    if isinstance(content, list):  # content parts
        content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")[:REPLY_CHARS]


async def send_test_request(gateway: Gateway, provider_name: str, key_id: str, model: str) -> ProbeOutcome:
    """Ask ``model`` of ``provider_name`` a one-line question with ``key_id``'s credentials.

    Returns the outcome; an unknown provider or key is reported as a 404 outcome, not raised.
    """
    snapshot = gateway.snapshot
    provider = snapshot.providers.get(provider_name)
    key = next((k for k in provider.keys if k.id == key_id), None) if provider else None
    if provider is None or key is None:
        return ProbeOutcome(key_id, model, False, 404, 0, None, error="That key is not loaded; reload the page.")
    narrowed = replace(snapshot, providers={provider_name: replace(provider, keys=(key,))})
    state = Attempted(model_field=f"{provider_name}/{model}")
    body = {
        "model": state.model_field,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
    }
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(gateway.pipeline.chat(narrowed, Caller(vk=None), state, body), TIMEOUT_SECONDS)
    except GatewayError as exc:
        outcome_status, error = exc.status_code, exc.message
    except TimeoutError:
        outcome_status, error = 504, f"no answer within {TIMEOUT_SECONDS:g} seconds"
    else:
        latency = round((time.perf_counter() - started) * 1000)
        resolved = state.target.model if state.target else None
        return ProbeOutcome(key_id, model, True, 200, latency, resolved, reply=_reply_text(result))
    latency = round((time.perf_counter() - started) * 1000)
    resolved = state.target.model if state.target else None
    return ProbeOutcome(key_id, model, False, outcome_status, latency, resolved, error=error)
