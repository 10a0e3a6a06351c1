"""What every endpoint needs: the app's state, the caller's key id and the strictly parsed body."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from routecast.data.strict_json import parse_json
from routecast.errors import DataError
from routecast.serving.api_error import ApiError
from routecast.serving.guard.key_limits import BUDGET_HOLDS
from routecast.serving.state import ServerState


def server(request: Request) -> ServerState:
    return request.app.state.server


def key_id(request: Request) -> str:
    return request.scope.get("state", {}).get("key_id", "anonymous")


def share_id(request: Request) -> str:
    """Whose fair share of the router a request uses: its key id, or without keys its client
    address (routecast.serving.guard.gate)."""
    state = request.scope.get("state", {})
    return state.get("share_id") or state.get("key_id", "anonymous")


def budget_holds(request: Request) -> list:
    """What this request holds against its key's budget (reserve mode); the gate releases it when
    the request ends, however it ends (routecast.serving.guard.key_limits)."""
    return request.scope.setdefault("state", {}).setdefault(BUDGET_HOLDS, [])


async def read_json(request: Request) -> Any:
    """The body, at most ``max_body_bytes`` (413), as strict JSON (400; :func:`parse_json_body`)."""
    settings = server(request).settings
    limit = settings.max_body_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"request body of {length} bytes exceeds the limit of {limit} bytes",
                       code="body_too_large", headers={"connection": "close"})
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes", code="body_too_large",
                           headers={"connection": "close"})
        chunks.append(chunk)
    return parse_json_body(b"".join(chunks), max_depth=settings.max_json_depth,
                           max_number_chars=settings.max_number_chars)


def parse_json_body(raw: bytes, *, max_depth: int = 64, max_number_chars: int = 100) -> Any:
    """``raw`` (UTF-8, a BOM tolerated) as JSON by the one strict parser (routecast.data.strict_json)
    with the server's limits - nesting, number length, no NaN/Infinity, no lone surrogates, no
    duplicate keys - or an :class:`ApiError` 400 on the connection it came on."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(f"not UTF-8 (byte {exc.start})") from None
    try:
        return parse_json(text.removeprefix("\ufeff"), "request body", None, max_depth=max_depth,
                          max_number_chars=max_number_chars, finite_only=True, valid_unicode=True)
    except DataError as exc:
        raise _bad(exc.reason) from None


def _bad(message: str) -> ApiError:
    return ApiError(400, f"request body is not acceptable JSON: {message}", code="invalid_json")
