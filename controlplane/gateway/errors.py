"""Errors in OpenAI's format: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII characters escaped, so that text echoed from a request (even a lone surrogate) can never
    fail to encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode()


class GatewayError(Exception):
    """A refusal: ``message`` is what the caller reads; ``detail`` (internal state, for records and logs) is not
    shown to the caller."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | str | None = None,
        detail: str = "",
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after
        self.detail = detail or message

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, param=self.param, code=self.code, retry_after=self.retry_after)


def error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    retry_after: int | str | None = None,
    error_type: str | None = None,
) -> JSONResponse:
    body = {
        "error": {
            "message": message,
            "type": error_type or TYPES.get(status, "api_error"),
            "param": param,
            "code": code,
        }
    }
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="gateway"'
    return AsciiJSONResponse(body, status_code=status, headers=headers)
