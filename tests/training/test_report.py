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
