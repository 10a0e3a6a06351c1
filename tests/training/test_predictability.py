"""Per-benchmark predictability: AUC/Brier of predicted success, in metrics and the report."""

from __future__ import annotations

import numpy as np
import pytest

from routecast.evaluation.predictability import auc, predictability


def test_auc_counts_ties_half_and_needs_both_classes():
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auc(np.full(4, 0.5), np.array([0, 1, 0, 1])) == 0.5
    assert np.isnan(auc(np.array([0.2, 0.3]), np.array([1, 1])))


def test_a_per_benchmark_table_has_auc_one_half_within_each_benchmark():
    rng = np.random.default_rng(0)
    groups = np.repeat(["a", "b"], 50)
    scores = (rng.random((100, 2)) < 0.5).astype(float)
    table = np.where(groups[:, None] == "a", 0.3, 0.7) * np.ones((1, 2))  # one value per benchmark
    rows = predictability(table, scores, ["m1", "m2"], groups)
    assert [(r["benchmark"], r["model"]) for r in rows] == [("a", "m1"), ("a", "m2"), ("b", "m1"), ("b", "m2")]
    assert all(r["auc"] == 0.5 for r in rows)
    perfect = predictability(scores * 0.8 + 0.1, scores, ["m1", "m2"], groups)
    assert all(r["auc"] == 1.0 for r in perfect)
    assert perfect[0]["brier"] == pytest.approx(np.mean((scores[:50, 0] * 0.8 + 0.1 - scores[:50, 0]) ** 2))
