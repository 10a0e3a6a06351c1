"""What every endpoint needs: the app's state, the caller's key id and the strictly parsed body."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from routecast.serving.api_error import ApiError
from routecast.serving.guard.jsonbody import parse_json_body
from routecast.serving.state import ServerState


def server(request: Request) -> ServerState:
    return request.app.state.server


def key_id(request: Request) -> str:
    return request.scope.get("state", {}).get("key_id", "anonymous")


async def read_json(request: Request) -> Any:
    """The body, at most ``max_body_bytes`` (413), as strict JSON (400; routecast.serving.guard.jsonbody)."""
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
