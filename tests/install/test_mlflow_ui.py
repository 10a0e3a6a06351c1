"""``routecast[ui]``: ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` serves the runs routecast logged.

A run is logged with routecast's own :class:`~routecast.training.tracking.Tracker` into a sqlite
store, then the real ``mlflow ui`` is started on 127.0.0.1 (one worker, bounded wait) and its REST
API (``/api/2.0/mlflow/runs/search``) must list that run with its parameters and metrics, and the
web page must be served (mlflow-skinny alone has no UI; the ``ui`` extra adds full mlflow).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from tests._support.fake_backend import free_port
from tests._support.processes import server_process

pytestmark = pytest.mark.slow

#: mlflow's server needs ~50 s to start on a busy 2-core machine
STARTUP_TIMEOUT = 180


@pytest.mark.skipif(importlib.util.find_spec("flask") is None or importlib.util.find_spec("mlflow.server") is None,
                    reason="full mlflow (pip install 'routecast[ui]') is not installed; mlflow-skinny has no UI")
def test_mlflow_ui_lists_the_run_routecast_logged(tmp_path):
    import httpx

    from routecast.training.tracking import Tracker

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    with Tracker(uri, run_name="train-linear") as tracker:
        tracker.log_params({"router": "linear", "alpha": 1.0})
        tracker.log_metrics({"aiq": 0.625})
    mlflow_exe = Path(sys.executable).with_name("mlflow")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [str(mlflow_exe), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]
    base = f"http://127.0.0.1:{port}"
    with server_process(command, base, startup_timeout=STARTUP_TIMEOUT, env=env, cwd=tmp_path):
        found = httpx.post(f"{base}/api/2.0/mlflow/runs/search",
                           json={"experiment_ids": [tracker.experiment_id], "max_results": 10}, timeout=60)
        page = httpx.get(f"{base}/", timeout=60)
    assert found.status_code == 200, found.text
    runs = found.json()["runs"]
    assert [r["info"]["run_id"] for r in runs] == [tracker.run_id]
    run = runs[0]
    assert run["info"]["run_name"] == "train-linear" and run["info"]["status"] == "FINISHED"
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"router": "linear", "alpha": "1.0"}
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"aiq": 0.625}
    assert page.status_code == 200 and "<html" in page.text.lower()
