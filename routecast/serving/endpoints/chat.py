"""``POST /v1/chat/completions``, OpenAI-compatible.

``"model": "router"`` (or ``"auto"``) routes on the conversation, ``"router:NAME"`` routes at the
stored operating point NAME; any other known model name bypasses routing. Routing knobs come from
the model name, ``x-routecast-*`` headers or the ``routecast`` body field (routecast.serving.knobs);
unknown ones are a 400 and nothing routecast reads is forwarded. The request is otherwise
forwarded unchanged except for ``model`` (OpenAI's extra fields pass through); SSE streams are
passed through. Which backend answers, and when another model may be tried, is
:mod:`routecast.serving.proxy`'s job.

What the router reads in a chat is :func:`routecast.data.chat_text.routing_text` - the one policy
training uses too - with the server's ``route_context_chars``, ``route_system_prompt`` and
``route_earlier_turns``: the last user turn, then the system prompt, then (if configured) N
earlier turns; a system-only chat routes on its system prompt.

What the answer says about the decision (transparency): headers ``x-routecast-request-id``,
``-model`` (the model that answered), ``-rank``, ``-predicted-quality``, ``-expected-cost``,
``-operating-point``, ``-lam``, ``-propensity``, ``-sticky`` (1 when the conversation's first model
was kept), ``-fallback`` (when another model answered) and ``-cost-usd``; a JSON answer's
``usage`` gains ``routecast_cost_usd`` (from the backend's token usage and the price table when
one is configured, else the router's expected cost) and ``routecast_request_id``. Streams carry
the headers; their realised cost is the expected cost.

A server running a cascade checkpoint answers routed chats in :mod:`routecast.serving.cascade_chat`
(several backend calls per request; what streams is documented there).
"""

from __future__ import annotations

import json
import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from routecast.data.chat_text import NoRoutingText, routing_text
from routecast.errors import shown
from routecast.serving.api_error import ApiError
from routecast.serving.conversations import conversation_key, sticky_choice
from routecast.serving.decision_writer import decision_record, rank_of
from routecast.serving.endpoints.common import budget_holds, key_id, read_json, server, share_id
from routecast.serving.exploration import explored_choice
from routecast.serving.knobs import chat_knobs, conversation_header, router_model
from routecast.serving.usage import chat_hold_usd, checked_usage, strict_json

router = APIRouter()


def new_request_id() -> str:
    return "rc-" + uuid.uuid4().hex


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
    routes, point = router_model(requested)
    knobs = chat_knobs(body, request.headers, point)
    caller = key_id(request)
    state.limits.check_budget(caller, hold_usd=chat_hold_usd(state.runtime, None if routes else requested),
                              holds=budget_holds(request))
    state.limits.admit_prompts(caller, 1)
    request_id = new_request_id()
    started = time.perf_counter()
    if routes and getattr(state.runtime, "is_cascade", False):  # a cascade checkpoint: call, score, maybe again
        from routecast.serving.cascade_chat import cascade_chat

        return await cascade_chat(state, body, knobs, caller, request_id, started, stream=stream,
                                  text=chat_routing_text(state.settings, messages))
    if routes:
        plan = await _route_chat(state, body, messages, knobs, caller, request_id, request.headers,
                                 share=share_id(request))
    else:
        plan = _named_model(state, requested, request_id)
    try:
        response, model = await state.proxy.complete(body, plan.candidates, stream=stream, metrics=state.metrics)
    except ApiError as exc:
        exc.headers = {**exc.headers, **plan.headers()}
        _log_outcome(state, plan, None, status=exc.status, started=started, cost=None,
                     fallback=exc.headers.get("x-routecast-fallback"))
        raise
    cost = None
    if response.status_code < 400:
        state.metrics.decisions.labels(model).inc()
        response, cost = _with_cost(state, plan, response, model, stream, body)
        state.limits.charge(caller, cost)
    for name, value in plan.headers(model).items():
        response.headers[name] = value
    _log_outcome(state, plan, model, status=response.status_code, started=started, cost=cost,
                 fallback=response.headers.get("x-routecast-fallback"))
    return response


class _Plan:
    """What was decided for one chat: the candidates in order and what the answer reports about it."""

    def __init__(self, request_id: str, candidates: list[str], decision: dict | None = None,
                 propensity: float = 1.0, sticky: bool = False, logged: bool = False):
        self.request_id, self.candidates, self.decision = request_id, candidates, decision
        self.propensity, self.sticky, self.logged = propensity, sticky, logged

    def headers(self, model: str | None = None) -> dict[str, str]:
        out = {"x-routecast-request-id": self.request_id}
        d = self.decision
        if d is None:
            return out
        model = model or self.candidates[0]
        predicted = d["predicted_quality"]
        out.update({"x-routecast-rank": str(rank_of(predicted, model)),
                    "x-routecast-predicted-quality": f"{predicted[model]:.6g}",
                    "x-routecast-lam": f"{d['lam']:.6g}", "x-routecast-propensity": f"{self.propensity:.6g}",
                    "x-routecast-operating-point": d.get("operating_point") or "",
                    "x-routecast-sticky": "1" if self.sticky else "0"})
        if d.get("expected_costs", {}).get(model) is not None:
            out["x-routecast-expected-cost"] = f"{d['expected_costs'][model]:.6g}"
        return {k: v for k, v in out.items() if v != ""}


def chat_routing_text(settings, messages) -> str:
    """What the router (or cascade) reads of a chat, with the server's settings (400 if nothing)."""
    try:
        return routing_text(messages, max_chars=settings.route_context_chars,
                            system_prompt=settings.route_system_prompt, earlier_turns=settings.route_earlier_turns)
    except NoRoutingText as exc:
        raise ApiError(400, str(exc), code="invalid_request") from None


async def _route_chat(state, body, messages, knobs, caller, request_id, headers, *, share: str) -> _Plan:
    """Route the conversation (within ``share``'s fair share of the router): decision, stickiness,
    exploration, decision-log record."""
    settings = state.settings
    text = chat_routing_text(settings, messages)
    decision = dict((await state.route_texts([text], knobs, share))[0])
    decision["expected_costs"] = state.runtime.expected_costs
    conversation = conversation_key(conversation_header(headers) or (
        body.get("user") if isinstance(body.get("user"), str) and body.get("user") else None))
    chosen, propensity, sticky = decision["model"], 1.0, False
    first = await _first_model(state, conversation) if conversation and settings.sticky_margin is not None else None
    if first is not None:
        chosen = sticky_choice(decision, first, settings.sticky_margin)
        sticky = chosen == first and chosen != decision["model"]
    elif settings.explore > 0 or settings.explore_temperature is not None:
        chosen, propensity = explored_choice(decision, state.runtime.models, state.runtime.router.costs_, request_id,
                                             epsilon=settings.explore, temperature=settings.explore_temperature)
    if conversation and first is None:
        state.conversations.remember(conversation, chosen)
    ranking = [chosen] + [m for m in decision["ranking"] if m != chosen]
    candidates = [m for m in ranking if state.proxy.backend_for(m) is not None]
    if not candidates:
        raise ApiError(503, f"no backend is configured for any of the router's models "
                            f"({', '.join(state.runtime.models)}); the server needs a backends config",
                       type="server_error", code="no_backend", headers={"x-routecast-request-id": request_id})
    logged = False
    if state.writer is not None:
        state.writer.append(decision_record(request_id, decision, text=text, key_id=caller, chosen=chosen,
                                            propensity=propensity, conversation_id=conversation,
                                            expected_cost=decision["expected_costs"].get(chosen),
                                            extra={"sticky": True} if sticky else None))
        logged = True
    return _Plan(request_id, candidates, decision, propensity, sticky, logged)


async def _first_model(state, conversation: str) -> str | None:
    first = state.conversations.get(conversation)
    if first is None and state.writer is not None:
        found = await state.writer.call(state.writer.log.conversation_model, conversation)
        if found is not None:
            first = found[0]
            state.conversations.remember(conversation, first)
    return first


def _named_model(state, requested: str, request_id: str) -> _Plan:
    runtime, proxy = state.runtime, state.proxy
    if requested not in runtime.models and requested not in state.backends:
        raise ApiError(404, f"unknown model {shown(requested)}; use 'router' (or 'auto', or 'router:POINT') to route, "
                            f"or one of: {', '.join(state.known_models())}", code="model_not_found")
    if proxy.backend_for(requested) is None:
        raise ApiError(404, f"model {requested!r} has no backend configured", code="model_not_found")
    return _Plan(request_id, [requested])


def _with_cost(state, plan: _Plan, response: Response, model: str, stream: bool,
               body: dict) -> tuple[Response, float | None]:
    """The answer with ``usage.routecast_cost_usd`` and the realised cost of the call (a usage the
    backend reported for ``body`` is believed only when plausible: routecast.serving.usage)."""
    expected = state.runtime.expected_costs.get(model)
    if stream:
        if expected is not None:
            response.headers["x-routecast-cost-usd"] = f"{expected:.6g}"
        return response, expected
    try:
        data = json.loads(response.body)
    except ValueError:  # the proxy checked it is JSON; be safe anyway
        return response, expected
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    cost = state.call_cost(model, checked_usage(usage, body, data, model=model, metrics=state.metrics,
                                                request_id=plan.request_id))
    data["usage"] = {**(usage or {}), "routecast_cost_usd": cost, "routecast_request_id": plan.request_id}
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    if cost is not None:
        headers["x-routecast-cost-usd"] = f"{cost:.6g}"
    return Response(strict_json(data).encode(), status_code=response.status_code, headers=headers,
                    media_type="application/json"), cost


def _log_outcome(state, plan: _Plan, model: str | None, *, status: int, started: float, cost: float | None,
                 fallback: str | None) -> None:
    if not plan.logged:
        return
    fields = {"status": status, "latency_ms": (time.perf_counter() - started) * 1000.0, "realised_cost": cost,
              "fallback": fallback}
    if model is not None and model != plan.candidates[0]:
        fields.update(chosen=model, rank=rank_of(plan.decision["predicted_quality"], model))
    state.writer.update(plan.request_id, **fields)
