"""mlflow: a resumed tuning study continues its parent run; run names say command, data and router."""

from __future__ import annotations

import pytest

HASHING = "hashing:dim=64"


def test_resumed_study_continues_its_parent_run_and_names_say_what_ran(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from routecast.training.runs import run_name, train_to_folder, tune_to_folder

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "tune"
    common = dict(out=out, encoder=HASHING, limit=150, tracking_uri=store, params={})
    tune_to_folder("llmrouter_9models", "knn", trials=2, **common)
    tune_to_folder("llmrouter_9models", "knn", trials=3, **common)  # resumes the study: one more trial
    client = mlflow.MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("routecast.kind") == "tune"]
    trials = [r for r in runs if r.data.tags.get("routecast.kind") == "tune-trial"]
    assert len(parents) == 1 and parents[0].info.run_name == "tune llmrouter_9models knn"
    assert parents[0].data.tags["routecast.study"].startswith("routecast-knn-aiq@sqlite:///")
    assert parents[0].info.status == "FINISHED"
    assert len(trials) == 3 and {t.data.tags["mlflow.parentRunId"] for t in trials} == {parents[0].info.run_id}
    train_to_folder("llmrouter_9models", router="knn", out=tmp_path / "train", encoder=HASHING, limit=150,
                    tracking_uri=store)
    names = {r.info.run_name for r in client.search_runs([e.experiment_id for e in client.search_experiments()])}
    assert "train llmrouter_9models knn" in names
    assert run_name("evaluate", "/data/team/sheet.csv", "knn,mlp") == "evaluate sheet.csv knn,mlp"
