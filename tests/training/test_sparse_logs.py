"""Traffic logs (one model per request, a thumbs up/down on some): they load, train, evaluate,
calibrate and export with no flag beyond --price-table; val/test are doubly robust estimates from
the logged cells, and the report says so."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from routecast.data import load_log
from routecast.data.inspect import summarize
from routecast.data.outcome_log import OutcomeLog
from routecast.errors import DataError
from routecast.evaluation.off_policy import pseudo_outcomes
from routecast.router.estimated_split import estimated_split
from routecast.router.pipeline import prepare
from tests._support.data_files import traffic_chat_log


def test_pseudo_outcomes_values():
    scores = np.array([[1.0, np.nan], [np.nan, 0.0]])
    p = np.array([[0.5, 0.5], [0.25, 0.25]])
    model = np.array([[0.6, 0.4], [0.2, 0.8]])
    out = pseudo_outcomes(scores, p, model)
    np.testing.assert_allclose(out, [[0.6 + (1 - 0.6) / 0.5, 0.4], [0.2, 0.8 + (0 - 0.8) / 0.25]])
    np.testing.assert_allclose(pseudo_outcomes(scores, p, np.zeros((2, 2))), [[2.0, 0.0], [0.0, 0.0]])


def _sparse(n=3000, seed=0, p=(1 / 3, 1 / 3, 1 / 3)):
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, 3)) < np.array([0.3, 0.6, 0.8])).astype(float)
    chosen = rng.choice(3, size=n, p=p)
    scores = np.full((n, 3), np.nan)
    scores[np.arange(n), chosen] = truth[np.arange(n), chosen]
    log = OutcomeLog([f"p{i}" for i in range(n)], [f"q{i}" for i in range(n)], ("a", "b", "c"), scores,
                     np.tile([1.0, 2.0, 3.0], (n, 1)))
    return log, truth


def test_estimated_split_is_unbiased_per_model_and_says_how():
    log, truth = _sparse(p=(0.6, 0.2, 0.2))
    train, _ = _sparse(seed=1)
    filled, info = estimated_split(log, train)
    assert info["estimator"] == "dr" and info["propensities"] == "estimated" and info["grouped_by"] is None
    assert info["logged_cells"] == 3000 and info["complete_rows"] == 0 and info["positivity_fails"] == []
    assert not np.isnan(filled.scores).any()
    np.testing.assert_allclose(filled.scores.mean(axis=0), truth.mean(axis=0), atol=0.04)
    naive = log.mean_scores()  # with a skewed logging policy the plain mean is still right here...
    np.testing.assert_allclose(naive, truth.mean(axis=0), atol=0.04)
    dm, info_dm = estimated_split(log, train, estimator="dm")
    assert info_dm["estimator"] == "dm"
    np.testing.assert_allclose(dm.scores, np.tile(train.mean_scores(), (3000, 1)))


def test_logged_propensities_and_positivity():
    log, _ = _sparse(n=300)
    meta = log.meta.assign(propensity=0.25, benchmark=["x"] * 150 + ["y"] * 150)
    scores = log.scores.copy()
    scores[150:, 2] = np.nan  # model c never logged on benchmark y
    scores[150:, 0] = np.where(np.isnan(scores[150:, 0]) & np.isnan(scores[150:, 1]), 1.0, scores[150:, 0])
    log = OutcomeLog(log.prompt_ids, log.prompts, log.models, scores, log.costs, meta=meta)
    p, source = log.logging_propensities("benchmark")
    assert source == "logged" and np.nanmax(p) == 0.25
    _, info = estimated_split(log, log)
    assert info["propensities"] == "logged" and info["grouped_by"] == "benchmark"
    assert info["positivity_fails"] == [{"group": "y", "model": "c", "prompts": 150}]
    unlogged = OutcomeLog(log.prompt_ids, log.prompts, log.models, scores, log.costs,
                          meta=meta.drop(columns="propensity"))
    p_est, source = unlogged.subset(np.arange(150, 300)).logging_propensities("benchmark")
    assert source == "estimated"
    assert p_est[0, 2] == 0.0 and abs(p_est[0].sum() - 1.0) < 1e-12


def test_one_model_or_no_score_is_one_clear_line(tmp_path):
    one = tmp_path / "one.csv"
    one.write_text("prompt,model,score\nx,a,1\ny,a,0\ny,b,\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        prepare(str(one), encoder="hashing")
    text = str(info.value)
    assert "only 'a' has a logged score" in text and "second model" in text and "routecast collect" in text
    assert "\n" not in text
    none = tmp_path / "none.csv"
    none.write_text("prompt,model,score\nx,a,\nx,b,\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no score is logged.*routecast score"):
        prepare(str(none), encoder="hashing")


def test_inspect_reports_coverage_not_an_oracle(tmp_path):
    path = tmp_path / "traffic.jsonl"
    traffic_chat_log(path, n=90)
    summary = summarize(load_log(path))
    assert summary["sparse"] is True and summary["oracle_quality"] is None and summary["complete_rows"] == 0
    shares = [r["coverage"] for r in summary["per_model"]]
    assert sum(shares) == pytest.approx(1.0) and all(0 < s < 1 for s in shares)
    by_topic = summary["coverage_by_benchmark"]
    assert set(by_topic) == {"greeting", "math", "history"}
    assert all(sum(v.values()) == pytest.approx(1.0) for v in by_topic.values())
    dense = summarize(load_log("llmrouter_9models"))
    assert dense["sparse"] is False and dense["oracle_quality"] == pytest.approx(0.79504, abs=1e-5)


@pytest.mark.parametrize("propensity", [False, True])
def test_chat_traffic_log_trains_evaluates_calibrates_exports(tmp_path, monkeypatch, propensity):
    from routecast.cli import app

    monkeypatch.chdir(tmp_path)
    made = traffic_chat_log(tmp_path / "traffic.jsonl", n=360, propensity=propensity)
    (tmp_path / "prices.json").write_text(json.dumps(made["prices"]), encoding="utf-8")
    runner = CliRunner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trained = runner.invoke(app, ["train", "-d", "traffic.jsonl", "--price-table", "prices.json",
                                      "-r", "linear", "-o", "run"])
    assert trained.exit_code == 0, trained.output
    assert "test split estimated, not measured" in trained.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["oracle_quality"] is None
    kind = "logged" if propensity else "estimated per benchmark"
    assert any(f"DR estimate from 72 logged cells with propensities {kind}" in n for n in metrics["notes"])
    # the estimated single-model qualities track the truth of the test prompts (DR is unbiased)
    truth = made["truth"].mean(axis=0)
    est = [metrics["single_models"][m]["quality"] for m in made["models"]]
    assert est[2] > est[0] and abs(est[2] - truth[2]) < 0.2
    calibrated = runner.invoke(app, ["calibrate", "run", "--budget", "0.0003", "--no-track"])
    assert calibrated.exit_code == 0, calibrated.output
    assert "test quality is the DR estimate from 72 logged cells" in calibrated.output
    cal = json.loads((tmp_path / "run" / "calibration.json").read_text())
    assert 0 < cal["test_split"]["quality"] < 1.2 and cal["test_split"]["cost"] <= 0.0003 * 1.5
    exported = runner.invoke(app, ["export", "run", "-o", "exported"])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "exported" / "manifest.json").is_file()


def test_propensity_weights_per_cell():
    scores = np.array([[1.0, np.nan], [np.nan, 0.0], [0.5, np.nan], [1.0, np.nan]])
    log = OutcomeLog(["a", "b", "c", "d"], ["a", "b", "c", "d"], ("x", "y"), scores, np.ones((4, 2)))
    w = log.propensity_weights()
    # model x logged on 3 of 4 prompts (p = 3/4), y on 1 of 4 (p = 1/4): weights 4/3 and 4, mean 1 over logged cells
    raw = np.array([4 / 3, 4, 4 / 3, 4 / 3])
    np.testing.assert_allclose(w[~np.isnan(scores)], raw / raw.mean())
    assert np.isnan(w[np.isnan(scores)]).all()
    complete = OutcomeLog(["a"], ["a"], ("x", "y"), [[1.0, 0.0]], [[1.0, 1.0]])
    assert complete.propensity_weights() is None


def test_cascades_and_oracle_are_not_run_on_a_traffic_log(tmp_path):
    from routecast.training.runs import evaluate_to_folder

    made = traffic_chat_log(tmp_path / "traffic.jsonl", n=240)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = evaluate_to_folder(str(tmp_path / "traffic.jsonl"), "knn,oracle", out=tmp_path / "ev", encoder="hashing",
                                 cascades=("all",), prices=made["prices"], track=False)
    skipped = run.experiment.skipped
    assert "oracle" in skipped and "not logged" in skipped["oracle"]
    assert "no prompt has every model's score (a traffic log)" in skipped["ex-ante"]
    assert "knn" in run.experiment.result.routers
