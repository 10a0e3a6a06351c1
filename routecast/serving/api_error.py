"""The one error shape of the server: OpenAI's ``{"error": {"message", "type", "code"}}``.

Clients written against the OpenAI SDK read ``error.message`` and ``error.code`` and map the
status to an exception class (401 AuthenticationError, 429 RateLimitError...), so every refusal
of the server, from the ASGI gate to the backend proxy, is built here.
"""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse


def error_body(message: str, *, type: str = "invalid_request_error", code: str | None = None,
               extra: dict | None = None) -> dict:
    return {"error": {"message": message, "type": type, "code": code, **(extra or {})}}


def error_bytes(message: str, **kwargs) -> bytes:
    return json.dumps(error_body(message, **kwargs)).encode()


class ApiError(Exception):
    """An error answered as OpenAI-style JSON with ``status``; raised anywhere in an endpoint."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, headers: dict[str, str] | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type, code
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self) -> JSONResponse:
        return JSONResponse(error_body(self.message, type=self.type, code=self.code, extra=self.extra),
                            status_code=self.status, headers=self.headers)

    def body(self) -> bytes:
        return error_bytes(self.message, type=self.type, code=self.code, extra=self.extra)


def rate_limited(message: str, retry_after_s: float, code: str) -> ApiError:
    """A 429 with ``retry-after`` (whole seconds, at least 1), as OpenAI's rate limiter answers."""
    import math

    return ApiError(429, message, type="rate_limit_error", code=code,
                    headers={"retry-after": str(max(1, math.ceil(retry_after_s)))})
