"""One chat completion through the official ``openai`` async client, politely and persistently.

Shared by ``collect`` (answers from N endpoints) and the LLM judge: a call waits for a free slot
of its endpoint (bounded concurrency) and for the endpoint's rate limit, and retries with
exponential backoff and jitter on what is worth retrying -- 429, 5xx, a dropped or timed-out
connection -- honouring a ``Retry-After`` header (capped). A 4xx other than 429 (the request's
fault) or a 200 whose body is not a chat completion is not retried: asking again would give the
same answer. The client's own retries are off, so every attempt is counted here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass

MAX_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True)
class ChatResult:
    text: str
    tokens_in: int | None
    tokens_out: int | None
    latency_s: float
    attempts: int
    finish_reason: str | None


class CallFailed(Exception):
    """A call that produced no usable answer; ``field`` names what was wrong (``response``...)."""

    def __init__(self, reason: str, *, attempts: int, field: str = "response"):
        super().__init__(reason)
        self.reason, self.attempts, self.field = reason, attempts, field


class RateLimiter:
    """At most ``rate`` request starts per second (evenly spaced); ``None`` = unlimited."""

    def __init__(self, rate: float | None):
        self.interval = 0.0 if not rate else 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


class EndpointSlot:
    """What every call to one endpoint shares: its client, concurrency slots and rate limiter."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.client = endpoint.client()
        self.client.chat.completions  # noqa: B018 - import the client's lazy resources now, not inside the first timed call
        self.slots = asyncio.Semaphore(endpoint.concurrency)
        self.limiter = RateLimiter(endpoint.requests_per_second)

    async def close(self) -> None:
        await self.client.close()


def _retry_after(exc) -> float | None:
    response = getattr(exc, "response", None)
    value = None if response is None else response.headers.get("retry-after")
    try:
        return None if value is None else min(max(float(value), 0.0), MAX_BACKOFF_SECONDS)
    except ValueError:
        return None


async def chat(slot: EndpointSlot, messages: list[dict], *, retries: int = 5, backoff: float = 0.5,
               global_slots: asyncio.Semaphore | None = None, **params) -> ChatResult:
    """One completion of ``messages`` from ``slot``'s endpoint (see the module docstring)."""
    import openai

    endpoint = slot.endpoint
    extra = {k: v for k, v in (("max_tokens", endpoint.max_tokens), ("temperature", endpoint.temperature))
             if v is not None}
    extra.update(params)
    attempt = 0
    while True:
        attempt += 1
        await slot.limiter.wait()
        wait = None
        try:
            async with slot.slots, global_slots or contextlib.nullcontext():
                start = time.perf_counter()
                reply = await slot.client.chat.completions.create(
                    model=endpoint.request_model, messages=messages, **extra)
                latency = time.perf_counter() - start
            return _result(reply, latency, attempt)
        except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as exc:
            # APITimeoutError is an APIConnectionError; InternalServerError covers every 5xx
            if attempt > retries:
                raise CallFailed(f"{_describe(exc)}, still after {attempt} attempts", attempts=attempt) from None
            wait = _retry_after(exc)
        except openai.APIStatusError as exc:
            raise CallFailed(f"endpoint refused the request ({_describe(exc)})", attempts=attempt) from None
        except openai.APIResponseValidationError as exc:
            raise CallFailed(f"endpoint returned something that is not a chat completion ({exc.message})",
                             attempts=attempt) from None
        if wait is None:
            wait = min(backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS) * random.uniform(0.5, 1.5)
        await asyncio.sleep(wait)


def _describe(exc) -> str:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    return f"HTTP {status} ({name})" if status else name


def _result(reply, latency: float, attempt: int) -> ChatResult:
    choices = getattr(reply, "choices", None)
    message = getattr(choices[0], "message", None) if isinstance(choices, list) and choices else None
    text = getattr(message, "content", None)
    if not isinstance(text, str):
        raise CallFailed("endpoint returned something that is not a chat completion "
                         "(no choices[0].message.content)", attempts=attempt)
    usage = getattr(reply, "usage", None)
    t_in = getattr(usage, "prompt_tokens", None)
    t_out = getattr(usage, "completion_tokens", None)
    return ChatResult(text=text, tokens_in=t_in if isinstance(t_in, int) else None,
                      tokens_out=t_out if isinstance(t_out, int) else None, latency_s=latency,
                      attempts=attempt, finish_reason=getattr(choices[0], "finish_reason", None))
