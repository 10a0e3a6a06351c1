"""The realised cost of a streamed answer: read from the backend's usage chunk as it passes.

Why: a JSON answer is priced from its ``usage`` (token counts x the price table) when it is
complete; a stream used to be charged the router's expected cost instead (17x the realised cost
in one measured case) and its usage chunk carried no ``routecast_cost_usd``. One definition now
serves both (:meth:`routecast.serving.state.ServerState.call_cost`): the backend's token usage
priced by the price table when both are there, else the expected cost of the model.

A stream's usage arrives in its last chunk (OpenAI's ``stream_options.include_usage``), after the
response head, so: with a price table routecast asks the backend for that chunk
(:func:`ask_for_usage`), :func:`priced_stream` adds ``routecast_cost_usd`` and
``routecast_request_id`` to it (and drops it again when the client did not ask for usage), and the
key is charged, and the decision log's ``realised_cost`` written, when the stream ends.
"""

from __future__ import annotations

import json
from typing import AsyncIterator, Callable


def wants_usage(body: dict) -> bool:
    """Whether the client asked for a usage chunk (``stream_options.include_usage``)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def ask_for_usage(body: dict) -> dict:
    """``body`` with ``stream_options.include_usage`` set, the client's other stream options kept."""
    options = body.get("stream_options")
    return {**body, "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True}}


async def priced_stream(chunks: AsyncIterator[bytes], *, price: Callable[[dict | None], float | None],
                        request_id: str, keep_usage: bool,
                        on_end: Callable[[float | None], None]) -> AsyncIterator[bytes]:
    """Relay the server-sent events of ``chunks``; the event with ``usage`` gets ``routecast_cost_usd``
    (``price(usage)``) and ``routecast_request_id``, or is dropped when not ``keep_usage`` and it
    carries nothing else. ``on_end(cost)`` runs once when the stream ends or is cut (cost of a
    stream without usage: ``price(None)``)."""
    cost, priced, pending = None, False, b""
    try:
        async for chunk in chunks:
            pending += chunk
            *events, pending = pending.replace(b"\r\n", b"\n").split(b"\n\n")
            out = []
            for event in events:
                usage_event = _with_cost(event, price, request_id, keep_usage)
                if usage_event is None:
                    out.append(event + b"\n\n")
                    continue
                cost, priced = usage_event[1], True
                if usage_event[0] is not None:
                    out.append(usage_event[0] + b"\n\n")
            if out:
                yield b"".join(out)
        if pending:
            yield pending
    finally:
        on_end(cost if priced else price(None))
        close = getattr(chunks, "aclose", None)
        if close is not None:  # the backend's connection goes back to the pool now, not at garbage collection
            await close()


def _with_cost(event: bytes, price, request_id: str, keep_usage: bool) -> tuple[bytes | None, float | None] | None:
    """(the event rewritten or None to drop it, its cost) for a usage event; None for any other event."""
    if not event.startswith(b"data:") or b'"usage"' not in event:
        return None
    try:
        data = json.loads(event[5:].strip())
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("usage"), dict):
        return None
    cost = price(data["usage"])
    if not keep_usage:
        if data.get("choices"):
            return f"data: {json.dumps({k: v for k, v in data.items() if k != 'usage'})}".encode(), cost
        return None, cost
    data["usage"] = {**data["usage"], "routecast_cost_usd": cost, "routecast_request_id": request_id}
    return f"data: {json.dumps(data)}".encode(), cost
