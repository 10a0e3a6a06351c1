"""Forwarding one chat request to OpenAI-compatible backends, with fallback only when it is safe.

Rules (why: a chat completion costs money and is not idempotent):

* Another model is tried only when the attempt *certainly produced no answer and never can*:
  the connection was refused (or the pool never got one), the backend answered 5xx/429 (its body
  is not even read), the connection closed before a single byte of the answer's head (a backend
  shutting down refuses queued requests that way), or its circuit breaker is open (nothing is
  sent). Every such move is reported: ``x-routecast-fallback`` names the chain from the first
  choice (a model skipped for its open breaker included), ``routecast_fallbacks_total`` counts
  each step and the decision log keeps the chain. A timeout (the backend may still be working on
  it and answer), an answer cut after it started, or a 200 that is not a chat completion end the
  request with a 504/502: the request is never sent to a second backend, so no request is
  answered twice.
* ``Backend.timeout`` is a total deadline for the call (connect, send, every byte; a stream until
  its end), not a per-read timeout, so a backend trickling a byte per second is cut.
* At most ``max_response_bytes`` of an answer are read (502 above; a stream is ended with an
  error event).
* A backend's 4xx is answered with routecast's own message and the backend's status: its body
  may echo the request's bearer key or internal details, so it is never relayed.
* Nothing a client sees names a backend URL: messages name the model only.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi.responses import Response, StreamingResponse

from routecast.serving.api_error import ApiError, error_body
from routecast.serving.backends import Backend
from routecast.serving.guard.breaker import CircuitBreaker
from routecast.serving.tracing import span

#: what a failing backend call may raise besides httpx's errors: when a backend dies mid-request,
#: httpcore/anyio can surface the closed socket as AttributeError or OSError (seen in
#: tests/reliability/test_load.py); each must become a classified failure, never a 500
_TRANSPORT_ERRORS = (httpx.HTTPError, OSError, AttributeError, RuntimeError, ValueError)
#: the connection was never made or never obtained: the backend cannot have seen the request
_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: the connection broke while sending the request or waiting for the first byte of the answer
_CLOSED_BEFORE_HEAD = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_SSE_STARTS = (b"data:", b":", b"event:", b"id:", b"retry:")


class BackendFailure(Exception):
    """One failed attempt. ``retryable``: nothing was produced, another model may be tried."""

    def __init__(self, kind: str, detail: str, *, retryable: bool):
        super().__init__(detail)
        self.kind, self.detail, self.retryable = kind, detail, retryable


def _classify(exc: BaseException) -> BackendFailure:
    if isinstance(exc, _NOTHING_SENT):
        return BackendFailure("connect", "connection failed", retryable=True)
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return BackendFailure("timeout", "timed out", retryable=False)
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return BackendFailure("disconnected", "connection closed before a complete answer", retryable=False)
    return BackendFailure("transport", f"transport error ({type(exc).__name__})", retryable=False)


@dataclass
class ChatProxy:
    """The backends of one app, their breakers (keyed by endpoint: models sharing a server share
    its breaker) and the HTTP client."""

    backends: dict[str, Backend]
    client: httpx.AsyncClient
    max_response_bytes: int = 10_000_000
    breaker_failures: int = 3
    breaker_cooldown_s: float = 30.0
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    default_key: str = "*"
    #: OpenTelemetry tracer of the backend calls (routecast.serving.tracing), None: off
    tracer: Any = None

    def backend_for(self, model: str) -> Backend | None:
        return self.backends.get(model) or self.backends.get(self.default_key)

    def breaker_for(self, backend: Backend) -> CircuitBreaker:
        breaker = self.breakers.get(backend.chat_url)
        if breaker is None:
            breaker = self.breakers[backend.chat_url] = CircuitBreaker(self.breaker_failures,
                                                                       self.breaker_cooldown_s)
        return breaker

    async def complete(self, body: dict, candidates: list[str], *, stream: bool, metrics) -> tuple[Response, str]:
        """Answer ``body`` with the first candidate that works; returns (response, model that answered)."""
        chain: list[str] = []
        attempts: list[dict[str, str]] = []
        last: BackendFailure | None = None
        for model in candidates:
            backend = self.backend_for(model)
            breaker = self.breaker_for(backend)
            if not breaker.allow():
                attempts.append({"model": model, "error": "breaker_open", "detail": "backend cooling down"})
                metrics.backend_errors.labels(model, "breaker_open").inc()
                chain.append(model)  # skipped, nothing sent; still the first choice a fallback reports
                continue
            if chain:
                metrics.fallbacks.labels(chain[-1], model).inc()
            chain.append(model)
            headers = {"x-routecast-model": model, **_fallback_header(chain)}
            payload = {**body, "model": backend.upstream_model or model}
            try:
                call = self._stream if stream else self._once
                with span(self.tracer, "routecast.backend_call", model=model, attempt=len(chain)):
                    response = await call(backend, model, payload, headers, breaker)
            except BackendFailure as failure:
                breaker.record_failure()
                metrics.backend_errors.labels(model, failure.kind).inc()
                attempts.append({"model": model, "error": failure.kind, "detail": failure.detail})
                last = failure
                if failure.retryable:
                    continue
                break
            except BaseException:
                breaker.release_probe()
                raise
            return response, model
        headers = {"x-routecast-model": chain[-1], **_fallback_header(chain)} if last is not None else {}
        summary = "; ".join(f"{a['model']}: {a['detail']}" for a in attempts)
        if last is None:
            raise ApiError(503, f"every candidate backend is cooling down after failures ({summary})",
                           type="server_error", code="backend_unavailable",
                           headers={"retry-after": str(int(self.breaker_cooldown_s)), **headers},
                           extra={"attempts": attempts})
        if last.kind == "timeout":
            raise ApiError(504, f"the backend did not answer in time ({summary})", type="backend_error",
                           code="backend_timeout", headers=headers, extra={"attempts": attempts})
        code = "response_too_large" if last.kind == "too_large" else "backend_unavailable"
        raise ApiError(502, f"no backend answered ({summary})", type="backend_error", code=code,
                       headers=headers, extra={"attempts": attempts})

    # ---------------------------------------------------------------- one attempt
    async def _open(self, backend: Backend, payload: dict, deadline: float) -> httpx.Response:
        """Send the request and wait for the answer's head, within the call's deadline."""
        request = self.client.build_request("POST", backend.chat_url, json=payload, headers=backend.headers(),
                                            timeout=httpx.Timeout(backend.timeout))
        try:
            async with asyncio.timeout_at(deadline):
                return await self.client.send(request, stream=True)
        except _CLOSED_BEFORE_HEAD:
            # the connection ended before one byte of an answer: the backend can no longer answer this
            # request (a graceful shutdown refusing it, a stale keep-alive connection, a crash)
            raise BackendFailure("closed", "connection closed before any answer", retryable=True) from None
        except (TimeoutError, *_TRANSPORT_ERRORS) as exc:
            raise _classify(exc) from None

    async def _once(self, backend: Backend, model: str, payload: dict, headers: dict,
                    breaker: CircuitBreaker) -> Response:
        deadline = asyncio.get_running_loop().time() + backend.timeout
        resp = await self._open(backend, payload, deadline)
        try:
            if resp.status_code >= 500 or resp.status_code == 429:
                raise BackendFailure("status", f"HTTP {resp.status_code}", retryable=True)
            try:
                async with asyncio.timeout_at(deadline):
                    content = await self._read_capped(resp)
            except BackendFailure:
                raise
            except (TimeoutError, *_TRANSPORT_ERRORS) as exc:
                raise _classify(exc) from None
        finally:
            await resp.aclose()
        if resp.status_code >= 400:
            breaker.record_success()  # the backend is healthy; the request was refused
            return _rejected(model, resp.status_code, headers)
        try:
            data = json.loads(content)
        except ValueError:
            raise BackendFailure("malformed", "the answer is not JSON", retryable=False) from None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise BackendFailure("malformed", "the answer is not a chat completion (no 'choices')", retryable=False)
        breaker.record_success()
        # relay the backend's bytes: no re-encoding (cheaper, and faithful)
        return Response(content, status_code=resp.status_code, headers=headers, media_type="application/json")

    async def _read_capped(self, resp: httpx.Response) -> bytes:
        declared = resp.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_response_bytes:
            raise BackendFailure("too_large", f"the answer exceeds {self.max_response_bytes} bytes", retryable=False)
        chunks, size = [], 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > self.max_response_bytes:
                raise BackendFailure("too_large", f"the answer exceeds {self.max_response_bytes} bytes",
                                     retryable=False)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _stream(self, backend: Backend, model: str, payload: dict, headers: dict,
                      breaker: CircuitBreaker) -> Response:
        """Open the stream and read its first chunk before committing (a 5xx before any byte can still
        go to the next model); then relay chunks under the call's total deadline and size cap."""
        deadline = asyncio.get_running_loop().time() + backend.timeout
        resp = await self._open(backend, payload, deadline)
        try:
            if resp.status_code >= 500 or resp.status_code == 429:
                raise BackendFailure("status", f"HTTP {resp.status_code}", retryable=True)
            if resp.status_code >= 400:
                breaker.record_success()
                return _rejected(model, resp.status_code, headers)
            chunks = resp.aiter_raw()
            first = b""
            try:
                async with asyncio.timeout_at(deadline):
                    while not first.strip() and len(first) < 4096:  # keep-alive blanks before the first event
                        first += await chunks.__anext__()
            except StopAsyncIteration:
                raise BackendFailure("malformed", "empty stream", retryable=False) from None
            except (TimeoutError, *_TRANSPORT_ERRORS) as exc:
                raise _classify(exc) from None
            if not first.lstrip().startswith(_SSE_STARTS):
                raise BackendFailure("malformed", "the stream is not server-sent events", retryable=False)
        except BaseException:
            await resp.aclose()
            raise
        breaker.record_success()
        cap = self.max_response_bytes

        async def relay():
            size = len(first)
            try:
                yield first
                while True:
                    try:
                        async with asyncio.timeout_at(deadline):
                            chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        return
                    size += len(chunk)
                    if size > cap:
                        yield _sse_error(f"the answer exceeds {cap} bytes; stream cut", "response_too_large")
                        return
                    yield chunk
            except TimeoutError:
                yield _sse_error("the backend did not finish in time; stream cut", "backend_timeout")
            except _TRANSPORT_ERRORS:
                yield _sse_error("the backend stream broke", "backend_unavailable")
            finally:
                await resp.aclose()

        return StreamingResponse(relay(), status_code=resp.status_code, headers=headers,
                                 media_type="text/event-stream")


def _rejected(model: str, status: int, headers: dict) -> Response:
    if status in (401, 403, 407):  # the backend refused routecast's credentials: not the client's fault
        return ApiError(502, f"the backend for model {model!r} refused routecast's credentials (HTTP {status})",
                        type="backend_error", code="backend_auth_failed", headers=headers).response()
    error = ApiError(status, f"the backend for model {model!r} refused the request (HTTP {status}); its "
                             "answer is not relayed", code="backend_rejected", headers=headers)
    return error.response()


def _sse_error(message: str, code: str) -> bytes:
    return f"data: {json.dumps(error_body(message, type='backend_error', code=code))}\n\n".encode()


def _fallback_header(chain: list[str]) -> dict[str, str]:
    return {"x-routecast-fallback": "->".join(chain)} if len(chain) > 1 else {}
