"""The user's path through the CLI, in real subprocesses: inspect, evaluate, train, export, route.

Uses the built-in data (a seeded 400-prompt subset) and the hashing encoder so it runs in
seconds; what it checks is the plumbing between commands and the files a user gets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROUTECAST = [sys.executable, "-m", "routecast.cli"]
ENC = "hashing:dim=256"


def run(args, tmp_path, *, check=True):
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(ROUTECAST + [str(a) for a in args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"routecast {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_does_not_import_the_training_stack():
    code = ("import sys, routecast.cli; heavy = [m for m in ('torch', 'pandas', 'pytorch_lightning', "
            "'mlflow', 'optuna', 'fastapi', 'sentence_transformers') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bad_input_is_one_line_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,model,score\nhello,a,0.5\nhello,b,1.7\n")
    proc = run(["data", "inspect", bad], tmp_path, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "row 2" in proc.stderr and "score" in proc.stderr


@pytest.mark.slow
def test_evaluate_train_export_route(tmp_path):
    listing = run(["datasets"], tmp_path).stdout
    assert "llmrouter_9models" in listing and "routellm_strong_weak" in listing

    out = tmp_path / "eval"
    run(["evaluate", "--data", "llmrouter_9models", "--routers", "knn,linear,best-single,oracle",
         "--encoder", ENC, "--limit", 400, "--n-boot", 50, "--out", out, "--no-track"], tmp_path)
    metrics = json.loads((out / "metrics.json").read_text())
    labels = {row["label"]: row for row in metrics["leaderboard"]}
    assert {"knn", "linear", "best-single", "oracle"} <= set(labels)
    assert labels["oracle"]["aiq"] >= max(labels[r]["aiq"] for r in ("knn", "linear", "best-single"))
    assert labels["best-single"]["aiq"] == pytest.approx(metrics["zero_router_aiq"], abs=0.02)
    leaderboard = (out / "report.md").read_text().split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    assert leaderboard.count("| knn |") == 1
    assert (out / "cost_quality.png").stat().st_size > 10_000

    run_dir = tmp_path / "run"
    run(["train", "--data", "llmrouter_9models", "--router", "knn", "--param", "k=15", "--encoder", ENC,
         "--limit", 400, "--out", run_dir, "--no-track"], tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["router"] == "knn" and info["params"]["k"] == 15
    manifest = json.loads((run_dir / "router" / "manifest.json").read_text())
    assert "config.json" in manifest["files"]
    assert all(len(entry["sha256"]) == 64 and entry["size"] > 0 for entry in manifest["files"].values())

    ckpt = tmp_path / "ckpt"
    run(["export", run_dir, "--out", ckpt], tmp_path)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in enumerate(
        ["What is 17 * 23?", "Translate 'good morning' into French.", "Write a haiku about rain."])))
    decisions = tmp_path / "decisions.jsonl"
    run(["route", ckpt, "--input", prompts, "--output", decisions, "--budget", "0.0002"], tmp_path)
    rows = [json.loads(line) for line in decisions.read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2]
    assert all(r["model"] in info_models(ckpt) for r in rows)
    # the run was calibrated on its validation split: a budget maps to the lam measured there
    from routecast.core.curve import Curve

    calibration = json.loads((ckpt / "config.json").read_text())["state"]["calibration_"]
    n_val = json.loads((run_dir / "metrics.json").read_text())["metadata"]["n_val"]
    assert calibration["measured"] is True and calibration["n_prompts"] == n_val == 40
    curve = Curve.from_dict(calibration)
    assert len(curve.lams) >= 2 and (curve.lams[1:] >= curve.lams[:-1]).all()
    model_costs = [m["expected_cost"] for m in json.loads((ckpt / "config.json").read_text())["models"]]
    assert min(model_costs) * 0.999 <= curve.cost.min() and curve.cost.max() <= max(model_costs) * 1.001
    assert ((0 <= curve.quality) & (curve.quality <= 1)).all()
    assert ((0 <= curve.strong_share) & (curve.strong_share <= 1)).all()
    assert rows[0]["lam"] == pytest.approx(curve.lams[curve.index_for(budget=0.0002)])
    unconstrained = tmp_path / "free.jsonl"
    run(["route", ckpt, "--input", prompts, "--output", unconstrained], tmp_path)
    free = [json.loads(line) for line in unconstrained.read_text().splitlines()]
    assert sum(r["expected_cost"] for r in rows) <= sum(r["expected_cost"] for r in free)
    assert len({r["lam"] for r in rows}) == 1 and rows[0]["lam"] > 0


def info_models(ckpt: Path) -> set[str]:
    config = json.loads((ckpt / "config.json").read_text())
    return {m["name"] for m in config["models"]}
