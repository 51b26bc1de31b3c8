"""The gateway error envelope and the exceptions that turn into it.

Every non-OAuth error leaves the gateway as::

    {"is_bifrost_error": true, "status_code": 400,
     "error": {"message": "...", "type": "invalid_request_error"},
     "extra_fields": {...}}

``is_bifrost_error`` is true when the gateway itself refused the request and false when it relays
an upstream provider's error (the reference system's meaning).
"""

from __future__ import annotations

from typing import Any

import orjson


class GatewayError(Exception):
    """An error with an HTTP status and an envelope; raise it anywhere below the HTTP layer."""

    status_code: int = 400
    error_type: str = "invalid_request_error"
    from_gateway: bool = True

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        extra_fields: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        if error_type is not None:
            self.error_type = error_type
        self.code = code
        self.param = param
        self.extra_fields: dict[str, Any] = dict(extra_fields or {})
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.error_type}
        if self.code is not None:
            error["code"] = self.code
        if self.param is not None:
            error["param"] = self.param
        return {
            "is_bifrost_error": self.from_gateway,
            "status_code": self.status_code,
            "error": error,
            "extra_fields": self.extra_fields,
        }

    def body(self) -> bytes:
        return orjson.dumps(self.envelope())


class BadRequest(GatewayError):
    status_code = 400


class Unauthorized(GatewayError):
    status_code = 401
    error_type = "authentication_error"


class Forbidden(GatewayError):
    status_code = 403
    error_type = "permission_error"


class NotFound(GatewayError):
    status_code = 404
    error_type = "not_found_error"


class Conflict(GatewayError):
    status_code = 409
    error_type = "conflict_error"


class PayloadTooLarge(GatewayError):
    status_code = 413
    error_type = "request_too_large"


class UpstreamError(GatewayError):
    """A provider answered with an error status, or could not be reached.

    ``retryable`` marks 429, 5xx and transport failures, which the router retries on another key.
    """

    from_gateway = False
    error_type = "upstream_error"

    def __init__(self, message: str, *, status_code: int, retryable: bool, **kwargs: Any) -> None:
        super().__init__(message, status_code=status_code, **kwargs)
        self.retryable = retryable


class UpstreamTimeout(UpstreamError):
    error_type = "timeout_error"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, status_code=504, retryable=True, **kwargs)


class UpstreamUnavailable(UpstreamError):
    error_type = "upstream_unavailable"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, status_code=502, retryable=True, **kwargs)
