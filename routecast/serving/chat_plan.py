"""The call plan of a router (and of a chat that names its model): one backend call, with
fallback down the decision's ranking when the proxy finds that safe (routecast.serving.proxy).

:meth:`routecast.serving.runtime.Runtime.answer_chat` is :func:`routed_plan` then
:func:`answer_with_plan`; a named model (``"model": "gpt-4o"``) skips the policy and goes
straight to :func:`answer_with_plan` with :func:`named_model_plan`. What the answer carries is
documented in :mod:`routecast.serving.endpoints.chat`.
"""

from __future__ import annotations

import json
import math
import time

from fastapi.responses import Response, StreamingResponse

from routecast.errors import shown
from routecast.serving.api_error import ApiError
from routecast.serving.chat_request import ChatRequest, chat_routing_text, decision_headers, reported_fallback
from routecast.serving.conversations import conversation_key, sticky_choice
from routecast.serving.decision_writer import decision_record, rank_of
from routecast.serving.exploration import explored_choice
from routecast.serving.knobs import conversation_header
from routecast.serving.state import ServerState
from routecast.serving.stream_usage import ask_for_usage, priced_stream, wants_usage
from routecast.serving.usage import checked_usage, strict_json


class Plan:
    """What was decided for one chat: the candidates in order (models with a backend) and what the
    answer reports about it. ``first_choice``: the decided model, which is not a candidate when it
    has no backend (``--allow-missing-backends``); the answer then reports a fallback."""

    def __init__(self, request_id: str, candidates: list[str], decision: dict | None = None,
                 propensity: float = 1.0, sticky: bool = False, logged: bool = False,
                 first_choice: str | None = None):
        self.request_id, self.candidates, self.decision = request_id, candidates, decision
        self.propensity, self.sticky, self.logged = propensity, sticky, logged
        self.first_choice = first_choice or candidates[0]

    def fallback(self, answered: str, proxy_chain: str | None) -> str | None:
        return reported_fallback(self.first_choice, answered, proxy_chain)

    def headers(self, model: str | None = None) -> dict[str, str]:
        d = self.decision
        if d is None:
            return decision_headers(self.request_id)
        model = model or self.candidates[0]
        return decision_headers(self.request_id, model=model, predicted=d["predicted_quality"], lam=d["lam"],
                                expected_cost=d.get("expected_costs", {}).get(model),
                                operating_point=d.get("operating_point"), propensity=self.propensity,
                                sticky=self.sticky)


async def answer_with_plan(state: ServerState, chat: ChatRequest, plan: Plan) -> Response:
    """Send the chat to the plan's candidates (first that answers), price it, charge the caller,
    add the decision's headers and complete the decision-log row."""
    # a stream is priced from its usage chunk as for a JSON answer (routecast.serving.stream_usage)
    body = ask_for_usage(chat.body) if chat.stream and state.prices is not None else chat.body
    try:
        response, model = await state.proxy.complete(body, plan.candidates, stream=chat.stream,
                                                     metrics=state.metrics)
    except ApiError as exc:
        chain = plan.fallback(exc.headers.get("x-routecast-model") or plan.candidates[0],
                              exc.headers.get("x-routecast-fallback"))
        exc.headers = {**exc.headers, **plan.headers(), **({"x-routecast-fallback": chain} if chain else {})}
        _log_outcome(state, plan, None, status=exc.status, started=chat.started, cost=None, fallback=chain)
        raise
    chain = plan.fallback(model, response.headers.get("x-routecast-fallback"))
    if chain is not None:
        response.headers["x-routecast-fallback"] = chain
        if plan.first_choice not in plan.candidates:  # the proxy counted the fallbacks it made itself
            state.metrics.fallbacks.labels(plan.first_choice, plan.candidates[0]).inc()
    cost = None
    if response.status_code < 400:
        state.metrics.decisions.labels(model).inc()
        if isinstance(response, StreamingResponse):
            _price_stream(state, chat, plan, response, model)  # charged when the stream ends
        else:
            response, cost = _with_cost(state, chat, plan, response, model)
            state.charge(chat.caller, cost)
    for name, value in plan.headers(model).items():
        response.headers[name] = value
    _log_outcome(state, plan, model, status=response.status_code, started=chat.started, cost=cost, fallback=chain)
    return response


async def routed_plan(state: ServerState, chat: ChatRequest) -> Plan:
    """Route the conversation: decision, stickiness, exploration, decision-log record."""
    settings, runtime = state.settings, state.runtime
    text = chat_routing_text(settings, chat.messages)
    decision = dict((await state.route_texts([text], chat.knobs, chat.share or chat.caller))[0])
    decision["expected_costs"] = runtime.expected_costs
    conversation = chat_conversation(chat)
    chosen, propensity, sticky = decision["model"], 1.0, False
    first = await _first_model(state, conversation) if conversation and settings.sticky_margin is not None else None
    if first is not None:
        chosen = sticky_choice(decision, first, settings.sticky_margin)
        sticky = chosen == first and chosen != decision["model"]
    elif settings.explore > 0 or settings.explore_temperature is not None:
        costs = [math.nan if c is None else c for c in (decision["expected_costs"][m] for m in runtime.models)]
        chosen, propensity = explored_choice(decision, runtime.models, costs, chat.request_id,
                                             epsilon=settings.explore, temperature=settings.explore_temperature)
    if conversation and first is None:
        state.conversations.remember(conversation, chosen)
    ranking = [chosen] + [m for m in decision["ranking"] if m != chosen]
    candidates = [m for m in ranking if state.proxy.backend_for(m) is not None]
    if not candidates:
        raise ApiError(503, f"no backend is configured for any of the router's models "
                            f"({', '.join(runtime.models)}); the server needs a backends config",
                       type="server_error", code="no_backend", headers={"x-routecast-request-id": chat.request_id})
    logged = False
    if state.writer is not None:
        state.log_decision(decision_record(chat.request_id, decision, text=text, key_id=chat.caller, chosen=chosen,
                                           propensity=propensity, conversation_id=conversation,
                                           expected_cost=decision["expected_costs"].get(chosen),
                                           extra={"sticky": True} if sticky else None,
                                           checkpoint=runtime.manifest_sha256), chat.knobs)
        logged = True
    return Plan(chat.request_id, candidates, decision, propensity, sticky, logged, first_choice=chosen)


def chat_conversation(chat: ChatRequest) -> str | None:
    """The chat's conversation id (``x-routecast-conversation`` or the ``user`` field), bounded."""
    user = chat.body.get("user")
    return conversation_key(conversation_header(chat.headers) or (user if isinstance(user, str) and user else None))


async def _first_model(state: ServerState, conversation: str) -> str | None:
    first = state.conversations.get(conversation)
    if first is None and state.writer is not None:
        found = await state.writer.call(state.writer.log.conversation_model, conversation)
        if found is not None:
            first = found[0]
            state.conversations.remember(conversation, first)
    return first


def named_model_plan(state: ServerState, requested: str, request_id: str) -> Plan:
    """The plan of a chat that names its model: that model only (404 when unknown or without a backend)."""
    runtime, proxy = state.runtime, state.proxy
    if requested not in runtime.models and requested not in state.backends:
        raise ApiError(404, f"unknown model {shown(requested)}; use 'router' (or 'auto', or 'router:POINT') to route, "
                            f"or one of: {', '.join(state.known_models())}", code="model_not_found")
    if proxy.backend_for(requested) is None:
        raise ApiError(404, f"model {requested!r} has no backend configured", code="model_not_found")
    return Plan(request_id, [requested])


def _with_cost(state: ServerState, chat: ChatRequest, plan: Plan, response: Response,
               model: str) -> tuple[Response, float | None]:
    """The JSON answer with ``usage.routecast_cost_usd`` and the realised cost of the call (a usage the
    backend reported is believed only when plausible: routecast.serving.usage)."""
    try:
        data = json.loads(response.body)
    except ValueError:  # the proxy checked it is JSON; be safe anyway
        return response, state.runtime.expected_costs.get(model)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    cost = state.call_cost(model, checked_usage(usage, chat.body, data, model=model, metrics=state.metrics,
                                                request_id=plan.request_id))
    data["usage"] = {**(usage or {}), "routecast_cost_usd": cost, "routecast_request_id": plan.request_id}
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    if cost is not None:
        headers["x-routecast-cost-usd"] = f"{cost:.6g}"
    return Response(strict_json(data).encode(), status_code=response.status_code, headers=headers,
                    media_type="application/json"), cost


def _price_stream(state: ServerState, chat: ChatRequest, plan: Plan, response: StreamingResponse, model: str) -> None:
    """Price a stream by the same rule as a JSON answer (routecast.serving.stream_usage): its usage
    chunk gets the cost; the key is charged and the log's realised cost written at its end. The
    ``x-routecast-cost-usd`` header is sent only when no usage can change it (no price for ``model``)."""
    if state.prices is None or model not in state.prices:
        expected = state.runtime.expected_costs.get(model)
        if expected is not None:
            response.headers["x-routecast-cost-usd"] = f"{expected:.6g}"

    def settle(cost: float | None) -> None:
        state.charge(chat.caller, cost)
        if plan.logged:
            state.writer.update(plan.request_id, realised_cost=cost)

    def price(usage: dict | None) -> float | None:
        return state.call_cost(model, checked_usage(usage, chat.body, {}, model=model, metrics=state.metrics,
                                                    request_id=plan.request_id))

    response.body_iterator = priced_stream(response.body_iterator, price=price,
                                           request_id=plan.request_id, keep_usage=wants_usage(chat.body),
                                           on_end=settle)


def _log_outcome(state: ServerState, plan: Plan, model: str | None, *, status: int, started: float, cost: float | None,
                 fallback: str | None) -> None:
    if not plan.logged:
        return
    fields = {"status": status, "latency_ms": (time.perf_counter() - started) * 1000.0, "realised_cost": cost,
              "fallback": fallback}
    if model is not None and model != plan.first_choice:
        fields.update(chosen=model, rank=rank_of(plan.decision["predicted_quality"], model))
    state.writer.update(plan.request_id, **fields)
