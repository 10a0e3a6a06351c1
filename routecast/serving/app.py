"""The routing server: an app factory that assembles the endpoints, the gate and the proxy.

Endpoints (one small function each, in routecast/serving/endpoints/)
--------------------------------------------------------------------
``POST /v1/route``            route prompts (endpoints/route.py)
``POST /v1/chat/completions`` OpenAI-compatible proxy (endpoints/chat.py, routecast.serving.proxy)
``GET /v1/models``, ``GET /v1/router``, ``GET /metrics`` (Prometheus, per-app registry), and
``GET /health`` (liveness/readiness only) in endpoints/info.py.
``POST /admin/reload``, ``/admin/promote``, ``/admin/rollback``, ``GET /admin/status`` (admin keys
only: hot reload, canary, the serving checkpoint's id) in endpoints/admin.py (routecast.serving.rollout).

Every path but ``/health`` (and ``/metrics`` with ``public_metrics``) needs an API key when keys
are given (routecast.serving.guard.auth); ``/docs`` and ``/openapi.json`` exist only with
``docs=True``.

Errors are OpenAI-style ``{"error": {"message", "type", "code"}}`` bodies: a body that is not
strict JSON (lone surrogates, huge numbers, deep nesting, duplicate keys) or of the wrong shape or
type, an empty prompt or prompt list, an impossible routing knob -> 400; a missing or wrong key ->
401; an unknown model -> 404; a body not sent in time -> 408; a body over ``max_body_bytes`` or more
than ``max_prompts`` prompts -> 413; a per-key rate, concurrency or spend limit -> 429; a backend
that failed -> 502 (504 when it timed out; 503 when every candidate is cooling down); anything
unexpected -> 500 with the same body shape, never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import signal
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Iterable

import anyio
import httpx
from fastapi import FastAPI, Request

from routecast.errors import ConfigError
from routecast.serving.api_error import ApiError
from routecast.serving.backends import Backend, load_backends, redact
from routecast.serving.canary import Canary
from routecast.serving.conversations import ConversationMemory
from routecast.serving.endpoints import admin, chat, feedback, info, route
from routecast.serving.guard.auth import ApiKeys
from routecast.serving.guard.gate import Gate
from routecast.serving.guard.key_limits import KeyLimits
from routecast.serving.guard.key_slots import KeySlots
from routecast.serving.guard.protocol import GuardedHttpToolsProtocol, protocol_class
from routecast.serving.metrics import ServerMetrics
from routecast.serving.loading import load_runtime
from routecast.serving.proxy import ChatProxy
from routecast.serving.rollout import Rollout, listen_for_sighup
from routecast.serving.runtime_protocol import ServingRuntime
from routecast.serving.schemas import RouteKnobs, RouteRequest
from routecast.serving.server_config import ServerSettings
from routecast.serving.state import ROUTER_ALIASES, ServerState, budget_pacer
from routecast.serving.store import LimitStore, open_store
from routecast.serving.tracing import otlp_provider, tracer_of

__all__ = ["create_app", "ServerSettings", "ApiError", "UVICORN_OPTIONS", "uvicorn_options",
           "ROUTER_ALIASES", "RouteKnobs", "RouteRequest"]

#: how uvicorn runs the app (``routecast serve`` and the tests' servers): the C HTTP parser (1.3x the
#: requests/s of h11 on 2 cores) with routecast's header deadline (routecast.serving.guard.protocol),
#: on the standard asyncio loop (see pyproject.toml on uvloop)
UVICORN_OPTIONS = {"http": GuardedHttpToolsProtocol, "loop": "asyncio"}


def uvicorn_options(settings: ServerSettings | dict | None = None) -> dict[str, Any]:
    """uvicorn keyword arguments that apply ``settings``' connection limits."""
    settings = ServerSettings.from_any(settings)
    return {"http": protocol_class(settings.header_timeout_s, settings.max_header_bytes), "loop": "asyncio",
            "timeout_keep_alive": settings.keep_alive_s}


def create_app(runtime_or_path, settings: ServerSettings | dict | None = None, *,
               backends: str | os.PathLike | dict | None = None,
               backends_config: str | os.PathLike | dict | None = None,
               api_keys: "ApiKeys | str | os.PathLike | Iterable[str] | None" = None,
               decision_log: str | os.PathLike | None = None, log_text: bool = False,
               price_table: "str | os.PathLike | dict | None" = None,
               store: "LimitStore | str | None" = None,
               admin_keys: "ApiKeys | str | os.PathLike | Iterable[str] | None" = None,
               trusted_key: str | os.PathLike | None = None, expect_sha256: str | None = None,
               workers: int = 1, allow_missing_backends: bool = False,
               shadow: "str | os.PathLike | ServingRuntime | None" = None,
               canary: "str | os.PathLike | ServingRuntime | None" = None, tracer_provider: Any = None) -> FastAPI:
    """Build the server for a :class:`~routecast.serving.runtime.Runtime`, a
    :class:`~routecast.serving.cascade_runtime.CascadeRuntime` or a checkpoint folder of either
    (a cascade router checkpoint is recognised by its config.json; its chats run the cascade,
    routecast.serving.cascade_chat).

    A checkpoint is verified and loaded when the app starts (lifespan); the backends file, the
    settings and the keys are checked now, so a typo fails before the port is bound.
    ``backends_config`` is the older name of ``backends``. ``api_keys``: an :class:`ApiKeys`, a
    keys file, or an iterable of keys / ``sha256:<hex>`` entries; None serves without keys.
    ``decision_log``: a SQLite file that gets one record per routed request
    (routecast.data.decision_log; the routing text itself only with ``log_text``) and enables
    ``POST /v1/feedback``. ``price_table``: ``{model: [usd_per_mtok_in, usd_per_mtok_out]}`` (or a
    JSON/YAML file of it) that turns a backend's token usage into the realised cost.
    ``store``: where per-key rate limits and budgets live (routecast.serving.store.open_store:
    ``memory`` (default), ``sqlite:///PATH``, ``redis://HOST:PORT/DB``), shared by server processes.
    ``admin_keys`` (as ``api_keys``): keys accepted everywhere that may also give feedback on
    requests other keys made, and call the admin endpoints (routecast.serving.endpoints.admin).
    ``trusted_key``, ``expect_sha256``, ``allow_missing_backends``: how a hot-reloaded checkpoint is
    verified and checked, as at start-up; ``workers`` > 1 refuses hot reload (routecast.serving.rollout).
    ``shadow``: a candidate checkpoint (or runtime) whose decision on every routed request is logged
    beside the live one (routecast.serving.shadow; needs ``decision_log``). ``canary``: a candidate
    checkpoint (or runtime) that serves ``settings.canary_share`` of first turns (routecast.serving.canary).
    ``tracer_provider``: an OpenTelemetry tracer provider for the spans (routecast.serving.tracing);
    without one, ``settings.traces`` exports by OTLP/HTTP.
    """
    if shadow is not None and decision_log is None:
        raise ConfigError("a shadow checkpoint's decisions go to the decision log: give decision_log too")
    settings = ServerSettings.from_any(settings)
    backend_map: dict[str, Backend] = load_backends(backends if backends is not None else backends_config)
    keys, admins = _api_keys(api_keys), _api_keys(admin_keys)
    if admins is not None:  # admin keys are client keys too
        keys = admins if keys is None else keys | admins
    metrics = ServerMetrics()
    state = ServerState(settings=settings, backends=backend_map, metrics=metrics,
                        limits=KeyLimits.from_settings(settings, open_store(store)),
                        conversations=ConversationMemory(settings.sticky_conversations),
                        rollout=Rollout(trusted_key=trusted_key, expect_sha256=expect_sha256, workers=workers,
                                        allow_missing_backends=allow_missing_backends))
    if tracer_provider is None and settings.traces:
        tracer_provider = otlp_provider()  # the otel extra missing fails here, before binding
    state.tracer = tracer_of(tracer_provider)
    if price_table is not None:
        from routecast.data.costs import PriceTable

        state.prices = PriceTable.coerce(price_table)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runtime = runtime_or_path
        if isinstance(runtime_or_path, (str, os.PathLike)):
            runtime = await anyio.to_thread.run_sync(load_runtime, runtime_or_path)
        if settings.default_operating_point is not None:
            runtime.operating_point(settings.default_operating_point)  # a typo fails at start-up
        state.pacer = budget_pacer(settings, runtime)
        state.runtime = runtime
        if shadow is not None:
            from routecast.serving.shadow import Shadow

            state.shadow = Shadow(await anyio.to_thread.run_sync(partial(load_runtime, shadow, trusted_key=trusted_key)))
        if canary is not None:
            state.canary = Canary(await anyio.to_thread.run_sync(partial(load_runtime, canary, trusted_key=trusted_key)),
                                  settings.canary_share)
            state.canary.batcher = state.start_batcher(state.canary.runtime)
        if decision_log is not None:
            from routecast.data.decision_log import DecisionLog
            from routecast.serving.decision_writer import DecisionWriter

            log = await anyio.to_thread.run_sync(lambda: DecisionLog(decision_log, store_text=log_text))
            state.writer = DecisionWriter(log)
        state.batcher = state.start_batcher(runtime)
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
        state.proxy = ChatProxy(backend_map, client, max_response_bytes=settings.max_response_bytes,
                                breaker_failures=settings.breaker_failures,
                                breaker_cooldown_s=settings.breaker_cooldown_s, tracer=state.tracer)
        sighup = listen_for_sighup(state)
        try:
            yield
        finally:
            if sighup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            if state.batcher is not None:
                await state.batcher.aclose()
            if state.canary is not None and state.canary.batcher is not None:
                await state.canary.batcher.aclose()
            await client.aclose()
            if state.writer is not None:
                await anyio.to_thread.run_sync(state.writer.close)

    docs = {} if settings.docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="routecast", lifespan=lifespan, **docs)
    app.state.server = state
    app.state.admin_key_ids = frozenset() if admins is None else admins.key_ids()
    for endpoints in (route, chat, feedback, info, admin):
        app.include_router(endpoints.router)
    app.add_exception_handler(ApiError, _answer_api_error)
    public = {"/health"} | ({"/metrics"} if settings.public_metrics else set())
    if settings.docs:
        public |= {"/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"}
    app.add_middleware(Gate, metrics=metrics, keys=keys, public_paths=public, limits=state.limits,
                       slots=KeySlots(settings.max_concurrent_per_key, settings.slot_wait_s),
                       body_timeout_s=settings.body_timeout_s, redact=lambda text: redact(text, backend_map))
    return app


async def _answer_api_error(request: Request, exc: ApiError):
    return exc.response()


def _api_keys(value) -> ApiKeys | None:
    if value is None or isinstance(value, ApiKeys):
        return value
    if isinstance(value, (str, os.PathLike)):
        return ApiKeys.load(value, environ={})
    keys = ApiKeys.from_entries((f"api_keys[{i}]", key) for i, key in enumerate(value))
    return keys if len(keys) else None
