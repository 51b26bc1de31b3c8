"""Errors of the authorization server, in the shapes the RFCs give them."""

from __future__ import annotations

from typing import Literal

import orjson
from starlette.responses import Response

#: RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 8707 §2 and RFC 7009 §2.2.1 error codes.
ErrorCode = Literal[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "unsupported_token_type",
    "invalid_redirect_uri",
    "invalid_client_metadata",
    "server_error",
]

#: Responses that carry tokens or credentials must not be cached (RFC 6749 §5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An error answered as RFC 6749 §5.2 JSON: ``{"error", "error_description"}``."""

    def __init__(self, error: ErrorCode, description: str, status_code: int = 400) -> None:
        super().__init__(description)
        self.error: ErrorCode = error
        self.description = description
        self.status_code = status_code

    def response(self) -> Response:
        body = orjson.dumps({"error": self.error, "error_description": self.description})
        return Response(body, status_code=self.status_code, media_type="application/json", headers=NO_STORE)


def json_response(data: object, status_code: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status_code, media_type="application/json", headers=NO_STORE)
