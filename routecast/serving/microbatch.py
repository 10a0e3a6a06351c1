"""Request micro-batching: concurrent routing requests share one ``Runtime.route`` call.

Why: a routing decision with a fast encoder is a fraction of a millisecond, so under load a
server spends most of its time on per-call overhead (a thread hop, tokenizer and BLAS set-up,
Python per-call work). Routing the prompts of all requests that arrived meanwhile in one batch
amortises that overhead, and a batch of 32 prompts costs far less than 32 calls of one.

Policy (greedy, no added latency when idle): one worker task takes the first waiting request,
then everything that queued up while the previous batch was routed (up to ``max_batch``
prompts), optionally waiting ``max_wait_ms`` for more, and routes it in a worker thread while
the event loop keeps accepting requests. A lone request is routed at once.

Only requests whose decisions do not depend on their batch-mates are merged: ``lam`` given (or
no knob), or any knob on a calibrated router (budgets map to ``lam`` through the calibration
curve). A budget, strong share or quality target on an uncalibrated router is met on the batch's
own predictions, so such a request is routed alone, exactly as without batching.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import anyio

#: routing knobs in a fixed order: requests are merged only with equal knobs
KNOBS = ("lam", "budget", "strong_share", "target_quality")


@dataclass
class _Pending:
    texts: list[str]
    knobs: tuple
    future: asyncio.Future


class MicroBatcher:
    """Coalesce concurrent ``route`` calls. Create inside a running event loop, ``start()``,
    ``await submit(...)`` per request, ``await aclose()`` at shutdown."""

    def __init__(self, route: Callable[..., list[dict[str, Any]]], *, calibrated: bool,
                 max_batch: int = 64, max_wait_ms: float = 0.0,
                 on_batch: Callable[[int], None] | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        self.route = route
        self.calibrated = calibrated
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.on_batch = on_batch  # called with the number of prompts of each routed batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._carry: _Pending | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "MicroBatcher":
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="routecast-microbatcher")
        return self

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while not self._queue.empty():  # nobody will route these any more
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("server is shutting down"))

    # ------------------------------------------------------------------ API
    def mergeable(self, knobs: dict[str, Any]) -> bool:
        """Whether a request with these knobs may share a batch (see module docstring)."""
        batch_dependent = any(knobs.get(k) is not None for k in ("budget", "strong_share", "target_quality"))
        return self.calibrated or not batch_dependent

    async def submit(self, texts: Sequence[str], **knobs: Any) -> list[dict[str, Any]]:
        """Route ``texts`` with ``knobs``; returns one decision per text, in order."""
        if self._task is None or self._task.done():
            raise RuntimeError("MicroBatcher is not running; call start() first")
        key = tuple(knobs.get(k) for k in KNOBS)
        if not self.mergeable(knobs):
            return await anyio.to_thread.run_sync(lambda: self.route(list(texts), **knobs))
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(list(texts), key, future))
        return await future

    # ------------------------------------------------------------------ worker
    async def _run(self) -> None:
        while True:
            first = self._carry or await self._queue.get()
            self._carry = None
            batch = [first]
            size = len(first.texts)
            deadline = time.perf_counter() + self.max_wait_ms / 1000
            while size < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except asyncio.TimeoutError:
                        break
                if size + len(item.texts) > self.max_batch:
                    self._carry = item  # starts the next batch; never split a request
                    break
                batch.append(item)
                size += len(item.texts)
            try:
                await self._route_batch(batch)
            except asyncio.CancelledError:  # shutting down mid-batch: nobody is left waiting forever
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(RuntimeError("server is shutting down"))
                raise

    async def _route_batch(self, batch: list[_Pending]) -> None:
        groups: dict[tuple, list[_Pending]] = {}
        for item in batch:
            if not item.future.cancelled():  # the client went away while queued
                groups.setdefault(item.knobs, []).append(item)
        for key, items in groups.items():
            texts = [t for item in items for t in item.texts]
            knobs = {k: v for k, v in zip(KNOBS, key) if v is not None}
            try:
                decisions = await anyio.to_thread.run_sync(lambda: self.route(texts, **knobs))
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request of this group
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(len(texts))
            start = 0
            for item in items:
                part = decisions[start:start + len(item.texts)]
                start += len(item.texts)
                if not item.future.done():
                    item.future.set_result(part)
