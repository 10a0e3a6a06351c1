"""The routing server: a FastAPI app that routes prompts and proxies OpenAI-compatible chat calls.

Endpoints
---------
``POST /v1/route``            ``{"prompt": str}`` or ``{"prompts": [str, ...]}`` plus at most one of
                              ``lam`` / ``budget`` / ``strong_share`` / ``target_quality``;
                              returns ``{"decisions": [...]}``. Unknown fields are rejected (422).
``POST /v1/chat/completions`` OpenAI-compatible. ``"model": "router"`` (or ``"auto"``) routes on the
                              conversation, any other known model name bypasses routing. The request
                              is forwarded unchanged except for ``model`` (OpenAI's extra fields pass
                              through); SSE streams are passed through. Routing knobs go in an
                              optional ``"routecast": {"lam": ...}`` object, removed before forwarding.
``GET /v1/models``, ``GET /health``, ``GET /metrics`` (Prometheus, per-app registry).

What the router reads in a chat: the LAST user message first, then the earlier messages, most
recent first, until ``route_context_chars`` characters (the system prompt is not used). The last
user message comes first because encoders cut long inputs from the end, and the router was
trained on single prompts.

Failures of a backend (connection refused, timeout, HTTP 5xx or 429, a body that is not a chat
completion) move the request to the next model in the router's ranking (utility
``quality - lam * cost``); the response carries ``x-routecast-model`` and
``x-routecast-fallback: a->b``. After the last candidate: 502, or 504 when it timed out. A backend's
4xx (the client's fault) is returned as is, with no fallback. A request naming a model explicitly
gets no fallback.

Concurrent routing requests (``/v1/route`` and routed chats) are merged into one router call by
:class:`routecast.serving.microbatch.MicroBatcher` unless ``micro_batch=False``; decisions are the
same as unbatched (requests whose budget would depend on their batch-mates are routed alone).

Limits and client errors (OpenAI-style ``{"error": {"message", "type", "code"}}`` bodies): a body
over ``max_body_bytes`` -> 413; more than ``max_prompts`` prompts -> 413; a body that is not JSON ->
400; a JSON body of the wrong shape, unknown fields on /v1/route or in ``routecast``, or an
impossible routing knob -> 422; an unknown model name -> 404; no backend configured -> 503.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import Any

import anyio
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, ValidationError

from routecast.errors import RoutecastError
from routecast.serving.backends import Backend, load_backends
from routecast.serving.metrics import ServerMetrics
from routecast.serving.microbatch import MicroBatcher

ROUTER_ALIASES = ("router", "auto")
#: how uvicorn runs the app (``routecast serve`` and the tests' servers): the C HTTP parser (1.3x the
#: requests/s of h11 on 2 cores: 1,158-1,262 vs 910-967 in one run) on the standard asyncio loop
#: (see pyproject.toml on uvloop)
UVICORN_OPTIONS = {"http": "httptools", "loop": "asyncio"}
DEFAULT_BACKEND_KEY = "*"


@dataclass(frozen=True)
class ServerSettings:
    """Limits and defaults of one server."""

    #: requests with a larger body are refused with 413
    max_body_bytes: int = 1_000_000
    #: most prompts one /v1/route call may carry (413 above)
    max_prompts: int = 256
    #: characters of conversation the router reads for a chat request
    route_context_chars: int = 2000
    #: willingness to pay used when a request gives no lam/budget/strong_share/target_quality
    default_lam: float | None = None
    #: merge concurrent routing requests into one router call (routecast.serving.microbatch)
    micro_batch: bool = True
    #: most prompts in one merged router call
    max_batch: int = 64
    #: how long the batcher waits for more requests once one is queued (0: only what is already queued)
    batch_wait_ms: float = 0.0

    @classmethod
    def from_any(cls, value: "ServerSettings | dict | None") -> "ServerSettings":
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            from routecast.errors import ConfigError

            raise ConfigError(f"unknown server setting(s) {unknown}; known: {sorted(known)}")
        return replace(cls(), **value)


class RouteKnobs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lam: float | None = None
    budget: float | None = None
    strong_share: float | None = None
    target_quality: float | None = None


class RouteRequest(RouteKnobs):
    prompt: str | None = None
    prompts: list[str] | None = None


class ApiError(Exception):
    """An error answered as OpenAI-style JSON ``{"error": {"message", "type", "code"}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, headers: dict[str, str] | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type, code
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "code": self.code, **self.extra}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class _BackendFailure(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


# ---------------------------------------------------------------------------- helpers
async def _read_json_body(request: Request, limit: int) -> Any:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"request body of {length} bytes exceeds the limit of {limit} bytes",
                       code="body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes", code="body_too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None


def _validation_error(exc: ValidationError) -> ApiError:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
    return ApiError(422, f"invalid request: {problems}", code="invalid_request")


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


def _fallback_header(chain: list[str]) -> dict[str, str]:
    return {"x-routecast-fallback": "->".join(chain)} if len(chain) > 1 else {}


# ---------------------------------------------------------------------------- app
def create_app(checkpoint_path: str | os.PathLike, *, backends_config: str | os.PathLike | dict | None = None,
               settings: ServerSettings | dict | None = None) -> FastAPI:
    """Build the server. The checkpoint is verified and loaded when the app starts (lifespan),
    the backends file is validated now so a typo fails before the port is bound."""
    settings = ServerSettings.from_any(settings)
    backends: dict[str, Backend] = load_backends(backends_config)
    metrics = ServerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from routecast.serving.runtime import load

        runtime = await anyio.to_thread.run_sync(load, checkpoint_path)
        app.state.runtime = runtime
        app.state.batcher = None
        if settings.micro_batch:
            app.state.batcher = MicroBatcher(runtime.route, calibrated=runtime.describe()["calibrated"],
                                             max_batch=settings.max_batch, max_wait_ms=settings.batch_wait_ms,
                                             on_batch=metrics.batch_prompts.observe).start()
        app.state.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=256,
                                                                 max_keepalive_connections=64))
        try:
            yield
        finally:
            if app.state.batcher is not None:
                await app.state.batcher.aclose()
            await app.state.client.aclose()

    app = FastAPI(title="routecast", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.backends = backends
    app.state.metrics = metrics

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return exc.response()

    app.add_middleware(_ObserveMiddleware, metrics=metrics)

    def backend_for(model: str) -> Backend | None:
        return backends.get(model) or backends.get(DEFAULT_BACKEND_KEY)

    async def route_texts(app_state, texts: list[str], knobs: RouteKnobs) -> list[dict]:
        kwargs = knobs.model_dump()
        if all(v is None for v in kwargs.values()) and settings.default_lam is not None:
            kwargs["lam"] = settings.default_lam
        start = time.perf_counter()
        try:
            batcher = app_state.batcher
            if batcher is not None and len(texts) <= settings.max_batch:
                decisions = await batcher.submit(texts, **kwargs)
            else:
                decisions = await anyio.to_thread.run_sync(partial(app_state.runtime.route, texts, **kwargs))
                metrics.batch_prompts.observe(len(texts))
        except RoutecastError as exc:
            raise ApiError(422, str(exc), code="routing_error") from None
        metrics.route_latency.observe(time.perf_counter() - start)
        return decisions

    # ------------------------------------------------------------------ route
    @app.post("/v1/route")
    async def route(request: Request):
        body = await _read_json_body(request, settings.max_body_bytes)
        if not isinstance(body, dict):
            raise ApiError(422, 'expected a JSON object like {"prompt": "..."} or {"prompts": [...]}',
                           code="invalid_request")
        try:
            req = RouteRequest.model_validate(body)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        if (req.prompt is None) == (req.prompts is None):
            raise ApiError(422, "give exactly one of 'prompt' (a string) or 'prompts' (a list of strings)",
                           code="invalid_request")
        texts = [req.prompt] if req.prompt is not None else req.prompts
        if len(texts) > settings.max_prompts:
            raise ApiError(413, f"{len(texts)} prompts in one request; the limit is {settings.max_prompts}",
                           code="too_many_prompts")
        knobs = RouteKnobs(**req.model_dump(include={"lam", "budget", "strong_share", "target_quality"}))
        decisions = await route_texts(request.app.state, texts, knobs)
        for d in decisions:
            metrics.decisions.labels(d["model"]).inc()
        # a JSONResponse directly: FastAPI's jsonable_encoder walk of every nested dict cost more than routing
        return JSONResponse({"router_type": request.app.state.runtime.router_type, "decisions": decisions})

    # ------------------------------------------------------------------ chat
    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        runtime = request.app.state.runtime
        body = await _read_json_body(request, settings.max_body_bytes)
        if not isinstance(body, dict):
            raise ApiError(422, "expected a JSON object (an OpenAI chat completion request)", code="invalid_request")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise ApiError(422, "'messages' must be a non-empty list of message objects", code="invalid_request")
        requested = body.get("model", "router")
        if not isinstance(requested, str):
            raise ApiError(422, "'model' must be a string", code="invalid_request")
        knobs_raw = body.pop("routecast", None) or {}
        try:
            knobs = RouteKnobs.model_validate(knobs_raw)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        stream = bool(body.get("stream", False))

        decision = None
        if requested in ROUTER_ALIASES:
            text = conversation_text(messages, settings.route_context_chars)
            if not text:
                raise ApiError(422, "the conversation has no text to route on", code="invalid_request")
            decision = (await route_texts(request.app.state, [text], knobs))[0]
            candidates = [m for m in decision["ranking"] if backend_for(m) is not None]
            if not candidates:
                raise ApiError(503, f"no backend is configured for any of the router's models "
                                    f"({', '.join(runtime.models)}); pass --backends", type="server_error",
                               code="no_backend")
        else:
            if requested not in runtime.models and requested not in backends:
                raise ApiError(404, f"unknown model {requested!r}; use 'router' (or 'auto') to route, or one of: "
                                    f"{', '.join(_known_models(runtime, backends))}", code="model_not_found")
            if backend_for(requested) is None:
                raise ApiError(404, f"model {requested!r} has no backend configured", code="model_not_found")
            candidates = [requested]

        client: httpx.AsyncClient = request.app.state.client
        chain: list[str] = []
        attempts: list[dict[str, str]] = []
        last_kind = None
        for model in candidates:
            backend = backend_for(model)
            if chain:
                metrics.fallbacks.labels(chain[-1], model).inc()
            chain.append(model)
            payload = {**body, "model": backend.upstream_model or model}
            headers = {"x-routecast-model": model, **_fallback_header(chain)}
            try:
                if stream:
                    response = await _forward_stream(client, backend, payload, headers)
                else:
                    response = await _forward(client, backend, payload, headers)
            except _BackendFailure as failure:
                metrics.backend_errors.labels(model, failure.kind).inc()
                attempts.append({"model": model, "error": failure.kind, "detail": failure.detail})
                last_kind = failure.kind
                continue
            if response.status_code < 400:
                metrics.decisions.labels(model).inc()
            return response
        status = 504 if last_kind == "timeout" else 502
        raise ApiError(status, f"every candidate backend failed ({'; '.join(a['model'] + ': ' + a['detail'] for a in attempts)})",
                       type="backend_error", code="backend_timeout" if status == 504 else "backend_unavailable",
                       headers={"x-routecast-model": chain[-1], **_fallback_header(chain)},
                       extra={"attempts": attempts})

    # ------------------------------------------------------------------ info
    @app.get("/v1/models")
    async def models(request: Request):
        runtime = request.app.state.runtime
        ids = list(ROUTER_ALIASES) + _known_models(runtime, backends)
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "routecast"}
                                           for m in ids]}

    @app.get("/health")
    async def health(request: Request):
        runtime = request.app.state.runtime
        return {"status": "ok", **runtime.describe(),
                "backends": {m: (backend_for(m).base_url if backend_for(m) else None) for m in runtime.models}}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


_ENDPOINTS = {"/v1/route", "/v1/chat/completions", "/v1/models", "/health", "/metrics"}


class _ObserveMiddleware:
    """Counts requests by endpoint and status and times them to the last byte (streams included).
    Plain ASGI rather than BaseHTTPMiddleware: no extra task or body buffering per request."""

    def __init__(self, app, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        path = scope.get("path", "")
        endpoint = path if path in _ENDPOINTS else "other"
        status = {"code": 500}

        async def observed_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.metrics.requests.labels(endpoint, str(status["code"])).inc()
                self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

        await self.app(scope, receive, observed_send)


def _known_models(runtime, backends: dict[str, Backend]) -> list[str]:
    extra = [m for m in backends if m not in runtime.models and m != DEFAULT_BACKEND_KEY]
    return list(runtime.models) + extra


#: what a failing backend call may raise. Beyond httpx's own errors: when a backend dies mid-request,
#: httpcore/anyio can surface the closed socket as AttributeError ('NoneType' object has no attribute
#: 'getpeername', seen under uvloop in tests/reliability/test_load.py) or OSError; any of them means
#: "this backend failed", which must become a fallback, never a 500.
_BACKEND_ERRORS = (httpx.HTTPError, OSError, AttributeError, RuntimeError, ValueError)


def _classify(exc: Exception) -> _BackendFailure:
    if isinstance(exc, httpx.TimeoutException):
        return _BackendFailure("timeout", f"timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return _BackendFailure("connect", f"connection failed ({exc})")
    return _BackendFailure("transport", f"{type(exc).__name__}: {exc}")


async def _forward(client: httpx.AsyncClient, backend: Backend, payload: dict, headers: dict) -> Response:
    try:
        resp = await client.post(backend.chat_url, json=payload, headers=backend.headers(),
                                 timeout=httpx.Timeout(backend.timeout))
    except _BACKEND_ERRORS as exc:
        raise _classify(exc) from None
    if resp.status_code >= 500 or resp.status_code == 429:
        raise _BackendFailure("status", f"HTTP {resp.status_code}")
    try:
        data = resp.json()
    except (ValueError, UnicodeDecodeError):
        if resp.status_code >= 400:
            return Response(resp.content, status_code=resp.status_code, headers=headers,
                            media_type=resp.headers.get("content-type"))
        raise _BackendFailure("malformed", "response body is not JSON") from None
    if resp.status_code >= 400:  # the client's fault: pass it on, no fallback
        return JSONResponse(data, status_code=resp.status_code, headers=headers)
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise _BackendFailure("malformed", "response is not a chat completion (no 'choices')")
    return JSONResponse(data, status_code=resp.status_code, headers=headers)


_SSE_STARTS = (b"data:", b":", b"event:", b"id:", b"retry:")


async def _forward_stream(client: httpx.AsyncClient, backend: Backend, payload: dict,
                          headers: dict) -> Response:
    """Open the backend stream and read its first chunk before committing: a backend that fails
    before sending anything can still be replaced by the next model; once bytes flow, they are
    passed through as they come."""
    request = client.build_request("POST", backend.chat_url, json=payload, headers=backend.headers(),
                                   timeout=httpx.Timeout(backend.timeout))
    try:
        resp = await client.send(request, stream=True)
    except _BACKEND_ERRORS as exc:
        raise _classify(exc) from None
    try:
        if resp.status_code >= 500 or resp.status_code == 429:
            raise _BackendFailure("status", f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            content = await resp.aread()
            return Response(content, status_code=resp.status_code, headers=headers,
                            media_type=resp.headers.get("content-type"))
        chunks = resp.aiter_raw()
        try:
            first = await chunks.__anext__()
        except StopAsyncIteration:
            raise _BackendFailure("malformed", "empty stream") from None
        except _BACKEND_ERRORS as exc:
            raise _classify(exc) from None
        if not first.lstrip().startswith(_SSE_STARTS):
            raise _BackendFailure("malformed", "stream is not server-sent events")
    except BaseException:
        await resp.aclose()
        raise

    async def body():
        try:
            yield first
            async for chunk in chunks:
                yield chunk
        except _BACKEND_ERRORS as exc:
            error = {"error": {"message": f"backend stream broke: {type(exc).__name__}", "type": "backend_error"}}
            yield f"data: {json.dumps(error)}\n\n".encode()
        finally:
            await resp.aclose()

    return StreamingResponse(body(), status_code=resp.status_code, headers=headers,
                             media_type="text/event-stream")
