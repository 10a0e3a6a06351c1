"""Per-key concurrency slots: one API key may have at most ``limit`` requests in progress.

Why: on a small machine one client sending 1 MB, 256-prompt bodies eight at a time kept the event
loop and the router busy for everyone (other clients' p99 went from 31 ms to 2.3 s). With slots,
its extra requests wait (FIFO, before their body is read or parsed) instead of competing; the
micro-batcher's per-key fair share (routecast.serving.microbatch) does the rest. A request that
waits longer than ``wait_s`` gets a 429.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from routecast.serving.api_error import rate_limited


class KeySlots:
    def __init__(self, limit: int | None, wait_s: float = 30.0):
        self.limit, self.wait_s = limit, wait_s
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    @asynccontextmanager
    async def hold(self, key_id: str):
        if self.limit is None:
            yield
            return
        semaphore = self._semaphores.get(key_id)
        if semaphore is None:
            semaphore = self._semaphores[key_id] = asyncio.Semaphore(self.limit)
        try:
            if semaphore.locked():
                await asyncio.wait_for(semaphore.acquire(), self.wait_s)
            else:  # the common case: no timer, no task
                await semaphore.acquire()
        except asyncio.TimeoutError:
            raise rate_limited(f"too many concurrent requests for this API key (limit {self.limit})",
                               1.0, "concurrency_limit") from None
        try:
            yield
        finally:
            semaphore.release()
