"""The server's decision log writer: SQLite work off the event loop, in order.

:class:`routecast.data.decision_log.DecisionLog` commits each record in its own transaction
(an fsync-class operation), which must not block the event loop that serves every other request.
All log work therefore runs on ONE worker thread, first in first out: a request's outcome update
always follows its own append, and a feedback call (awaited) sees every record appended before
it. Appends and updates are fire-and-forget for the request; a failure is counted in
``failures`` and kept in ``last_error`` (the request has been answered already).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from routecast.data.decision_log import DecisionLog


class DecisionWriter:
    def __init__(self, log: DecisionLog):
        self.log = log
        self.failures = 0
        self.last_error: str | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="routecast-decision-log")

    def submit(self, fn: Callable[..., Any], *args, **kwargs) -> Future:
        """Queue ``fn(*args, **kwargs)`` without waiting for it."""
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(self._count_failure)
        return future

    def append(self, record: dict) -> Future:
        return self.submit(self.log.append, record)

    def update(self, request_id: str, **fields: Any) -> Future:
        return self.submit(self.log.update_outcome, request_id, **fields)

    async def call(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run ``fn`` after everything queued before it and return its result (or raise its error)."""
        return await asyncio.wrap_future(self._pool.submit(fn, *args, **kwargs))

    def _count_failure(self, future: Future) -> None:
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            self.failures += 1
            self.last_error = str(exc)

    def close(self) -> None:
        """Finish every queued write, then close the log."""
        self._pool.shutdown(wait=True)
        self.log.close()


def rank_of(predicted: dict[str, float], model: str) -> int:
    """1-based rank of ``model`` by predicted quality (1 = predicted best), as in RouteResult.records."""
    return 1 + sum(q > predicted[model] for q in predicted.values())


def decision_record(request_id: str, decision: dict, *, text: str, key_id: str, chosen: str, propensity: float,
                    expected_cost: float | None, conversation_id: str | None = None,
                    extra: dict | None = None, checkpoint: str | None = None) -> dict:
    """One decision-log record for a routed request (what routecast.data.decision_log stores).
    ``checkpoint``: the id of the checkpoint that decided (kept in ``extra``, so rows stay
    attributable across hot reloads)."""
    predicted = decision["predicted_quality"]
    if checkpoint is not None:
        extra = {**(extra or {}), "checkpoint": checkpoint}
    return {"request_id": request_id, "key_id": key_id, "operating_point": decision.get("operating_point"),
            "conversation_id": conversation_id, "text": text, "models": list(predicted),
            "ranking": decision["ranking"], "predicted": predicted, "chosen": chosen,
            "rank": rank_of(predicted, chosen), "propensity": propensity, "lam": decision["lam"],
            "expected_cost": expected_cost, "extra": extra or None}
