"""A 1 MB prompt is cut for the encoder (documented ``max_chars``), not a crash or a stall."""

from __future__ import annotations

import numpy as np
import pytest

from routecast.data.outcome_log import OutcomeLog
from routecast.router.encoders import get_encoder

HUGE = ("Please summarise the following report. " + "word " * 20) * 9_000  # ~1.1 MB


def _log(n=120):
    rng = np.random.default_rng(0)
    return OutcomeLog([f"p{i}" for i in range(n)], [f"question {i} about subject {i % 9}" for i in range(n)],
                      ["small", "large"], rng.random((n, 2)), np.tile([1e-4, 1e-3], (n, 1)))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("spec", ["hashing:dim=256"])  # transformer/static encoders: tests/router/test_encoders.py
def test_huge_prompt_is_truncated_not_a_stall(spec):
    encoder = get_encoder(spec)
    assert encoder.max_chars is not None and encoder.max_chars < len(HUGE)
    vec = encoder.encode([HUGE])
    np.testing.assert_allclose(vec, encoder.encode([HUGE[:encoder.max_chars]]), atol=1e-6)
    assert np.isfinite(vec).all() and abs(np.linalg.norm(vec) - 1) < 1e-4


@pytest.mark.timeout(120)
def test_runtime_routes_a_huge_prompt(tmp_path):
    import routecast
    from routecast.core.checkpoint import save_checkpoint
    from routecast.core.registry import make_router

    router = make_router("knn", k=5, encoder="hashing:dim=256").fit(_log())
    save_checkpoint(router, tmp_path / "ckpt")
    runtime = routecast.load(tmp_path / "ckpt")
    out = runtime.route([HUGE, "a short question"])
    assert [d["model"] in ("small", "large") for d in out] == [True, True]
