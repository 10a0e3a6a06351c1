"""The seeded internal validation split routers carve out of their *training* log.

Early stopping (``mlp``, ``irt``, ``finetuned-encoder``) and the priors' own model selection
(``cluster-prior``'s k, ``prior-residual``'s blend) all hold out a share of the training prompts,
never the caller's validation or test split. Kept free of torch so the numpy-only routers can
use it without importing it.
"""

from __future__ import annotations

import numpy as np


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) row indices; no validation rows when the log is too small for it."""
    n_val = int(round(n * fraction))
    if fraction <= 0 or n_val < 1 or n - n_val < 1:
        return np.arange(n), np.arange(0)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
