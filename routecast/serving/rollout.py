"""Changing what a running server routes with: hot reload of a checkpoint (``POST /admin/reload``,
SIGHUP), with the same verification as at start-up, and the end of a canary (``POST
/admin/promote`` / ``/admin/rollback``, routecast.serving.canary).

Why a swap between requests is safe: every request takes a :meth:`ServerState.pinned` copy of
the server's state when it starts, so its decision, its call plan, its costs and its decision-log
row all come from the runtime it started with; a reload replaces ``state.runtime`` and
``state.batcher`` together in one step of the event loop. The replaced batcher is retired: a
request of the old runtime still waiting in it is routed by that runtime directly
(:meth:`ServerState.route_texts`), never failed and never handed to the new one.

A candidate is verified as the start-up checkpoint was (``--trusted-key``: its manifest.sig must
verify; a server started with ``--expect-sha256`` takes a new checkpoint only with the new pin in
the request) and checked against the server (default operating point, backends for its models).
One that fails leaves the old one serving; the answer says why.

With ``--workers`` > 1 each worker holds its own runtime and an admin call reaches one of them, so
hot reload is refused there (one line) for now; restart the server instead.
"""

from __future__ import annotations

import asyncio
import os
import time
from functools import partial
from typing import Any

import anyio

from routecast.errors import RoutecastError
from routecast.serving.api_error import ApiError
from routecast.serving.backends import check_backend_models
from routecast.serving.loading import load_runtime
from routecast.serving.runtime_protocol import ServingRuntime
from routecast.serving.state import ServerState, budget_pacer

#: the changes an admin status lists, newest last (older ones are dropped)
HISTORY = 50


class Rollout:
    """The trust options a reloaded checkpoint is verified with, and the history of checkpoint
    changes of one server (``state.rollout``)."""

    def __init__(self, *, trusted_key: str | os.PathLike | None = None, expect_sha256: str | None = None,
                 workers: int = 1, allow_missing_backends: bool = False):
        self.trusted_key = trusted_key
        self.expect_sha256 = expect_sha256
        self.workers = workers
        self.allow_missing_backends = allow_missing_backends
        self.history: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()  # background work, referenced until done (asyncio keeps weak refs)

    def background(self, coroutine) -> None:
        """Run ``coroutine`` on the running loop without waiting for it (a retired batcher's close,
        a SIGHUP reload)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def record(self, event: dict[str, Any]) -> dict[str, Any]:
        self.history = (self.history + [event])[-HISTORY:]
        return event


def checkpoint_id(runtime: ServingRuntime | None) -> str | None:
    """The serving checkpoint's id: the sha256 of its manifest.json (None: built in memory)."""
    return None if runtime is None else runtime.manifest_sha256


def describe_checkpoint(runtime: ServingRuntime) -> dict[str, Any]:
    return {"id": checkpoint_id(runtime), "path": None if runtime.path is None else str(runtime.path),
            "router_type": runtime.router_type, "models": list(runtime.models)}


def status(state: ServerState) -> dict[str, Any]:
    """What ``GET /admin/status`` answers: the serving checkpoint and its recent changes."""
    rollout = state.rollout
    return {"checkpoint": describe_checkpoint(state.runtime), "workers": rollout.workers,
            "changes": list(rollout.history), "pacing": None if state.pacer is None else state.pacer.state(),
            "shadow": None if state.shadow is None else describe_checkpoint(state.shadow.runtime),
            "canary": None if state.canary is None else state.canary.describe()}


def check_candidate(state: ServerState, runtime: ServingRuntime) -> None:
    """What start-up checks of a checkpoint against the server, for a reloaded one."""
    if state.settings.default_operating_point is not None:
        runtime.operating_point(state.settings.default_operating_point)
    check_backend_models(state.backends, runtime.models, allow_missing=state.rollout.allow_missing_backends)
    budget_pacer(state.settings, runtime)  # a pacer must be buildable for it


async def reload_checkpoint(state: ServerState, checkpoint: str | os.PathLike, *, expect_sha256: str | None = None,
                            trigger: str = "admin") -> dict[str, Any]:
    """Load, verify and swap in ``checkpoint``; an :class:`ApiError` (the old one still serving) when
    it is refused. Returns the change recorded (old and new checkpoint ids)."""
    rollout = state.rollout
    _one_worker(rollout, "hot reload")
    if rollout.expect_sha256 is not None and expect_sha256 is None:
        raise ApiError(400, "this server pins its checkpoint (--expect-sha256): give the new checkpoint's "
                            "expect_sha256 with the reload", code="checkpoint_refused")
    async with rollout._lock:
        old = state.runtime
        started = time.perf_counter()
        try:
            runtime = await anyio.to_thread.run_sync(partial(
                load_runtime, os.fspath(checkpoint), trusted_key=rollout.trusted_key,
                expect_sha256=expect_sha256))
            check_candidate(state, runtime)
        except (RoutecastError, OSError) as exc:
            rollout.record({"event": "refused", "trigger": trigger, "checkpoint": os.fspath(checkpoint),
                            "serving": checkpoint_id(old), "reason": str(exc), "time": time.time()})
            raise ApiError(422, f"checkpoint {os.fspath(checkpoint)} refused, {checkpoint_id(old)} still serving: "
                                f"{exc}", code="checkpoint_refused") from None
        swap_runtime(state, runtime)
        change = rollout.record({"event": "reloaded", "trigger": trigger, "from": checkpoint_id(old),
                                 "to": checkpoint_id(runtime), "path": os.fspath(checkpoint),
                                 "load_seconds": round(time.perf_counter() - started, 4), "time": time.time()})
    return change


def _one_worker(rollout: Rollout, what: str) -> None:
    if rollout.workers > 1:
        raise ApiError(409, f"{what} needs --workers 1 (this server runs {rollout.workers} workers, each with "
                            "its own checkpoint); restart it to change the checkpoint", code="reload_unsupported")


async def end_canary(state: ServerState, *, promote: bool) -> dict[str, Any]:
    """``promote``: the canary's checkpoint serves every request from now on; else (rollback) the
    canary stops and the live checkpoint serves everything. A 409 when no canary runs."""
    rollout = state.rollout
    _one_worker(rollout, "promote" if promote else "rollback")
    async with rollout._lock:
        canary = state.canary
        if canary is None:
            raise ApiError(409, "no canary is running (serve --canary CKPT)", code="no_canary")
        old = state.runtime
        state.canary = None
        if promote:
            swap_runtime(state, canary.runtime)
        if canary.batcher is not None:
            rollout.background(canary.batcher.aclose(retire=True))
        return rollout.record({"event": "promoted" if promote else "rolled back", "trigger": "admin",
                               "from": checkpoint_id(old), "to": checkpoint_id(state.runtime),
                               "candidate": checkpoint_id(canary.runtime), "time": time.time()})


def swap_runtime(state: ServerState, runtime: ServingRuntime) -> None:
    """Serve ``runtime`` from the next request on (runtime and batcher replaced in one step; the old
    batcher retired without waiting, see the module docstring)."""
    old_batcher = state.batcher
    state.runtime, state.batcher, state.pacer = runtime, state.start_batcher(runtime), budget_pacer(state.settings, runtime)
    if old_batcher is not None:
        state.rollout.background(old_batcher.aclose(retire=True))


def on_sighup(state: ServerState) -> None:
    """SIGHUP: reload the serving checkpoint's folder (replaced in place, e.g. a symlink moved),
    verified with the server's trust options; the outcome is in ``/admin/status`` and the log."""
    import logging

    path = state.runtime.path
    log = logging.getLogger("uvicorn.error")
    if path is None:
        log.warning("SIGHUP: the serving checkpoint was built in memory; nothing to reload")
        return

    async def run() -> None:
        try:
            change = await reload_checkpoint(state, path, expect_sha256=state.rollout.expect_sha256, trigger="sighup")
            log.info("SIGHUP: reloaded %s (%s -> %s)", path, change["from"], change["to"])
        except ApiError as exc:
            log.error("SIGHUP: %s", exc.message)

    state.rollout.background(run())


def listen_for_sighup(state: ServerState) -> bool:
    """Reload on SIGHUP when this event loop runs in the main thread of a one-worker server
    (``routecast serve``); False where signals cannot be handled here (tests' threads, workers)."""
    import signal
    import threading

    if state.rollout.workers > 1 or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "SIGHUP"):
        return False
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup, state)
    return True

