"""``POST /v1/route``: ``{"prompt": str}`` or ``{"prompts": [str, ...]}`` plus at most one of
``lam`` / ``budget`` / ``strong_share`` / ``target_quality`` / ``operating_point`` (or the
``x-routecast-operating-point`` / ``-budget`` / ``-lam`` headers; unknown ``x-routecast-*`` headers
are a 400); returns ``{"request_id", "router_type", "decisions": [...]}``. Each decision has the
result shape of RouteResult.records (model, rank, predicted_quality, expected_cost, lam,
operating_point, ranking) plus its ``request_id`` (the request's id, ``-<i>`` per prompt when there
are several) and ``fallback`` (always null: nothing is proxied). A cascade's decision also lists
``first_models``: the set its plan calls first, in parallel (``model`` is the first of them). With a decision log each
decision is logged (propensity 1: /v1/route does not explore)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from routecast.serving.api_error import ApiError
from routecast.serving.decision_writer import decision_record
from routecast.serving.endpoints.chat import new_request_id
from routecast.serving.endpoints.common import key_id, read_json, server, share_id
from routecast.serving.knobs import header_knobs, merge_knobs
from routecast.serving.schemas import RouteRequest, check_prompts, validated
from routecast.serving.tracing import span

router = APIRouter()


@router.post("/v1/route")
async def route(request: Request):
    state = server(request).pinned()  # this request's runtime, whatever a reload swaps in meanwhile
    req = validated(RouteRequest, await read_json(request))
    if (req.prompt is None) == (req.prompts is None):
        raise ApiError(400, "give exactly one of 'prompt' (a string) or 'prompts' (a list of strings)",
                       code="invalid_request")
    texts = [req.prompt] if req.prompt is not None else req.prompts
    check_prompts(texts, "prompt" if req.prompt is not None else "prompts")
    if len(texts) > state.settings.max_prompts:
        raise ApiError(413, f"{len(texts)} prompts in one request; the limit is {state.settings.max_prompts}",
                       code="too_many_prompts")
    caller = key_id(request)
    state.limits.admit_prompts(caller, len(texts))
    body_knobs = req.model_dump(exclude={"prompt", "prompts"})
    knobs = merge_knobs(("headers", header_knobs(request.headers)), ("body", body_knobs))
    request_id = new_request_id()
    with span(state.tracer, "routecast.route", request_id=request_id, prompts=len(texts)):
        decisions = await state.route_texts(texts, knobs, share_id(request))
    for i, (text, d) in enumerate(zip(texts, decisions)):
        state.metrics.decisions.labels(d["model"]).inc()
        d["request_id"] = request_id if len(texts) == 1 else f"{request_id}-{i}"
        d["fallback"] = None
        if state.pacer is not None:  # nothing is proxied: the decision's expected cost is what it spends
            state.pacer.observe(d["expected_cost"])
        if state.writer is not None:
            state.log_decision(decision_record(d["request_id"], d, text=text, key_id=caller, chosen=d["model"],
                                               propensity=1.0, expected_cost=d["expected_cost"],
                                               checkpoint=state.runtime.manifest_sha256), knobs)
    # a JSONResponse directly: FastAPI's jsonable_encoder walk of every nested dict cost more than routing
    return JSONResponse({"request_id": request_id, "router_type": state.runtime.router_type, "decisions": decisions},
                        headers={"x-routecast-request-id": request_id, **state.knob_headers(knobs)})
