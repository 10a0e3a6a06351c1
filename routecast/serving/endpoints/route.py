"""``POST /v1/route``: ``{"prompt": str}`` or ``{"prompts": [str, ...]}`` plus at most one of
``lam`` / ``budget`` / ``strong_share`` / ``target_quality``; returns ``{"decisions": [...]}``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from routecast.serving.api_error import ApiError
from routecast.serving.endpoints.common import key_id, read_json, server
from routecast.serving.schemas import RouteKnobs, RouteRequest, check_prompts, validated

router = APIRouter()


@router.post("/v1/route")
async def route(request: Request):
    state = server(request)
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
    knobs = RouteKnobs(lam=req.lam, budget=req.budget, strong_share=req.strong_share,
                       target_quality=req.target_quality)
    decisions = await state.route_texts(texts, knobs, caller)
    for d in decisions:
        state.metrics.decisions.labels(d["model"]).inc()
    # a JSONResponse directly: FastAPI's jsonable_encoder walk of every nested dict cost more than routing
    return JSONResponse({"router_type": state.runtime.router_type, "decisions": decisions})
