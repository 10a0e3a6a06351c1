"""MLflow tracking: runs are findable, metrics match the files, failures are fast and clean."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from routecast.training.tracking import (Tracker, TrackingError, check_tracking, metric_key, numeric_metrics,
                                         track_run)

HASHING = "hashing:dim=256"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module (creating one costs seconds); tests use own experiments."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _runs(uri, experiment, **kw):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return client, []
    return client, client.search_runs([exp.experiment_id], **kw)


@pytest.fixture(scope="module")
def evaluation_dir(small_log, tmp_path_factory):
    """A real evaluation (knn and best-single on a small llmrouter slice) written as metrics.json."""
    from routecast.atomic import write_json
    from routecast.router.encoders import get_encoder
    from routecast.core.registry import make_router
    from routecast.evaluation.evaluate import evaluate, sweep_router

    train, test = small_log.subset(np.arange(280)), small_log.subset(np.arange(280, 360))
    enc = get_encoder(HASHING)
    curves = {}
    for name in ("knn", "best-single"):
        router = make_router(name, **({"encoder": HASHING} if name == "knn" else {}))
        router.fit(train, enc.encode(list(train.prompts)) if router.uses_embeddings else None)
        curves[name] = sweep_router(router, test, embeddings=enc.encode(list(test.prompts))
                                    if router.uses_embeddings else None)
    result = evaluate(curves, test, n_boot=20)
    out = tmp_path_factory.mktemp("eval")
    write_json(out / "metrics.json", result.to_dict())
    (out / "report.md").write_text("# report\n")
    return out


def test_tracked_run_is_found_and_its_metrics_equal_metrics_json(evaluation_dir, store, monkeypatch):
    metrics = json.loads((evaluation_dir / "metrics.json").read_text())
    run_id = track_run("evaluate", params={"data": "llmrouter_9models", "routers": "knn,best-single"},
                       metrics_path=evaluation_dir / "metrics.json", artifacts_dir=evaluation_dir,
                       tracking_uri=store, run_name="eval-test", experiment="eval")
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    found = mlflow.search_runs(experiment_names=["eval"], filter_string="tags.`routecast.kind` = 'evaluate'")
    assert list(found["run_id"]) == [run_id]
    assert found["metrics.zero_router_aiq"].iloc[0] == pytest.approx(metrics["zero_router_aiq"], rel=1e-12)
    client, runs = _runs(store, "eval")
    assert [r.info.run_id for r in runs] == [run_id]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["routers"] == "knn,best-single"
    logged = run.data.metrics
    for row in metrics["leaderboard"]:
        assert logged[f"leaderboard.{row['label']}.aiq"] == pytest.approx(row["aiq"], rel=1e-12)
        assert logged[f"leaderboard.{row['label']}.max_quality"] == pytest.approx(row["max_quality"], rel=1e-12)
    assert logged["zero_router_aiq"] == pytest.approx(metrics["zero_router_aiq"], rel=1e-12)
    assert logged["n_prompts"] == metrics["n_prompts"]
    # every numeric leaf of metrics.json is logged, with its value
    scalars, series = numeric_metrics(metrics)
    assert {k: logged[k] for k in scalars} == pytest.approx(scalars, rel=1e-12)
    # the knn sweep is logged per lam: step i = i-th operating point
    history = client.get_metric_history(run_id, "curves.knn.points.quality")
    points = metrics["curves"]["knn"]["points"]
    assert len(history) == len(points) > 10
    by_step = {m.step: m.value for m in history}
    assert [by_step[i] for i in range(len(points))] == pytest.approx([p["quality"] for p in points], rel=1e-12)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"metrics.json", "report.md"} <= artifacts


def test_unreachable_tracking_uri_fails_fast_before_any_work(tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    worked = []
    start = time.perf_counter()
    with pytest.raises(TrackingError, match="unreachable"):
        with Tracker(uri, run_name="never"):
            worked.append(True)
    assert time.perf_counter() - start < 10
    assert worked == []
    with pytest.raises(TrackingError, match=str(uri)):
        check_tracking(uri)


def test_unreachable_tracking_uri_in_the_cli_leaves_nothing_behind(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from routecast.cli import app

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "tune-out"
    start = time.perf_counter()
    port = _closed_port()
    result = CliRunner().invoke(app, ["tune", "--data", "llmrouter_9models", "--router", "knn", "--trials", "1",
                                      "--encoder", HASHING, "--limit", "200", "--out", str(out),
                                      "--tracking-uri", f"http://127.0.0.1:{port}"])
    assert time.perf_counter() - start < 10
    assert result.exit_code == 2  # the TrackingError is one line, not a traceback
    assert len(result.stderr.strip().splitlines()) == 1 and f"127.0.0.1:{port}" in result.stderr
    assert not out.exists()  # no study, no config: the probe came before the work
    assert not (tmp_path / "mlflow.db").exists()


def test_a_failing_body_marks_the_run_failed_not_running(store):
    with pytest.raises(ValueError, match="boom"):
        with Tracker(store, run_name="fails", experiment="fails") as tracker:
            tracker.log_params({"router": "knn"})
            raise ValueError("boom")
    _, runs = _runs(store, "fails")
    assert len(runs) == 1
    assert runs[0].info.status == "FAILED"
    assert runs[0].data.tags["routecast.error"] == "ValueError: boom"


def test_disabled_tracker_logs_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with Tracker(uri, enabled=False) as tracker:
        tracker.log_params({"a": 1})
        tracker.log_metrics({"b": 2.0})
        with tracker.child("trial") as child:
            child.log_metrics({"c": 1.0})
    assert tracker.run_id is None
    assert track_run("train", {"a": 1}, {"b": 1.0}, enabled=False, tracking_uri=uri) is None
    assert not (tmp_path / "mlflow.db").exists()


def test_tune_logs_one_nested_run_per_trial(store, small_log):
    from routecast.router.pipeline import Prepared
    from routecast.training.tune import tune

    idx = np.arange(small_log.n_prompts)
    prepared = Prepared(log=small_log, train=small_log.subset(idx[:220]), val=small_log.subset(idx[220:290]),
                        test=small_log.subset(idx[290:]), encoder=HASHING, settings={"data": "small"})
    with Tracker(store, run_name="tune-knn", experiment="tune") as tracker:
        result = tune(prepared, "knn", n_trials=2, tracker=tracker)
    client, runs = _runs(store, "tune")
    parent = [r for r in runs if r.info.run_id == tracker.run_id][0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == tracker.run_id]
    assert len(children) == 2
    assert parent.data.metrics["best_value"] == pytest.approx(result.best_value)
    assert sorted(c.data.metrics["value"] for c in children) == pytest.approx(
        sorted(t["value"] for t in result.trials))
    assert {c.data.params["k"] for c in children} == {str(t["params"]["k"]) for t in result.trials}


def test_metric_names_are_made_mlflow_safe():
    assert metric_key("quality@budget") == "quality_budget"
    scalars, series = numeric_metrics({"a": {"b": 1, "c": "text", "d": [0.1, None, 0.3]},
                                       "rows": [{"label": "knn", "aiq": 0.5}]})
    assert scalars == {"a.b": 1.0, "rows.knn.aiq": 0.5}
    assert series == {"a.d": [(0, 0.1), (2, 0.3)]}


def test_a_tracked_train_run_has_the_headline_aiq_and_the_routers_hyperparameters(store, tmp_path):
    """Runs are compared in MLflow's table: one `aiq` (the printed one) with its interval, the gain
    over the prior, the router's hyperparameters as params, seed as a param, per-policy tables as
    artifacts (not hundreds of metrics), and the run's real duration."""
    from typer.testing import CliRunner

    from routecast.cli import app

    out = tmp_path / "run"
    started = time.time()
    result = CliRunner().invoke(app, ["train", "-d", "llmrouter_9models", "-r", "linear", "-p", "alpha=3.0",
                                      "--encoder", HASHING, "--limit", "500", "-o", str(out),
                                      "--tracking-uri", store])
    assert result.exit_code == 0, result.output
    finished = time.time()
    row = next(line for line in result.stdout.splitlines() if line.startswith("| linear |"))
    printed_aiq = float(row.split("|")[3].split("[")[0])
    metrics = json.loads((out / "metrics.json").read_text())
    linear = next(r for r in metrics["leaderboard"] if r["label"] == "linear")

    client, runs = _runs(store, "routecast", filter_string="tags.`routecast.kind` = 'train'")
    run = next(r for r in runs if r.info.run_name == "train llmrouter_9models linear")
    logged, params = run.data.metrics, run.data.params
    assert logged["aiq"] == pytest.approx(printed_aiq, abs=5e-5)
    assert logged["aiq"] == pytest.approx(linear["aiq"], rel=1e-12)
    assert [logged["aiq_ci_low"], logged["aiq_ci_high"]] == pytest.approx(linear["aiq_ci"], rel=1e-12)
    assert logged["gain_over_prior"] == pytest.approx(linear["gain_over_prior"], rel=1e-12)
    assert [logged["gain_over_prior_ci_low"], logged["gain_over_prior_ci_high"]] == pytest.approx(
        linear["gain_over_prior_ci"], rel=1e-12)
    ratio = linear["cost_ratio_to_best"]  # None in metrics.json when the router never matches the best model
    assert logged.get("cost_ratio_to_best") == (None if ratio is None else pytest.approx(ratio, rel=1e-12))
    assert logged["aiq.task-prior"] == pytest.approx(
        next(r["aiq"] for r in metrics["leaderboard"] if r["label"] == "task-prior"), rel=1e-12)
    assert run.data.tags["routecast.policy"] == "linear"
    # the router's hyperparameters (given and default) are params; the seed is a param, not a metric
    from routecast.core.registry import make_router

    defaults = make_router("linear").get_params()
    assert params["alpha"] == "3.0" and params["router"] == "linear" and params["seed"] == "0"
    assert set(defaults) - {"encoder"} <= set(params)
    assert "seed" not in logged and not any("seed" in k for k in logged)
    assert len(logged) < 40  # headline figures, not hundreds of per-point metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "tables")}
    assert {"tables/leaderboard.json", "tables/unranked.json"} <= artifacts
    local = client.download_artifacts(run.info.run_id, "tables/leaderboard.json", str(tmp_path))
    table = json.loads(Path(local).read_text())
    rows = {r[table["columns"].index("label")]: r for r in table["data"]}
    assert set(rows) == {r["label"] for r in metrics["leaderboard"]}
    assert rows["linear"][table["columns"].index("aiq")] == pytest.approx(linear["aiq"], abs=1e-9)  # JSON: 10 digits
    # the duration is the run's, not the logging's
    seconds = (run.info.end_time - run.info.start_time) / 1000
    assert seconds >= 0.6 * (finished - started) and run.info.start_time / 1000 >= started - 1
