"""A circuit breaker per backend, shared by every request of the app (LiteLLM-style cooldowns).

After ``failures`` consecutive failures a backend is *open* for ``cooldown_s`` seconds: requests
skip it (falling back to the next model when that is allowed) instead of each paying a
connection error or a timeout. When the cooldown is over one request is let through as a probe
(*half-open*); its success closes the breaker, its failure opens it for another cooldown.
"""

from __future__ import annotations

import time


class CircuitBreaker:
    def __init__(self, failures: int = 3, cooldown_s: float = 30.0, *, clock=time.monotonic):
        if failures < 1 or cooldown_s <= 0:
            raise ValueError("failures must be >= 1 and cooldown_s > 0")
        self.failures, self.cooldown_s, self.clock = failures, cooldown_s, clock
        self.consecutive = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.cooldown_s else "open"

    def allow(self) -> bool:
        """Whether a request may be sent now (at most one probe at a time once the cooldown is over)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self.probing:
            self.probing = True
            return True
        return False

    def record_success(self) -> None:
        self.consecutive = 0
        self.opened_at = None
        self.probing = False

    def record_failure(self) -> None:
        self.consecutive += 1
        if self.probing or self.consecutive >= self.failures:
            self.opened_at = self.clock()
        self.probing = False

    def release_probe(self) -> None:
        """A probe that ended without telling success from failure (e.g. the client went away)."""
        self.probing = False
