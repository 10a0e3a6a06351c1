"""``GET /health`` (liveness and readiness only: no URL, path or model detail), ``GET /v1/models``,
``GET /v1/router`` (the router's type, models and expected costs, for authenticated clients) and
``GET /metrics`` (Prometheus, per-app registry)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from routecast.serving.endpoints.common import server
from routecast.serving.state import ROUTER_ALIASES

router = APIRouter()


@router.get("/health")
async def health(request: Request):
    ready = server(request).ready
    return JSONResponse({"status": "ok" if ready else "unavailable"}, status_code=200 if ready else 503)


@router.get("/v1/models")
async def models(request: Request):
    ids = list(ROUTER_ALIASES) + server(request).known_models()
    return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "routecast"}
                                       for m in ids]}


@router.get("/v1/router")
async def router_info(request: Request):
    runtime = server(request).runtime
    described = runtime.describe()
    return {key: described[key] for key in ("router_type", "models", "expected_costs", "calibrated")}


@router.get("/metrics")
async def metrics(request: Request):
    return Response(server(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
