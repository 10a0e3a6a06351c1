"""Exploration in the server: which model a chat goes to when the router explores, and with
what probability (the propensity that off-policy evaluation and propensity-weighted training need).

The random draw is a hash of the request id, not a random generator's state: replaying a logged
request id reproduces its choice exactly, and no global random state is kept. The rule itself
(epsilon-greedy or a softmax over utilities) is :func:`routecast.core.policy.explore`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from routecast.core.policy import explore


def uniform_for(request_id: str) -> float:
    """A number in [0, 1) determined by ``request_id`` (the first 64 bits of its SHA-256)."""
    digest = hashlib.sha256(request_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def explored_choice(decision: dict, models: tuple[str, ...], costs: np.ndarray, request_id: str, *,
                    epsilon: float = 0.0, temperature: float | None = None) -> tuple[str, float]:
    """(model, propensity) for one routed request under the server's exploration settings."""
    quality = np.asarray([[decision["predicted_quality"][m] for m in models]], dtype=np.float64)
    choice, propensity = explore(quality, np.asarray(costs, dtype=np.float64),
                                 float(decision["lam"]), epsilon=epsilon, temperature=temperature,
                                 uniforms=np.asarray([uniform_for(request_id)]))
    return models[int(choice[0])], float(propensity[0])
