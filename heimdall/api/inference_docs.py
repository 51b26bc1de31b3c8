"""OpenAPI entries for the inference routes.

The routes themselves are served by ``HotPathRouter`` before FastAPI sees the request; these
declarations exist so that ``/openapi.json`` documents the whole HTTP surface in one place.
"""

from __future__ import annotations

from typing import Any, NoReturn

from fastapi import APIRouter

from heimdall.errors import GatewayError

router = APIRouter(tags=["inference"])

_AUTH = (
    "Send a virtual key as `x-bf-vk`, `x-bf-virtual-key`, `Authorization: Bearer sk-bf-…` or `x-api-key` "
    "(required when `client.enforce_auth_on_inference` is on)."
)
_ENVELOPE = {
    "description": "Gateway error envelope",
    "content": {
        "application/json": {
            "example": {
                "is_bifrost_error": True,
                "status_code": 400,
                "error": {"message": "model is required", "type": "invalid_request_error"},
                "extra_fields": {"original_model_requested": "", "resolved_model_used": ""},
            }
        }
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _ENVELOPE,
    401: _ENVELOPE,
    403: _ENVELOPE,
    413: _ENVELOPE,
    502: _ENVELOPE,
    504: _ENVELOPE,
}


def _body(example: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}, "example": example}},
        }
    }


def _served_elsewhere() -> NoReturn:
    raise GatewayError("served by the inference router", status_code=500)


@router.post(
    "/v1/chat/completions",
    summary="OpenAI-compatible chat completions (streaming with stream: true)",
    description="Model as `provider/model` or an alias. " + _AUTH,
    responses=_ERRORS,
    openapi_extra=_body({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}),
)
async def chat_completions() -> None:
    _served_elsewhere()


@router.post(
    "/v1/embeddings",
    summary="OpenAI-compatible embeddings (OpenAI and Azure providers)",
    description=_AUTH,
    responses=_ERRORS,
    openapi_extra=_body({"model": "openai/text-embedding-3-small", "input": "Hello"}),
)
async def embeddings() -> None:
    _served_elsewhere()


@router.get("/v1/models", summary="Configured models and aliases the caller may use", description=_AUTH)
async def models() -> None:
    _served_elsewhere()


@router.post(
    "/anthropic/v1/messages",
    summary="The Anthropic Messages API in front of any provider (streaming with stream: true)",
    description="Model as `provider/model` or an alias; answers in the Anthropic format. " + _AUTH,
    responses=_ERRORS,
    openapi_extra=_body(
        {"model": "anthropic/claude-sonnet", "max_tokens": 256, "messages": [{"role": "user", "content": "Hello"}]}
    ),
)
async def anthropic_messages() -> None:
    _served_elsewhere()


@router.post(
    "/v1/mcp/tool/execute",
    tags=["mcp"],
    summary="Run one MCP tool call the model produced",
    description=(
        "Body: an OpenAI tool call (`{id, type: function, function: {name: <server>-<tool>, arguments}}`), or with "
        "`?format=responses` a Responses API `function_call`. Answers a `tool` message (or `function_call_output`). "
        "A per-user server the caller has not connected answers 401 with `extra_fields.mcp_auth_required` "
        "(`authorize_url`). " + _AUTH
    ),
    responses={**_ERRORS, 404: _ENVELOPE},
    openapi_extra={
        **_body({"id": "call_1", "type": "function", "function": {"name": "notes-search", "arguments": "{}"}}),
        "parameters": [{"name": "format", "in": "query", "schema": {"type": "string", "enum": ["chat", "responses"]}}],
    },
)
async def mcp_tool_execute() -> None:
    _served_elsewhere()


_MCP_DESCRIPTION = (
    "Streamable-HTTP MCP endpoint (JSON-RPC over POST, server stream over GET, session end with DELETE). "
    "Authenticate with a virtual key (`x-bf-vk`, `Authorization: Bearer sk-bf-…`, `x-api-key`) or, when per-user "
    "OAuth servers exist, with an OAuth access token from `/api/oauth/per-user/token`; without credentials it "
    "answers 401 with `WWW-Authenticate: Bearer resource_metadata=…`."
)


@router.post("/mcp", tags=["mcp"], summary="MCP JSON-RPC requests", description=_MCP_DESCRIPTION)
async def mcp_post() -> None:
    _served_elsewhere()


@router.get("/mcp", tags=["mcp"], summary="MCP server-to-client stream (SSE)", description=_MCP_DESCRIPTION)
async def mcp_get() -> None:
    _served_elsewhere()


@router.delete("/mcp", tags=["mcp"], summary="End an MCP session", description=_MCP_DESCRIPTION)
async def mcp_delete() -> None:
    _served_elsewhere()
