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
