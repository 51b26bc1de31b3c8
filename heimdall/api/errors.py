"""Every management-API error leaves in the gateway envelope, never as FastAPI's default shape."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from heimdall.config.loader import json_path
from heimdall.errors import GatewayError

log = logging.getLogger(__name__)


def envelope_response(error: GatewayError) -> Response:
    return Response(
        error.body(),
        status_code=error.status_code,
        media_type="application/json",
        headers={"Cache-Control": "no-store", **error.headers},
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway_error(_request: Request, exc: GatewayError) -> Response:
        return envelope_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors():
            loc = tuple(part for part in err.get("loc", ()) if part != "body")
            problems.append(f"{json_path(loc)}: {err.get('msg')}")
        message = "invalid request: " + "; ".join(problems) if problems else "invalid request"
        return envelope_response(GatewayError(message, status_code=400, extra_fields={"errors": problems}))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        kinds = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}
        error = GatewayError(
            str(exc.detail), status_code=exc.status_code, error_type=kinds.get(exc.status_code, "invalid_request_error")
        )
        error.headers = dict(exc.headers or {})
        return envelope_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled error in the management API")
        return envelope_response(GatewayError("internal error", status_code=500, error_type="internal_error"))
