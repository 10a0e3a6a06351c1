"""`random`'s description and its default agree: by default every model is equally likely; with
``ratio`` that share of the prompts goes to the strong model and the rest to the others."""

from __future__ import annotations

import numpy as np
import pytest

from routecast.core.registry import make_router


def _shares(router, log) -> np.ndarray:
    choice = router.route(list(log.prompts), lam=0.0).choice
    return np.bincount(choice, minlength=len(router.models_)) / len(choice)


def test_default_spreads_calls_uniformly_over_all_models(small_log):
    router = make_router("random").fit(small_log)
    shares = _shares(router, small_log)
    assert router.ratio is None and len(shares) == 9
    assert shares.min() > 0.5 / 9 and shares.max() < 1.7 / 9  # 360 prompts: every model near 1/9
    assert shares.sum() == pytest.approx(1.0)


def test_ratio_is_the_strong_models_share(small_log):
    router = make_router("random", ratio=0.3).fit(small_log)
    shares = _shares(router, small_log)
    assert shares[router.strong_] == pytest.approx(0.3, abs=0.06)
    others = np.delete(shares, router.strong_)
    assert (others > 0).sum() == 8  # the rest go to the other models, not to one weak model


def test_the_description_says_what_the_default_does():
    from routecast.training.tables import routers_table

    row = next(r for r in routers_table()["rows"] if r[0] == "random")
    assert "ratio=None" in row[2]
    assert "every prompt goes to a model drawn uniformly at random (the default" in row[3]
    assert "share ``ratio`` goes to the strong model" in row[3]
