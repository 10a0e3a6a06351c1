"""The report: leaderboard numbers as computed by hand in test_evaluate, JSON, plots."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from routecast.data.outcome_log import OutcomeLog
from routecast.evaluation.evaluate import evaluate, single_model_curves, sweep_router
from routecast.evaluation.plots import plot_call_shares, plot_cost_quality, use_log_cost_axis
from routecast.evaluation.report import write_report
from tests._support.routers import LookupRouter

SCORES = np.array([[1, 1], [0, 1], [1, 0], [0, 1]], dtype=float)


@pytest.fixture
def result():
    log = OutcomeLog(prompt_ids=[f"p{i}" for i in range(4)], prompts=[f"q{i}" for i in range(4)],
                     models=("weak", "strong"), scores=SCORES, costs=np.tile([1.0, 3.0], (4, 1)))
    curves = {"oracle": sweep_router(LookupRouter().fit(log), log, label="oracle",
                                     meta={"train_seconds": 1.25})}
    curves.update(single_model_curves(log))
    return evaluate(curves, log, n_boot=30, seed=0,
                    metadata={"routers": {"oracle": {"route_us_per_query": 42.0}}, "data": "tiny"})


def test_write_report_files_and_numbers(result, tmp_path):
    path = write_report(result, tmp_path / "out", title="Tiny evaluation",
                        extra_sections={"Settings": "seed 0"})
    out = tmp_path / "out"
    assert path == out / "report.md"
    assert sorted(p.name for p in out.iterdir()) == ["call_shares.png", "cost_quality.png",
                                                    "metrics.json", "report.md"]
    text = path.read_text()
    assert text.startswith("# Tiny evaluation\n")
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    # only the oracle is ranked; single models are points (listed by cost, never ranked)
    assert [r.split(" | ")[1] for r in rows] == ["oracle"]
    assert "| weak | single | point | 1 | 0.5000 |" in text and "| strong | single | point | 3 | 0.7500 |" in text
    assert "AIQ cost range 1 – 3 (cheapest to most expensive single model's mean cost" in text
    oracle = rows[0].split(" | ")
    assert oracle[3].startswith("0.8750 [")
    assert oracle[4] == "+0.2500"
    assert oracle[6] == "1.5 (0.50×)"
    assert oracle[7:10] == ["1.500", "12.5%", "20.0%"]
    assert oracle[10] == "1.25" and oracle[11].rstrip(" |") == "42.0"
    assert "## Settings\n\nseed 0" in text
    assert "Best single model: **strong**" in text

    data = json.loads((out / "metrics.json").read_text())
    assert data["zero_router_aiq"] == pytest.approx(0.625)
    top = data["leaderboard"][0]
    assert top["label"] == "oracle" and top["aiq"] == pytest.approx(0.875)
    assert top["meta"]["route_us_per_query"] == 42.0
    assert data["metadata"] == {"data": "tiny"}
    assert data["curves"]["oracle"]["hull"] == {"cost": [1.0, 2.0], "quality": [0.5, 1.0]}
    assert [r["label"] for r in data["leaderboard"]] == ["oracle"]
    assert data["cost_range"] == [1.0, 3.0]
    unranked = {r["label"]: r for r in data["unranked"]}
    assert unranked["strong"]["cost_to_match_best"] == pytest.approx(3.0) and unranked["strong"]["aiq"] is None
    for name in ("cost_quality.png", "call_shares.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_never_matching_is_json_null_and_shown_as_never(result, tmp_path):
    path = write_report(result, tmp_path, title="t")
    weak = next(r for r in json.loads((tmp_path / "metrics.json").read_text())["unranked"]
                if r["label"] == "weak")
    assert weak["cost_to_match_best"] is None  # inf is not JSON
    assert math.isinf(result.routers["weak"].cost_to_match_best)
    assert weak["status"] == "point" and weak["max_quality"] == pytest.approx(0.5)


def test_plots_are_atomic_and_log_scaled_when_costs_span_decades(result, tmp_path):
    assert not use_log_cost_axis(result.cost_range)  # 1 to 3
    assert use_log_cost_axis((0.001, 3.0)) and not use_log_cost_axis((0.0, 3.0))
    result.cost_range = (0.001, 3.0)
    target = tmp_path / "plot.png"
    assert plot_cost_quality(result, target) == target
    assert plot_call_shares(result, tmp_path / "shares.png").stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _mixing_curve(log, label, family, strength, k=6, rng=None):
    """A policy that sends a growing share of prompts to the strong model, picking well with
    probability ``strength``: (k, n) per-prompt cost and quality."""
    from routecast.evaluation.curves import Curve

    rng = rng or np.random.default_rng(abs(hash(label)) % 2**32)
    n = log.n_prompts
    costs, quality = [], []
    for share in np.linspace(0, 1, k):
        strong = rng.random(n) < share
        smart = rng.random(n) < strength
        pick = np.where(smart, np.argmax(log.scores, axis=1), np.where(strong, 2, 0))
        costs.append(log.costs[np.arange(n), pick])
        quality.append(log.scores[np.arange(n), pick])
    return Curve.from_points(costs, quality, [f"s{i}" for i in range(k)], label=label, models=log.models,
                             family=family)


def test_the_cost_quality_plot_groups_families_labels_the_best_and_bands_the_leaders():
    from matplotlib.collections import PathCollection, PolyCollection
    from matplotlib.lines import Line2D

    from routecast.evaluation.plots import _pyplot, cost_quality_figure

    rng = np.random.default_rng(0)
    n = 200
    scores = (rng.random((n, 3)) < [0.4, 0.6, 0.75]).astype(float)
    log = OutcomeLog(prompt_ids=[f"p{i}" for i in range(n)], prompts=[f"q{i}" for i in range(n)],
                     models=("small", "mid", "large"), scores=scores, costs=np.tile([1.0, 2.0, 4.0], (n, 1)))
    curves = {name: _mixing_curve(log, name, "a1", s) for name, s in
              (("mlp", 0.5), ("knn", 0.4), ("linear", 0.3), ("mf", 0.1))}
    curves.update({name: _mixing_curve(log, name, "a2", s) for name, s in (("task-prior", 0.45),
                                                                          ("cluster-prior", 0.2))})
    curves["cascade (ex-ante)"] = _mixing_curve(log, "cascade (ex-ante)", "cascade", 0.35)
    curves["random"] = _mixing_curve(log, "random", "a2", 0.0)
    from routecast.evaluation.curves import Curve

    pc, pq = log.costs[:, 1][None, :], log.scores[:, 1][None, :] * 0 + 0.9
    curves["best-of-one"] = Curve.from_points(pc, pq, ["only"], label="best-of-one", models=log.models, family="a2")
    curves.update(single_model_curves(log))
    result = evaluate(curves, log, n_boot=20, seed=0, prior_val_aiq={"task-prior": 0.6, "cluster-prior": 0.5})
    fig = cost_quality_figure(result)
    try:
        ax = fig.axes[0]
        names = [t.get_text() for t in ax.get_legend().get_texts()]
        aiq = {label: result.routers[label].aiq for label in curves if label in result.routers}
        learned = sorted(("mlp", "knn", "linear", "mf"), key=lambda label: -aiq[label])
        # grouped: a title per group, then its members; the three best learned routers are labelled
        assert names[0] == "learned routers"
        assert names[1:4] == [f"{label} (AIQ {aiq[label]:.3f})" for label in learned[:3]]
        assert not any(name.startswith(learned[3] + " ") for name in names)
        assert "priors (lookup tables)" in names and "cascades / ensembles" in names
        for prior in ("task-prior", "cluster-prior"):  # every prior is always shown
            assert f"{prior} (AIQ {aiq[prior]:.3f})" in names
        assert names[-1] == f"zero router (AIQ {result.zero_router_aiq:.3f})"
        # a one-point policy is a marker, not a line across the plot
        assert result.routers["best-of-one"].status == "point"
        assert not any(len(line.get_ydata()) and np.allclose(np.asarray(line.get_ydata(), float), 0.9)
                       for line in ax.get_lines() if isinstance(line, Line2D))
        markers = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
        assert any(len(o) == 1 and np.allclose(o[0], [2.0, 0.9]) for o in markers)
        # a band for the leading learned router, prior and cascade
        assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 3
        assert any(isinstance(c, PathCollection) for c in ax.collections)
        # the learned routers are drawn in blues, the priors in oranges
        entries = dict(zip(names, ax.get_legend().legend_handles))
        r, _, b, _ = entries[f"{learned[0]} (AIQ {aiq[learned[0]]:.3f})"].get_color()
        assert b > r
        r, _, b, _ = entries[f"task-prior (AIQ {aiq['task-prior']:.3f})"].get_color()
        assert r > b
    finally:
        _pyplot().close(fig)
