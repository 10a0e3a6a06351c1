"""Admin endpoints (admin keys only, ``serve --admin-keys FILE``; any other caller gets a 403, a
server without admin keys has none): ``POST /admin/reload {"checkpoint": PATH, "expect_sha256": HEX?}``
swaps in a verified checkpoint between requests (routecast.serving.rollout) and ``GET /admin/status``
names the serving checkpoint (its id is the sha256 of its manifest), its recent changes, the
pacer, shadow and canary; ``POST /admin/promote`` makes the canary live and ``POST /admin/rollback``
ends it (routecast.serving.canary).
``/health`` stays minimal on purpose: anonymous callers learn nothing about the checkpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request

from routecast.serving.api_error import ApiError
from routecast.serving.endpoints.common import key_id, read_json, server
from routecast.serving.rollout import end_canary, reload_checkpoint, status
from routecast.serving.schemas import ReloadRequest, validated

router = APIRouter()


def require_admin(request: Request) -> None:
    if key_id(request) not in request.app.state.admin_key_ids:
        raise ApiError(403, "admin endpoints need an admin key (serve --admin-keys FILE)", type="permission_error",
                       code="not_admin")


@router.post("/admin/reload")
async def reload(request: Request):
    require_admin(request)
    req = validated(ReloadRequest, await read_json(request))
    change = await reload_checkpoint(server(request), req.checkpoint, expect_sha256=req.expect_sha256)
    return {"status": "reloaded", **change}


@router.post("/admin/promote")
async def promote(request: Request):
    require_admin(request)
    return {"status": "promoted", **(await end_canary(server(request), promote=True))}


@router.post("/admin/rollback")
async def rollback(request: Request):
    require_admin(request)
    return {"status": "rolled back", **(await end_canary(server(request), promote=False))}


@router.get("/admin/status")
async def admin_status(request: Request):
    require_admin(request)
    return status(server(request))
