"""``POST /v1/chat/completions``, OpenAI-compatible.

``"model": "router"`` (or ``"auto"``) routes on the conversation; any other known model name
bypasses routing. The request is forwarded unchanged except for ``model`` (OpenAI's extra
fields pass through); SSE streams are passed through. Routing knobs go in an optional
``"routecast": {"lam": ...}`` object, removed before forwarding. Which backend answers, and
when another model may be tried, is :mod:`routecast.serving.proxy`'s job.

What the router reads in a chat: the LAST user message first, then the earlier messages, most
recent first, until ``route_context_chars`` characters (the system prompt is not used). The last
user message comes first because encoders cut long inputs from the end, and the router was
trained on single prompts.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from routecast.serving.api_error import ApiError
from routecast.serving.endpoints.common import key_id, read_json, server
from routecast.serving.schemas import RouteKnobs, validated
from routecast.serving.state import ROUTER_ALIASES

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat(request: Request):
    state = server(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "expected a JSON object (an OpenAI chat completion request)", code="invalid_request")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "'messages' must be a non-empty list of message objects", code="invalid_request")
    requested = body.get("model", "router")
    if not isinstance(requested, str):
        raise ApiError(400, "'model' must be a string", code="invalid_request")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false", code="invalid_request")
    knobs_raw = body.pop("routecast", None)
    knobs = validated(RouteKnobs, {} if knobs_raw is None else knobs_raw, where="routecast")
    caller = key_id(request)
    state.limits.check_budget(caller)
    state.limits.admit_prompts(caller, 1)
    candidates = await _candidates(state, requested, messages, knobs, caller)
    response, model = await state.proxy.complete(body, candidates, stream=stream, metrics=state.metrics)
    if response.status_code < 400:
        state.metrics.decisions.labels(model).inc()
        state.limits.charge(caller, state.runtime.expected_costs.get(model))
    return response


async def _candidates(state, requested: str, messages: list, knobs: RouteKnobs, caller: str) -> list[str]:
    """The models to try, best first: the router's ranking (with a backend), or the one model named."""
    runtime, proxy = state.runtime, state.proxy
    if requested in ROUTER_ALIASES:
        text = conversation_text(messages, state.settings.route_context_chars)
        if not text:
            raise ApiError(400, "the conversation has no text to route on", code="invalid_request")
        decision = (await state.route_texts([text], knobs, caller))[0]
        candidates = [m for m in decision["ranking"] if proxy.backend_for(m) is not None]
        if not candidates:
            raise ApiError(503, f"no backend is configured for any of the router's models "
                                f"({', '.join(runtime.models)}); the server needs a backends config", type="server_error",
                           code="no_backend")
        return candidates
    if requested not in runtime.models and requested not in state.backends:
        raise ApiError(404, f"unknown model {requested!r}; use 'router' (or 'auto') to route, or one of: "
                            f"{', '.join(state.known_models())}", code="model_not_found")
    if proxy.backend_for(requested) is None:
        raise ApiError(404, f"model {requested!r} has no backend configured", code="model_not_found")
    return [requested]


def _message_text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "\n".join(p.get("text", "") for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def conversation_text(messages: list[dict], limit: int) -> str:
    """What the router reads: the last user message, then earlier turns (newest first), cut at ``limit``."""
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") != "system"]
    last_user = max((i for i, m in enumerate(turns) if m.get("role") == "user"), default=None)
    if last_user is None:
        ordered = list(reversed(turns))
    else:
        ordered = [turns[last_user]] + [turns[i] for i in range(len(turns) - 1, -1, -1) if i != last_user]
    parts, used = [], 0
    for message in ordered:
        text = _message_text(message).strip()
        if not text:
            continue
        parts.append(text[: max(0, limit - used)])
        used += len(parts[-1]) + 2
        if used >= limit:
            break
    return "\n\n".join(p for p in parts if p)
