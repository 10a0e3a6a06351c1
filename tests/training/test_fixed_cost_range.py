"""A policy's AIQ never depends on which other policies are compared (built-in data)."""

from __future__ import annotations

import pytest

from routecast.router.pipeline import prepare
from routecast.cascade.suite import cascade_curves
from routecast.training.experiment import run_experiment


@pytest.fixture(scope="module")
def prepared():
    return prepare("llmrouter_9models", encoder="hashing:dim=256", limit=600, seed=0)


def test_linear_alone_and_among_others_and_ensembles_has_the_same_aiq(prepared):
    alone = run_experiment(prepared, ["linear"], n_boot=50, progress=False).result
    extra, skipped = cascade_curves(prepared, ["ex-ante", "oracle-ensemble", "majority-vote"])
    assert "majority-vote" in skipped and "response" in skipped["majority-vote"]
    crowd = run_experiment(prepared, ["linear", "knn", "oracle"], n_boot=50, progress=False,
                           extra_curves=extra).result
    assert round(alone.routers["linear"].aiq, 4) == round(crowd.routers["linear"].aiq, 4)
    assert alone.routers["linear"].aiq_ci == crowd.routers["linear"].aiq_ci
    assert alone.cost_range == crowd.cost_range
    singles = prepared.test.complete()
    means = singles.costs.mean(axis=0)
    assert alone.cost_range == pytest.approx((means.min(), means.max()))
    # single models are points, never ranked; the oracle ensemble (every model called) is outside
    assert all(crowd.routers[m].status == "point" for m in prepared.test.models)
    assert crowd.routers["oracle-ensemble"].status == "outside the range"
    ranked = [row["label"] for row in crowd.leaderboard()]
    assert "oracle-ensemble" not in ranked and not set(prepared.test.models) & set(ranked)
    assert ranked[0] == "oracle"


def test_pinned_range_is_the_same_across_runs(prepared):
    pinned = (1e-5, 3e-4)
    a = run_experiment(prepared, ["linear"], n_boot=10, progress=False, cost_range=pinned).result
    assert a.cost_range == pinned
    assert a.to_dict()["cost_range"] == list(pinned)
