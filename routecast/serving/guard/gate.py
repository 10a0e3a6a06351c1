"""The ASGI gate every request passes: counting, authentication, per-key request rate and
concurrency, the body-read deadline, and the last line of defence against a bare 500.

Plain ASGI rather than BaseHTTPMiddleware: no extra task or body buffering per request, and it
sees every status, including the ones it answers itself (401, 429, 408, 500), so ``/metrics``
counts all of them per endpoint and per key id.

Order for a request: resolve the key (``Authorization: Bearer KEY``; 401 with an OpenAI-style
body unless the path is public), take a request token (429), then run the app with ``receive``
under the body deadline (408 and the connection closed when the body has not arrived
``body_timeout_s`` after the headers); one of the key's concurrency slots (waits, then 429) is
taken once the whole body has arrived (at once for a request without a body), so a client
trickling bodies holds no slot that a routed request needs (eight half-sent bodies used to hold
every slot of a server for the 30 s body timeout).

Without keys every client is the key id ``anonymous`` for limits and budgets, but concurrency
slots and the micro-batcher's fair share go by client address (``share_id`` in the request
scope's state), so one address cannot take the slots of all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack

from routecast.serving.api_error import ApiError
from routecast.serving.guard.auth import ApiKeys, bearer_token
from routecast.serving.guard.key_limits import BUDGET_HOLDS

logger = logging.getLogger("routecast.serving")

ENDPOINTS = {"/v1/route", "/v1/chat/completions", "/v1/models", "/v1/router", "/health", "/metrics",
             "/docs", "/openapi.json"}
#: key ids in metrics for requests that carry no key or a wrong one
NO_KEY, BAD_KEY, ANONYMOUS = "none", "invalid", "anonymous"
_NO_BODY = ("GET", "HEAD", "OPTIONS")


class BodyTimeout(ApiError):
    def __init__(self, seconds: float):
        super().__init__(408, f"the request body did not arrive within {seconds:g} s", code="body_timeout",
                         headers={"connection": "close"})


class Gate:
    def __init__(self, app, *, metrics, keys: ApiKeys | None, public_paths: set[str], limits, slots,
                 body_timeout_s: float, redact=lambda text: text):
        self.app, self.metrics, self.keys = app, metrics, keys
        self.public_paths = public_paths
        self.limits, self.slots = limits, slots
        self.body_timeout_s = body_timeout_s
        self.redact = redact

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        state = {"status": 500, "started": False, "key": ANONYMOUS}

        async def observed_send(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.metrics.requests.labels(endpoint, str(state["status"]), state["key"]).inc()
                self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

        try:
            key_id = self._key_id(scope)
            state["key"] = key_id
            scope.setdefault("state", {})["key_id"] = key_id
            if path in self.public_paths:
                return await self.app(scope, receive, observed_send)
            if key_id == NO_KEY:
                raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key",
                               headers={"www-authenticate": "Bearer"})
            if key_id == BAD_KEY:
                raise _Unauthorised()
            self.limits.admit_request(key_id)
            share = scope["state"]["share_id"] = key_id if self.keys is not None else _address_share(scope)
            async with AsyncExitStack() as held:
                held.callback(self.limits.release, scope["state"].setdefault(BUDGET_HOLDS, []))

                async def take_slot():
                    await held.enter_async_context(self.slots.hold(share))

                if scope.get("method") in _NO_BODY:
                    await take_slot()
                await self.app(scope, self._deadline(receive, scope, take_slot), observed_send)
        except ApiError as exc:
            if not state["started"]:
                await _send_error(observed_send, exc)
        except Exception as exc:  # noqa: BLE001 - never a bare 500 or a traceback to the client
            logger.error("internal error on %s: %s", endpoint, self.redact(f"{type(exc).__name__}: {exc}"))
            if not state["started"]:
                await _send_error(observed_send, ApiError(500, "internal server error", type="server_error",
                                                          code="internal_error"))

    def _key_id(self, scope) -> str:
        """The caller's key id; ``none``/``invalid`` without a valid key, ``anonymous`` without keys."""
        if self.keys is None:
            return ANONYMOUS
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                token = bearer_token(value)
                return NO_KEY if token is None else (self.keys.identify(token) or BAD_KEY)
        return NO_KEY

    def _deadline(self, receive, scope, body_arrived):
        """``receive`` under the body deadline; ``body_arrived()`` is awaited after its last part."""
        if scope.get("method") in _NO_BODY:
            return receive
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        done = False

        async def timed_receive():
            nonlocal done
            if done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.body_timeout_s) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
                if message["type"] == "http.request":
                    await body_arrived()
            return message

        return timed_receive


def _address_share(scope) -> str:
    client = scope.get("client")
    return f"{ANONYMOUS}@{client[0]}" if client else ANONYMOUS


class _Unauthorised(ApiError):
    def __init__(self):
        super().__init__(401, "incorrect API key provided", code="invalid_api_key",
                         headers={"www-authenticate": "Bearer"})


async def _send_error(send, exc: ApiError) -> None:
    body = exc.body()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
