"""Request micro-batching with a per-key fair share: concurrent routing requests share one
``Runtime.route`` call, and no API key can crowd the others out of it.

Why batch: a routing decision with a fast encoder is a fraction of a millisecond, so under load a
server spends most of its time on per-call overhead (a thread hop, tokenizer and BLAS set-up,
Python per-call work). Routing the prompts of all requests that arrived meanwhile in one batch
amortises that overhead.

Why a fair share: one client sending 256 long prompts per request, eight at a time, used to
occupy the router for seconds while everyone else's one-prompt requests queued behind it
(p99 31 ms -> 2.3 s). Now each request is cut into *units* of at most ``quantum_chars``
characters of prompt (a prompt costs its length, capped at the encoder's ``max_chars``), queued
per key, and each router call is filled by deficit round robin over the keys that wait: each key
adds at most ``quantum_chars`` of prompt per call (and a call holds at most ``max_batch``
prompts). A one-prompt request therefore waits for at most about one quantum of each other
key's work, whatever they send.

Policy (greedy, no added latency when idle): one worker task takes what is queued, optionally
waiting ``max_wait_ms`` for more, and routes it in a worker thread while the event loop keeps
accepting requests.

Isolation: when a merged call fails (a prompt the encoder cannot take, say), every request of
that call is routed again on its own, so only the request that caused the failure fails.

Only requests whose decisions do not depend on their batch-mates are merged: ``lam`` given (or
no knob), or any knob on a calibrated router (budgets map to ``lam`` through the calibration
curve). A budget, strong share or quality target on an uncalibrated router is met on the batch's
own predictions, so such a request is routed alone, whole, exactly as without batching.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import anyio

#: routing knobs in a fixed order: requests are merged only with equal knobs
KNOBS = ("lam", "budget", "strong_share", "target_quality", "operating_point")
ANONYMOUS = "anonymous"


class BatcherClosed(RuntimeError):
    """The batcher is not running (not started yet, or the server is shutting down)."""


@dataclass
class _Unit:
    texts: list[str]
    knobs: tuple
    future: asyncio.Future
    cost: int


class MicroBatcher:
    """Coalesce concurrent ``route`` calls. Create inside a running event loop, ``start()``,
    ``await submit(texts, key=..., **knobs)`` per request, ``await aclose()`` at shutdown."""

    def __init__(self, route: Callable[..., list[dict[str, Any]]], *, calibrated: bool,
                 max_batch: int = 64, max_wait_ms: float = 0.0,
                 on_batch: Callable[[int], None] | None = None, quantum_chars: int = 4_000,
                 max_chars: int | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        if quantum_chars < 1:
            raise ValueError("quantum_chars must be >= 1")
        self.route = route
        self.calibrated = calibrated
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.on_batch = on_batch  # called with the number of prompts of each routed call
        self.quantum_chars = quantum_chars
        self.max_chars = max_chars  # what the encoder reads of a prompt (its cost); None: the quantum
        self._queues: dict[str, deque[_Unit]] = {}
        self._active: deque[str] = deque()  # keys with queued units, in round-robin order
        self._deficit: dict[str, float] = {}
        self._queued_prompts = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        #: closed because a hot reload replaced its runtime (routecast.serving.rollout): a request
        #: that started with that runtime routes with it directly instead of failing
        self.retired = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "MicroBatcher":
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="routecast-microbatcher")
        return self

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def aclose(self, *, retire: bool = False) -> None:
        """Stop routing; every waiting request gets :class:`BatcherClosed`. ``retire``: the runtime was
        replaced, not the server stopped (see :attr:`retired`)."""
        self.retired = self.retired or retire
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for queue in self._queues.values():  # nobody will route these any more
            for unit in queue:
                if not unit.future.done():
                    unit.future.set_exception(BatcherClosed("server is shutting down"))
        self._queues.clear()
        self._active.clear()

    # ------------------------------------------------------------------ API
    def mergeable(self, knobs: dict[str, Any]) -> bool:
        """Whether a request with these knobs may share a batch (see module docstring)."""
        batch_dependent = any(knobs.get(k) is not None for k in ("budget", "strong_share", "target_quality"))
        return self.calibrated or not batch_dependent

    async def submit(self, texts: Sequence[str], *, key: str = ANONYMOUS, **knobs: Any) -> list[dict[str, Any]]:
        """Route ``texts`` with ``knobs`` within ``key``'s fair share; one decision per text, in order."""
        if not self.running:
            raise BatcherClosed("MicroBatcher is not running; call start() first")
        texts = list(texts)
        if not self.mergeable(knobs):
            return await anyio.to_thread.run_sync(lambda: self.route(texts, **knobs))
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        signature = tuple(knobs.get(k) for k in KNOBS)
        units = [_Unit(part, signature, loop.create_future(), cost) for part, cost in self._split(texts)]
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        if not queue:
            self._active.append(key)
        queue.extend(units)
        self._queued_prompts += len(texts)
        self._wakeup.set()
        try:
            if len(units) == 1:
                return await units[0].future
            parts = await asyncio.gather(*(u.future for u in units))
        except BaseException:
            for unit in units:  # the client went away or a part failed: the rest is not routed
                if not unit.future.done():
                    unit.future.cancel()
            raise
        return [d for part in parts for d in part]

    def _cost(self, text: str) -> int:
        return max(1, min(len(text), self.max_chars or self.quantum_chars, self.quantum_chars))

    def _split(self, texts: list[str]):
        """Consecutive prompts in units of at most ``quantum_chars`` characters and ``max_batch`` prompts."""
        start, cost = 0, 0
        for i, text in enumerate(texts):
            c = self._cost(text)
            if i > start and (cost + c > self.quantum_chars or i - start >= self.max_batch):
                yield texts[start:i], cost
                start, cost = i, 0
            cost += c
        yield texts[start:], cost

    # ------------------------------------------------------------------ worker
    async def _run(self) -> None:
        while True:
            while not self._active:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.max_wait_ms > 0:
                deadline = time.perf_counter() + self.max_wait_ms / 1000
                while self._queued_prompts < self.max_batch and (left := deadline - time.perf_counter()) > 0:
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), left)
                    except asyncio.TimeoutError:
                        break
            batch = self._take_batch()
            try:
                await self._route_batch(batch)
            except asyncio.CancelledError:  # shutting down mid-batch: nobody is left waiting forever
                for unit in batch:
                    if not unit.future.done():
                        unit.future.set_exception(BatcherClosed("server is shutting down"))
                raise

    def _take_batch(self) -> list[_Unit]:
        """One router call's worth of units: one deficit-round-robin pass over the waiting keys.

        Each key adds at most about ``quantum_chars`` of prompt to a call (unused credit carries to
        its next turn), even when it is the only one waiting: a call never grows so long that a
        request arriving just after it started waits for a big slice of someone else's work."""
        batch: list[_Unit] = []
        size = 0
        for key in list(self._active):
            queue = self._queues[key]
            self._deficit[key] = self._deficit.get(key, 0.0) + self.quantum_chars
            while queue:
                unit = queue[0]
                if unit.future.done():  # cancelled while queued
                    queue.popleft()
                    self._queued_prompts -= len(unit.texts)
                    continue
                if batch and size + len(unit.texts) > self.max_batch:
                    break
                if unit.cost > self._deficit[key] and (batch or self._deficit[key] < self.quantum_chars):
                    break
                queue.popleft()
                self._queued_prompts -= len(unit.texts)
                batch.append(unit)
                size += len(unit.texts)
                self._deficit[key] -= unit.cost
            if not queue:
                self._active.remove(key)
                self._deficit.pop(key, None)
                del self._queues[key]
        if self._active:
            self._active.rotate(-1)  # the next call starts with the next key
        return batch

    async def _route_batch(self, batch: list[_Unit]) -> None:
        groups: dict[tuple, list[_Unit]] = {}
        for unit in batch:
            if not unit.future.done():
                groups.setdefault(unit.knobs, []).append(unit)
        for signature, units in groups.items():
            knobs = {k: v for k, v in zip(KNOBS, signature) if v is not None}
            texts = [t for unit in units for t in unit.texts]
            try:
                decisions = await anyio.to_thread.run_sync(lambda: self.route(texts, **knobs))
            except Exception as exc:  # noqa: BLE001 - isolate: route each unit alone
                if len(units) == 1:
                    _settle(units[0], exc=exc)
                    continue
                for unit in units:
                    if unit.future.done():
                        continue
                    try:
                        part = await anyio.to_thread.run_sync(lambda: self.route(unit.texts, **knobs))
                    except Exception as unit_exc:  # noqa: BLE001 - this unit's own failure
                        _settle(unit, exc=unit_exc)
                    else:
                        self._report(len(unit.texts))
                        _settle(unit, result=part)
                continue
            self._report(len(texts))
            start = 0
            for unit in units:
                _settle(unit, result=decisions[start:start + len(unit.texts)])
                start += len(unit.texts)

    def _report(self, n: int) -> None:
        if self.on_batch is not None:
            self.on_batch(n)


def _settle(unit: _Unit, *, result=None, exc: BaseException | None = None) -> None:
    if unit.future.done():
        return
    if exc is not None:
        unit.future.set_exception(exc)
    else:
        unit.future.set_result(result)
