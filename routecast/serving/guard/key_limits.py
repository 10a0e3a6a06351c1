"""Per-key request and prompt rates and spend budgets (LiteLLM-style), answered with 429s.

One instance per app (no process-global state). Keys are key ids (routecast.serving.guard.auth);
without authentication every client is the key id ``anonymous``, so the limits are global.
Spend is the router's cost model: each proxied chat adds the expected USD cost of the model that
answered (``Runtime.expected_costs``), checked before the next chat is forwarded. With
``budget_mode="reserve"`` a chat also *holds* its expected cost (added to the spend counter when
it is admitted, only while the counter is under budget, in one atomic store step) until its
request ends (:meth:`KeyLimits.release`, called by the gate), so the chats in flight cannot
overshoot a budget together: spend stays within the budget plus one chat's cost.

The state lives in a :class:`~routecast.serving.store.base.LimitStore`: this process's memory by
default, or a SQLite file / Redis that several workers and hosts share, so a key limited to R
requests/s gets R across all of them. Budget periods are windows aligned to the clock (multiples
of ``budget_period_s`` since the epoch: 86400 is a UTC day), so every process agrees on when one
starts. A store that does not answer gives a 503 (``store_unavailable``), never a free pass.
"""

from __future__ import annotations

import logging
import time

from routecast.serving.api_error import ApiError, rate_limited
from routecast.serving.guard.token_bucket import default_burst
from routecast.serving.store.base import LimitStore, StoreUnavailable

logger = logging.getLogger("routecast.serving")

#: the request scope's ``state`` entry listing what the request holds against its key's budget
BUDGET_HOLDS = "budget_holds"


class KeyLimits:
    def __init__(self, *, rps: float | None = None, rps_burst: float | None = None,
                 prompts_per_s: float | None = None, prompts_burst: float | None = None,
                 budget_usd: float | None = None, budget_period_s: float | None = None, clock=time.time,
                 store: LimitStore | None = None, budget_mode: str = "settle"):
        self.rps, self.rps_burst = rps, rps_burst
        self.prompts_per_s, self.prompts_burst = prompts_per_s, prompts_burst
        self.budget_usd, self.budget_period_s = budget_usd, budget_period_s
        self.budget_mode = budget_mode
        self.clock = clock
        if store is None:
            from routecast.serving.store.memory import MemoryStore

            store = MemoryStore(clock=clock)
        self.store = store

    @classmethod
    def from_settings(cls, settings, store: LimitStore | None = None) -> "KeyLimits":
        return cls(rps=settings.rate_limit_rps, rps_burst=settings.rate_limit_burst,
                   prompts_per_s=settings.prompt_rate_limit, prompts_burst=settings.prompt_rate_burst,
                   budget_usd=settings.spend_budget_usd, budget_period_s=settings.budget_period_s, store=store,
                   budget_mode=settings.budget_mode)

    def _ask(self, work):
        try:
            return work()
        except StoreUnavailable:
            raise ApiError(503, f"the shared limits store ({self.store.location}) is not answering; retry shortly",
                           type="server_error", code="store_unavailable", headers={"retry-after": "1"}) from None

    def admit_request(self, key_id: str) -> None:
        if self.rps is None:
            return
        burst = default_burst(self.rps, self.rps_burst)
        wait = self._ask(lambda: self.store.take(f"rps:{key_id}", self.rps, burst, 1.0))
        if wait:
            raise rate_limited(f"rate limit reached: {self.rps:g} requests/s per API key", wait,
                               "rate_limit_requests")

    def admit_prompts(self, key_id: str, n: int) -> None:
        if self.prompts_per_s is None:
            return
        burst = default_burst(self.prompts_per_s, self.prompts_burst)
        wait = self._ask(lambda: self.store.take(f"prompts:{key_id}", self.prompts_per_s, burst, float(n)))
        if wait:
            raise rate_limited(f"rate limit reached: {self.prompts_per_s:g} prompts/s per API key", wait,
                               "rate_limit_prompts")

    def _window(self) -> tuple[str, float | None, float | None]:
        """(counter suffix, counter lifetime, seconds until the next window) of the current budget period."""
        if self.budget_period_s is None:
            return "all", None, None
        now = self.clock()
        index = int(now // self.budget_period_s)
        return str(index), 2 * self.budget_period_s, (index + 1) * self.budget_period_s - now

    def check_budget(self, key_id: str, *, hold_usd: float = 0.0, holds: list | None = None) -> None:
        """429 when the key's budget is used up. In reserve mode with a ``holds`` list (the
        request's, released by :meth:`release`), also hold ``hold_usd`` against the budget."""
        if self.budget_usd is None:
            return
        window, ttl, remaining = self._window()
        name = f"spend:{key_id}:{window}"
        if self.budget_mode == "reserve" and holds is not None:
            spent = self._ask(lambda: self.store.add(name, hold_usd, ttl)) - hold_usd
            if spent < self.budget_usd:
                holds.append((name, hold_usd, ttl))
                return
            self.release([(name, hold_usd, ttl)])
        else:
            spent = self._ask(lambda: self.store.get(name))
            if spent < self.budget_usd:
                return
        retry = remaining if remaining is not None else 3600.0
        held = " or held by chats in flight" if holds is not None and self.budget_mode == "reserve" else ""
        raise ApiError(429, f"spend budget of {self.budget_usd:g} USD for this API key is used up "
                            f"({spent:.6g} USD spent{held})", type="insufficient_quota", code="budget_exceeded",
                       headers={"retry-after": str(max(1, int(retry)))})

    def release(self, holds: list) -> None:
        """Give back what a request held (its realised cost is charged by :meth:`charge`)."""
        while holds:
            name, usd, ttl = holds.pop()
            try:
                self.store.add(name, -usd, ttl)
            except StoreUnavailable as exc:  # the key's budget stays reduced by it until the window ends
                logger.warning("hold of %.6g USD on %s not released: %s", usd, name, exc)

    def charge(self, key_id: str, usd: float | None) -> None:
        if self.budget_usd is None or usd is None:
            return
        window, ttl, _ = self._window()
        try:
            self.store.add(f"spend:{key_id}:{window}", float(usd), ttl)
        except StoreUnavailable as exc:
            # the backend has answered and the caller is owed its response: this spend goes
            # uncounted (logged) rather than turning a paid answer into a 503
            logger.warning("spend of %.6g USD for key %s not recorded: %s", float(usd), key_id, exc)

    def spent(self, key_id: str) -> float:
        window, _, _ = self._window()
        return self._ask(lambda: self.store.get(f"spend:{key_id}:{window}"))
