"""``POST /v1/chat/completions`` when the server runs a cascade router checkpoint.

``"model": "router"`` (or ``auto``, or ``router:POINT`` for a named operating point of the cascade)
runs cascade routing (:class:`routecast.cascade.cascade_router.CascadeRouter`): the cascade picks
the first model from its ex-ante predictions, the server calls it, the answer is scored (answer
scorer, agreement with earlier answers, format), the posterior is updated and the cascade either
stops or names the next model - until it stops or ``max_calls`` models have answered. The answer
returned is the one with the highest posterior quality, which may be an earlier one than the last.
When the plan calls a set of models together (the ``sets`` look-ahead,
routecast.cascade.set_actions: "call two cheap models, then the strong one only if they disagree"),
their calls do not depend on each other and are sent at once (asyncio); each is paid for and
recorded, and the cascade decides again when all have answered.
Knobs (``lam``, ``budget``, ``strong_share``, ``target_quality``, ``operating_point``) come from the
same places as for a router (routecast.serving.knobs) and map to a lam through the cascade's
validation curve. A named model (``"model": "gpt-4o"``) bypasses the cascade as it bypasses a router.

What streams (``"stream": true``)
---------------------------------
* Calls the cascade may follow with another call are made with ``stream: false`` (their answer
  must be read whole to be scored) and are never relayed as they arrive.
* A call known before it is made to be the last - it brings the calls to ``max_calls`` (or uses up
  the pool) - is made with ``stream: true`` and its backend stream is relayed as it arrives
  (``x-routecast-cascade-stream: backend``). Its answer is then the one returned, even if the
  posterior would have preferred an earlier answer: a stream cannot be taken back. (Whether the
  planner stops after a call depends on the answer, so no other call is known to be the last.)
* Otherwise the chosen answer, once chosen, is sent as server-sent events: one chunk with the
  whole content, one with the finish reason, a usage chunk when ``stream_options.include_usage``
  asks for one, then ``[DONE]`` (``x-routecast-cascade-stream: replay``).

Costs and accounting
--------------------
Every call is paid for, not only the one returned: each call costs its token usage priced by the
price table when one is configured and the usage is plausible (routecast.serving.usage), else the
cascade's expected cost of that model - a relayed stream too, from its usage chunk
(routecast.serving.stream_usage), which then carries the sum and is charged when the stream ends;
``x-routecast-cost-usd`` is left out of such a stream's head, as it is not known yet.
``usage.routecast_cost_usd``, ``x-routecast-cost-usd``, the per-key spend budget and the decision
log's ``realised_cost`` all get the sum over the calls.

Transparency (the router path's header names, plus the cascade's own)
--------------------------------------------------------------------
``x-routecast-request-id``; ``-model`` (whose answer is returned); ``-rank``,
``-predicted-quality``, ``-expected-cost`` of that model ex ante; ``-lam``, ``-operating-point``,
``-propensity`` (1: a cascade does not explore); ``-cost-usd`` (all calls); ``-fallback`` (the
proxy's chain when the first call went to another model). Cascade headers: ``-cascade-calls``
(models called, in order), ``-cascade-call-costs`` and ``-cascade-call-latency-ms`` (one value per
call, same order), ``-cascade-posterior`` (posterior quality of the returned answer; absent when
the last call streamed), ``-cascade-stream`` and ``-cascade-fallback``. A JSON answer is the chosen
call's completion with ``usage`` extended by ``routecast_cost_usd``, ``routecast_request_id`` and
``routecast_cascade`` (calls with model, cost, latency and status; chosen model; posterior; lam).

Failures
--------
The first call, before any answer exists, falls back exactly as the router path does: the proxy
tries the pool's other models in ex-ante order when the failure certainly produced no answer
(routecast.serving.proxy), and the cascade goes on from whichever model answered. A later call
that fails (any status, timeout, open breaker, a backend refusing the request) ends the cascade
with the best answer so far, said in ``x-routecast-cascade-fallback: best-so-far; MODEL failed:
CODE``; its cost is not charged (it produced nothing). An answer that cannot be scored (text that
is not valid Unicode, e.g. a lone surrogate ``"\\ud800"``) is the backend's fault: it is charged,
logged and counted (``routecast_backend_errors_total{kind="bad_answer"}``); the first call's is a
502 naming the model, a later call's ends the cascade with the best answer so far. Streams, auth, rate and body limits apply
unchanged (they run before this module).

Decision log: one row per request. ``chosen`` is the returned answer's model, ``predicted`` the
ex-ante predictions, ``realised_cost`` the cost of all calls, and ``extra.cascade`` the calls in
order (model, cost, latency, status), the posterior and any failure - so feedback joins to the
returned answer and off-policy work can read every call.
"""

from __future__ import annotations

import asyncio
import json
import time
from functools import partial
from typing import Any

import anyio
from fastapi.responses import Response, StreamingResponse

from routecast.data.chat_text import message_text
from routecast.errors import RoutecastError
from routecast.serving.api_error import ApiError
from routecast.serving.chat_request import decision_headers, reported_fallback
from routecast.serving.decision_writer import decision_record
from routecast.serving.stream_usage import ask_for_usage, priced_stream, wants_usage
from routecast.serving.usage import checked_usage, strict_json


async def cascade_chat(state, body: dict, knobs, caller: str, request_id: str, started: float, *,
                       stream: bool, text: str) -> Response:
    """Answer one routed chat with the cascade (``text``: its routing text; see the module doc)."""
    runtime, proxy = state.runtime, state.proxy
    n = body.get("n", 1)
    if n != 1:
        raise ApiError(400, f"'n' must be 1 with a cascade (it scores one answer per call), got {n!r}",
                       code="invalid_request")
    kwargs = state.knob_kwargs(knobs)
    point = kwargs.get("operating_point") or (runtime.cascade.default_operating_point()
                                              if all(v is None for v in kwargs.values()) else None)
    cs = await _step(runtime.start, text, **kwargs)
    ranking = runtime.ranking(cs)
    models = await _step(runtime.next_models, cs) or ranking[:1]
    calls: list[dict[str, Any]] = []
    completions: dict[str, dict] = {}
    fallback_chain = failure = None
    streamed: Response | None = None
    while models:
        if len(models) > 1:  # the plan's set: calls that do not depend on each other, sent at once
            answers, failure, chain = await _parallel_step(state, cs, body, models, ranking, calls, completions,
                                                           caller, request_id, text, started, point)
            fallback_chain = fallback_chain or chain
            nxt = await _step(runtime.observe_and_next, cs, answers)
            if failure is not None:
                break
            models = nxt
            continue
        model = models[0]
        last = stream and runtime.is_last_call(cs, model)
        first = not cs.order
        candidates = [model] + ([m for m in ranking if m != model] if first else [])
        candidates = [m for m in candidates if proxy.backend_for(m) is not None]
        if not candidates:
            if first:
                raise ApiError(503, f"no backend is configured for any of the cascade's models "
                                    f"({', '.join(runtime.models)}); the server needs a backends config",
                               type="server_error", code="no_backend", headers={"x-routecast-request-id": request_id})
            failure = f"{model} failed: no_backend"
            break
        payload = {**body, "stream": last}
        if not last:
            payload.pop("stream_options", None)  # OpenAI refuses stream_options without stream
        elif state.prices is not None:
            payload = ask_for_usage(payload)  # the streamed call is priced from its usage chunk, as a JSON one
        t0 = time.perf_counter()
        try:
            response, answered = await proxy.complete(payload, candidates, stream=last, metrics=state.metrics)
        except ApiError as exc:
            calls.append(_call(model, exc.status, None, t0, error=exc.code))
            if first:  # nothing to fall back on: the router path's error, with the cascade's headers
                exc.headers = {**exc.headers, **_headers(state, cs, request_id, None, calls, None, point=point)}
                _log(state, cs, text, caller, request_id, model, calls, started, status=exc.status, failure=None,
                     fallback=exc.headers.get("x-routecast-fallback"), point=point)
                raise
            failure = f"{model} failed: {exc.code}"
            break
        if first and answered != model:  # the proxy's chain, led by the model decided when it has no backend
            fallback_chain = reported_fallback(model, answered, response.headers.get("x-routecast-fallback"))
        if response.status_code >= 400:  # the backend refused the request (routecast's own message)
            calls.append(_call(answered, response.status_code, None, t0, error="backend_rejected"))
            if first:
                for name, value in _headers(state, cs, request_id, None, calls, None, point=point).items():
                    response.headers[name] = value
                _log(state, cs, text, caller, request_id, answered, calls, started, status=response.status_code,
                     failure=None, fallback=fallback_chain, point=point)
                return response
            failure = f"{answered} failed: HTTP {response.status_code}"
            break
        if last:  # priced when its stream ends if the price table can price its usage (cost None until then)
            priced_later = response.status_code < 400 and state.prices is not None and answered in state.prices
            calls.append(_call(answered, response.status_code,
                               None if priced_later else runtime.expected_costs.get(answered), t0))
            streamed = response
            break
        data, answer, problem = _read_answer(state, payload, response, answered, t0, calls, request_id)
        if problem is not None:  # the backend's fault, not the client's: charged, logged, never scored
            failure = f"{answered} failed: bad_answer"
            if first:
                state.limits.charge(caller, _total(calls))
                headers = _headers(state, cs, request_id, None, calls, None, point=point, fallback=fallback_chain)
                _log(state, cs, text, caller, request_id, answered, calls, started, status=502, failure=failure,
                     fallback=fallback_chain, point=point)
                raise ApiError(502, f"the backend for model {answered!r} answered with text that {problem}; "
                                    "the call is charged, its answer not relayed", type="backend_error",
                               code="bad_backend_answer", headers=headers)
            break
        completions[answered] = data
        models = await _step(runtime.observe_and_next, cs, [(answered, answer)])

    total = _total(calls)
    state.limits.charge(caller, total)
    if streamed is not None:
        chosen, posterior = calls[-1]["model"], None
        headers = _headers(state, cs, request_id, chosen, calls, None, point=point, stream_kind="backend",
                           failure=failure, fallback=fallback_chain)
        pending = calls[-1]["cost_usd"] is None
        if pending:  # not known when the head is sent: the usage chunk says it
            headers.pop("x-routecast-cost-usd", None)
        response = streamed
        for name, value in headers.items():
            response.headers[name] = value
        _price_streamed_call(state, response, calls, caller, request_id, body, pending=pending)
    else:
        out = await _step(runtime.outcome, cs)
        chosen, posterior = out.model, out.posterior
        data = completions[chosen]
        headers = _headers(state, cs, request_id, chosen, calls, posterior.get(chosen), point=point,
                           stream_kind="replay" if stream else None, failure=failure, fallback=fallback_chain)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        usage = {**usage, "routecast_cost_usd": total, "routecast_request_id": request_id,
                 "routecast_cascade": {"calls": calls, "chosen": chosen, "posterior": posterior, "lam": cs.lam,
                                       "fallback": failure}}
        if stream:
            response = StreamingResponse(iter(_sse_chunks(data, usage, body)), media_type="text/event-stream",
                                         headers=headers)
        else:
            response = Response(strict_json({**data, "usage": usage}).encode(), media_type="application/json",
                                headers=headers)
    state.metrics.decisions.labels(chosen).inc()
    _log(state, cs, text, caller, request_id, chosen, calls, started, status=response.status_code, failure=failure,
         fallback=fallback_chain, posterior=posterior, point=point)
    return response


async def _step(fn, *args, **kwargs):
    """One cascade step (CPU-bound: router head, answer scorer, embeddings) off the event loop."""
    try:
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))
    except RoutecastError as exc:
        raise ApiError(400, str(exc), code="routing_error") from None
    except (UnicodeError, ValueError, TypeError) as exc:  # a prompt or answer the encoder cannot take
        raise ApiError(400, f"a prompt or answer could not be encoded ({type(exc).__name__})",
                       code="unroutable_prompt") from None


def _read_answer(state, payload: dict, response, answered: str, t0: float, calls: list[dict],
                 request_id: str) -> tuple[dict, str, str | None]:
    """A whole (JSON) answer: priced and recorded in ``calls`` (every call is paid for), its text,
    and why it cannot be scored or None (then the call's record says ``bad_answer``)."""
    data = json.loads(response.body)
    cost = state.call_cost(answered, checked_usage(data.get("usage"), payload, data, model=answered,
                                                   metrics=state.metrics, request_id=request_id))
    calls.append(_call(answered, response.status_code, cost, t0))
    choices = data.get("choices") or [{}]
    answer = message_text(choices[0].get("message") if isinstance(choices[0], dict) else None)
    problem = _unscorable(answer)
    if problem is not None:
        calls[-1]["error"] = "bad_answer"
        state.metrics.backend_errors.labels(answered, "bad_answer").inc()
    return data, answer, problem


async def _parallel_step(state, cs, body: dict, models: list[str], ranking: list[str], calls: list[dict],
                         completions: dict, caller: str, request_id: str, text: str, started: float,
                         point: str | None) -> tuple[list[tuple[str, str]], str | None, str | None]:
    """Send the plan's set ``models`` at once (asyncio): no call waits for another, every call is
    paid for and recorded in ``calls`` (plan order) and its completion kept. Returns (the answers
    to observe, the first failure or None, the proxy's fallback chain of the first step or None).

    A failed member ends the cascade after this step with the best answer so far, as a failed later
    call does. On the first step (no answer yet) the set's first member falls back down the
    ex-ante ranking (other members excluded) as the router path does; when no member answers at
    all the first failure is the request's error, as for a single first call."""
    proxy, first = state.proxy, not cs.order
    payload = {**body, "stream": False}
    payload.pop("stream_options", None)  # OpenAI refuses stream_options without stream
    chains = [[m] + ([r for r in ranking if r not in models] if first and i == 0 else [])
              for i, m in enumerate(models)]
    chains = [[m for m in chain if proxy.backend_for(m) is not None] for chain in chains]

    async def one(model: str, chain: list[str]):
        t0 = time.perf_counter()
        if not chain:
            return model, None, t0, ApiError(503, f"no backend is configured for model {model!r}", code="no_backend")
        try:
            response, answered = await proxy.complete(payload, chain, stream=False, metrics=state.metrics)
        except ApiError as exc:
            return model, None, t0, exc
        return answered, response, t0, None

    results = await asyncio.gather(*(one(m, c) for m, c in zip(models, chains)))
    answers, failures, errors, chain_seen = [], [], [], None
    for i, (answered, response, t0, exc) in enumerate(results):
        if exc is not None:
            calls.append(_call(answered, exc.status, None, t0, error=exc.code))
            failures.append(f"{answered} failed: {exc.code}")
            errors.append(exc)
            continue
        if first and i == 0 and answered != models[0]:
            chain_seen = reported_fallback(models[0], answered, response.headers.get("x-routecast-fallback"))
        if response.status_code >= 400:  # the backend refused the request (routecast's own message)
            calls.append(_call(answered, response.status_code, None, t0, error="backend_rejected"))
            failures.append(f"{answered} failed: HTTP {response.status_code}")
            continue
        data, answer, problem = _read_answer(state, payload, response, answered, t0, calls, request_id)
        if problem is not None:
            failures.append(f"{answered} failed: bad_answer")
            continue
        completions[answered] = data
        answers.append((answered, answer))
    if first and not answers:  # nothing answered: the first call's error, with the cascade's headers
        state.limits.charge(caller, _total(calls))
        exc = errors[0] if errors else ApiError(502, f"no model of the planned set answered ({'; '.join(failures)})",
                                                type="backend_error", code="backend_unavailable")
        exc.headers = {**exc.headers, **_headers(state, cs, request_id, None, calls, None, point=point)}
        _log(state, cs, text, caller, request_id, models[0], calls, started, status=exc.status,
             failure="; ".join(failures), fallback=chain_seen, point=point)
        raise exc
    return answers, (failures[0] if failures else None), chain_seen


def _unscorable(answer: str) -> str | None:
    """Why an answer cannot be scored (the scorer encodes it as UTF-8), or None. Checked before the
    cascade observes it: a failed observe would leave the cascade's state half-updated."""
    try:
        answer.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode (a lone surrogate at character {exc.start})"
    return None


def _call(model: str, status: int, cost: float | None, t0: float, *, error: str | None = None) -> dict[str, Any]:
    return {"model": model, "status": status, "cost_usd": cost, "latency_ms": (time.perf_counter() - t0) * 1000.0,
            "error": error}


def _total(calls: list[dict]) -> float | None:
    costs = [c["cost_usd"] for c in calls if c["cost_usd"] is not None]
    return float(sum(costs)) if costs else None


def _headers(state, cs, request_id: str, chosen: str | None, calls: list[dict], posterior: float | None, *,
             point: str | None = None, stream_kind: str | None = None, failure: str | None = None,
             fallback: str | None = None) -> dict[str, str]:
    """The decision's headers (the one builder, as for a router) plus the cascade's own."""
    out = decision_headers(request_id, model=chosen, predicted=cs.prior if chosen is not None else None, lam=cs.lam,
                           expected_cost=None if chosen is None else state.runtime.expected_costs.get(chosen),
                           operating_point=point, propensity=1.0)
    out.update({"x-routecast-cascade-calls": ",".join(c["model"] for c in calls),
                "x-routecast-cascade-call-costs": ",".join("" if c["cost_usd"] is None else f"{c['cost_usd']:.6g}"
                                                           for c in calls),
                "x-routecast-cascade-call-latency-ms": ",".join(f"{c['latency_ms']:.1f}" for c in calls)})
    if chosen is not None:
        out["x-routecast-model"] = chosen
    total = _total(calls)
    if total is not None and chosen is not None:
        out["x-routecast-cost-usd"] = f"{total:.6g}"
    if posterior is not None:
        out["x-routecast-cascade-posterior"] = f"{posterior:.6g}"
    if stream_kind is not None:
        out["x-routecast-cascade-stream"] = stream_kind
    if failure is not None:
        out["x-routecast-cascade-fallback"] = f"best-so-far; {failure}"
    if fallback:
        out["x-routecast-fallback"] = fallback
    return out


def _price_streamed_call(state, response, calls: list[dict], caller: str, request_id: str, body: dict, *,
                        pending: bool) -> None:
    """The relayed last call's usage chunk gets the request's total cost (routecast.serving.stream_usage);
    a ``pending`` call (priced from that usage) is charged, and the log's total written, when it ends."""
    earlier, model = _total(calls[:-1]) or 0.0, calls[-1]["model"]

    def price(usage):
        cost = (state.call_cost(model, checked_usage(usage, body, {}, model=model, metrics=state.metrics,
                                                     request_id=request_id))
                if pending else calls[-1]["cost_usd"])
        return None if cost is None else earlier + cost

    def settle(total):
        if pending and total is not None:
            state.limits.charge(caller, total - earlier)
            if state.writer is not None:
                state.writer.update(request_id, realised_cost=total)

    response.body_iterator = priced_stream(response.body_iterator, price=price, request_id=request_id,
                                           keep_usage=wants_usage(body), on_end=settle)


def _sse_chunks(data: dict, usage: dict, body: dict) -> list[bytes]:
    """The chosen completion as OpenAI chat.completion.chunk events (content in one chunk)."""
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    base = {"id": data.get("id", ""), "object": "chat.completion.chunk", "created": data.get("created", 0),
            "model": data.get("model", "")}
    delta = {"role": message.get("role", "assistant"), "content": message_text(message)}
    events = [{**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
              {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason", "stop")}]}]
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        events.append({**base, "choices": [], "usage": usage})
    return [f"data: {strict_json(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


def _log(state, cs, text: str, caller: str, request_id: str, chosen: str, calls: list[dict], started: float, *,
         status: int, failure: str | None, fallback: str | None, posterior: dict | None = None,
         point: str | None = None) -> None:
    """One decision-log row for the request (see the module docstring)."""
    if state.writer is None:
        return
    ranking = state.runtime.ranking(cs)
    decision = {"predicted_quality": dict(cs.prior), "ranking": [chosen] + [m for m in ranking if m != chosen],
                "lam": cs.lam, "operating_point": point}
    record = decision_record(request_id, decision, text=text, key_id=caller, chosen=chosen, propensity=1.0,
                             expected_cost=state.runtime.expected_costs.get(chosen),
                             extra={"cascade": {"calls": calls, "posterior": posterior, "failure": failure}},
                             checkpoint=state.runtime.manifest_sha256)
    record.update(realised_cost=_total(calls), latency_ms=(time.perf_counter() - started) * 1000.0, status=status,
                  fallback=fallback)
    state.log_decision(record, None)
