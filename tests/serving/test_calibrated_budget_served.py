"""What you calibrate is what you serve: calibrate a budget, export, then `routecast route` with no
flags meets it on test (mean expected cost <= 1.05 x budget), and `serve` (official openai client)
routes each prompt exactly as the batch file did."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests._support.fake_backend import FakeBackend
from tests._support.runs import make_run
from tests._support.serving import serving

HASHING = "hashing:dim=256"
SETTINGS = {"val": 0.2, "test": 0.2, "seed": 3, "use_logged_split": False, "limit": 400, "models": None}


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    from routecast.training.calibrate import calibrate_run

    run = tmp_path_factory.mktemp("run")
    _, prepared = make_run(run, data="llmrouter_9models", router="knn", params={"k": 30}, encoder=HASHING,
                           settings=SETTINGS)
    costs = np.nanmean(prepared.val.costs, axis=0)
    budget = float(costs.min() + 0.3 * (costs.max() - costs.min()))
    result = calibrate_run(run, budget=budget)
    return run, prepared, budget, result


def test_route_file_and_server_use_the_calibrated_point(calibrated, tmp_path):
    from openai import OpenAI

    from routecast.cli import app as cli

    run, prepared, budget, result = calibrated
    ckpt = tmp_path / "ckpt"
    runner = CliRunner()
    done = runner.invoke(cli, ["export", str(run), "--out", str(ckpt)])
    assert done.exit_code == 0, done.output
    prompts = tmp_path / "prompts.jsonl"
    test_prompts = list(prepared.test.prompts)
    prompts.write_text("".join(json.dumps({"id": f"t{i}", "prompt": p}) + "\n" for i, p in enumerate(test_prompts)))
    out = tmp_path / "d.jsonl"
    done = runner.invoke(cli, ["route", str(ckpt), "-i", str(prompts), "-o", str(out)])  # no knob at all
    assert done.exit_code == 0, done.output
    decisions = [json.loads(line) for line in out.read_text().splitlines()]
    name = result["operating_point"]["name"]
    assert {d["operating_point"] for d in decisions} == {name}
    assert [d["lam"] for d in decisions] == pytest.approx([result["lam"]] * len(decisions))
    assert np.mean([d["expected_cost"] for d in decisions]) <= 1.05 * budget
    backend = FakeBackend("any")
    try:
        with serving(ckpt, {"backends": {"*": {"base_url": backend.base_url, "timeout": 5}}}) as server:
            client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=10)
            for d, text in list(zip(decisions, test_prompts))[:25]:
                raw = client.chat.completions.with_raw_response.create(
                    model="router", messages=[{"role": "user", "content": text}])
                assert raw.headers["x-routecast-operating-point"] == name
                assert raw.headers["x-routecast-model"] == d["model"]
                assert float(raw.headers["x-routecast-expected-cost"]) == pytest.approx(d["expected_cost"], rel=1e-5)
    finally:
        backend.stop()
