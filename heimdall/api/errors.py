"""Every management-API error leaves in the gateway envelope, never as FastAPI's default shape."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from heimdall.api.deps import get_gateway, require_admin
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


async def admin_refusal(request: Request) -> Response | None:
    """FastAPI reads and parses the body before it runs a route's dependencies. For admin routes, check
    the credential first, so that a caller without one learns nothing but "401", whatever it sent."""
    route = request.scope.get("route")
    if not any(getattr(dep, "dependency", None) is require_admin for dep in getattr(route, "dependencies", ())):
        return None
    try:
        await require_admin(request, get_gateway(request))
    except GatewayError as auth_error:
        return envelope_response(auth_error)
    return None


def install(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway_error(_request: Request, exc: GatewayError) -> Response:
        return envelope_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        refusal = await admin_refusal(request)
        if refusal is not None:
            return refusal
        problems = []
        for err in exc.errors():
            loc = tuple(part for part in err.get("loc", ()) if part != "body")
            if err.get("type") == "json_invalid":
                reason = (err.get("ctx") or {}).get("error", "JSON decode error")
                problems.append(f"malformed JSON body ({reason}) at character {loc[0] if loc else 0}")
            elif err.get("type") == "missing" and not loc:
                problems.append("$: a JSON request body is required")
            else:
                problems.append(f"{json_path(loc)}: {str(err.get('msg')).removeprefix('Value error, ')}")
        message = "invalid request: " + "; ".join(problems) if problems else "invalid request"
        return envelope_response(GatewayError(message, status_code=400, extra_fields={"errors": problems}))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail)
        if exc.status_code == 400:  # FastAPI could not read the body (e.g. it is not UTF-8)
            refusal = await admin_refusal(request)
            if refusal is not None:
                return refusal
            if message == "There was an error parsing the body":
                message = "malformed JSON body: it could not be decoded"
        kinds = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}
        error = GatewayError(
            message, status_code=exc.status_code, error_type=kinds.get(exc.status_code, "invalid_request_error")
        )
        error.headers = dict(exc.headers or {})
        return envelope_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled error in the management API")
        return envelope_response(GatewayError("internal error", status_code=500, error_type="internal_error"))
