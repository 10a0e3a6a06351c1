"""Per-key request and prompt rates and spend budgets (LiteLLM-style), answered with 429s.

One instance per app (no process-global state). Keys are key ids (routecast.serving.guard.auth);
without authentication every client is the key id ``anonymous``, so the limits are global.
Spend is the router's cost model: each proxied chat adds the expected USD cost of the model that
answered (``Runtime.expected_costs``), checked before the next chat is forwarded.
"""

from __future__ import annotations

import time

from routecast.serving.api_error import ApiError, rate_limited
from routecast.serving.guard.token_bucket import TokenBucket


class KeyLimits:
    def __init__(self, *, rps: float | None = None, rps_burst: float | None = None,
                 prompts_per_s: float | None = None, prompts_burst: float | None = None,
                 budget_usd: float | None = None, budget_period_s: float | None = None, clock=time.monotonic):
        self.rps, self.rps_burst = rps, rps_burst
        self.prompts_per_s, self.prompts_burst = prompts_per_s, prompts_burst
        self.budget_usd, self.budget_period_s = budget_usd, budget_period_s
        self.clock = clock
        self._requests: dict[str, TokenBucket] = {}
        self._prompts: dict[str, TokenBucket] = {}
        self._spent: dict[str, float] = {}
        self._period_start = clock()

    @classmethod
    def from_settings(cls, settings) -> "KeyLimits":
        return cls(rps=settings.rate_limit_rps, rps_burst=settings.rate_limit_burst,
                   prompts_per_s=settings.prompt_rate_limit, prompts_burst=settings.prompt_rate_burst,
                   budget_usd=settings.spend_budget_usd, budget_period_s=settings.budget_period_s)

    def admit_request(self, key_id: str) -> None:
        if self.rps is None:
            return
        bucket = self._requests.get(key_id)
        if bucket is None:
            bucket = self._requests[key_id] = TokenBucket(self.rps, self.rps_burst, clock=self.clock)
        wait = bucket.take(1)
        if wait:
            raise rate_limited(f"rate limit reached: {self.rps:g} requests/s per API key", wait,
                               "rate_limit_requests")

    def admit_prompts(self, key_id: str, n: int) -> None:
        if self.prompts_per_s is None:
            return
        bucket = self._prompts.get(key_id)
        if bucket is None:
            bucket = self._prompts[key_id] = TokenBucket(self.prompts_per_s, self.prompts_burst, clock=self.clock)
        wait = bucket.take(n)
        if wait:
            raise rate_limited(f"rate limit reached: {self.prompts_per_s:g} prompts/s per API key", wait,
                               "rate_limit_prompts")

    def _roll_period(self) -> None:
        if self.budget_period_s is not None and self.clock() - self._period_start >= self.budget_period_s:
            self._spent.clear()
            self._period_start = self.clock()

    def check_budget(self, key_id: str) -> None:
        if self.budget_usd is None:
            return
        self._roll_period()
        spent = self._spent.get(key_id, 0.0)
        if spent >= self.budget_usd:
            retry = (self._period_start + self.budget_period_s - self.clock()) if self.budget_period_s else 3600.0
            raise ApiError(429, f"spend budget of {self.budget_usd:g} USD for this API key is used up "
                                f"({spent:.6g} USD spent)", type="insufficient_quota", code="budget_exceeded",
                           headers={"retry-after": str(max(1, int(retry)))})

    def charge(self, key_id: str, usd: float | None) -> None:
        if self.budget_usd is None or usd is None:
            return
        self._roll_period()
        self._spent[key_id] = self._spent.get(key_id, 0.0) + float(usd)

    def spent(self, key_id: str) -> float:
        return self._spent.get(key_id, 0.0)
