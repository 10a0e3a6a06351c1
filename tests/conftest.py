"""Shared fixtures: small REAL logs (slices of the built-in data) and the cheap hashing encoder.

Shared test doubles that are not fixtures (a tiny registered router, a fake backend, a counting
encoder, paths of the shared data) live in the ``tests._support`` package, imported normally.

Embeddings are cached in one temporary directory per test session, so no test re-embeds what
another already embedded, and nothing touches the user's own cache.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

#: the cheap encoder of unit tests (no weights, deterministic)
HASHING = "hashing:dim=256"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test uses a session-private embedding cache and a headless matplotlib."""
    old = os.environ.get("ROUTECAST_CACHE_DIR")
    os.environ["ROUTECAST_CACHE_DIR"] = str(tmp_path_factory.mktemp("routecast-cache"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    yield
    if old is None:
        os.environ.pop("ROUTECAST_CACHE_DIR", None)
    else:
        os.environ["ROUTECAST_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def llmrouter_log():
    """The built-in llmrouter_9models log (real outcomes of 9 LLMs, derived costs)."""
    from routecast.data import load_log

    return load_log("llmrouter_9models")


@pytest.fixture(scope="session")
def small_log(llmrouter_log):
    """A seeded 360-prompt slice of llmrouter_9models: 9 models, every cell logged, real costs."""
    rng = np.random.default_rng(7)
    idx = np.sort(rng.choice(llmrouter_log.n_prompts, size=360, replace=False))
    return llmrouter_log.subset(idx)


@pytest.fixture(scope="session")
def small_split(small_log):
    """(train, test) of small_log: 280 / 80 prompts."""
    return small_log.subset(np.arange(280)), small_log.subset(np.arange(280, 360))
