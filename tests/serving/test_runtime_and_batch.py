"""The serving runtime (routecast.load) and offline batch routing (routecast route / export)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import routecast
from routecast.errors import CheckpointError, RoutingError
from routecast.serving.batch import route_file
from tests._support.paths import REPO
from tests._support.serving import ENCODER, FAST_PARAMS, fitted_knn, make_checkpoint, prompts_of, synthetic_log


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("rt") / "ck")


def test_runtime_routes_like_the_router(ckpt):
    router = fitted_knn()
    runtime = routecast.load(ckpt)
    prompts = prompts_of("math", 5, seed=11) + prompts_of("chat", 5, seed=12)
    decisions = runtime.route(prompts, lam=30.0)
    assert [d["model"] for d in decisions] == router.route(prompts, lam=30.0).chosen
    assert [d["model"] for d in decisions] == ["large"] * 5 + ["small"] * 5
    first = decisions[0]
    assert tuple(first) == ("model", "rank", "predicted_quality", "expected_cost", "lam", "operating_point", "ranking")
    assert first["ranking"][0] == first["model"] and sorted(first["ranking"]) == ["large", "medium", "small"]
    assert first["expected_cost"] == pytest.approx(0.01)
    assert runtime.last_timing.n_prompts == 10
    assert runtime.last_timing.encode_seconds > 0 and runtime.last_timing.head_seconds > 0
    assert runtime.route_batch(prompts, batch_size=3, lam=30.0) == decisions
    assert runtime.route("Say hello to Ana in a cheerful way")[0]["model"] == "small"  # ties -> cheapest
    assert runtime.route([]) == []


def test_runtime_refuses_conflicting_targets_and_bad_prompts(ckpt):
    runtime = routecast.load(ckpt)
    with pytest.raises(RoutingError, match="at most one"):
        runtime.route(["x"], lam=1.0, budget=0.01)
    with pytest.raises(RoutingError, match="prompt #2 is int"):
        runtime.route(["x", 3])


def test_runtime_does_not_import_training_stack(tmp_path):
    """routecast.load + route in a fresh interpreter: no Lightning, optuna or mlflow, even for a torch router."""
    from routecast.core.checkpoint import save_checkpoint
    from routecast.core.registry import make_router

    ckpts = [str(make_checkpoint(tmp_path / "knn"))]
    mlp = make_router("mlp", encoder=ENCODER, **{k: v for k, v in FAST_PARAMS.items()
                                                  if k in ("max_epochs", "hidden_dim")})
    ckpts.append(str(save_checkpoint(mlp.fit(synthetic_log()), tmp_path / "mlp")))
    code = (
        "import sys, json, routecast\n"
        "for path in sys.argv[1:]:\n"
        "    routecast.load(path).route(['Solve for x: 2x + 1 = 5'])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pytorch_lightning', 'lightning', 'lightning_fabric', 'optuna', 'mlflow'))\n"
        "print(json.dumps(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *ckpts], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_route_file_streams_in_chunks(ckpt, tmp_path):
    runtime = routecast.load(ckpt)
    prompts = prompts_of("math", 7, seed=3) + prompts_of("chat", 6, seed=4)
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": f"q{i}", "prompt": p}) if i % 2 else json.dumps({"prompt": p})
             for i, p in enumerate(prompts)]
    src.write_text("\n".join(lines[:5]) + "\n\n" + "\n".join(lines[5:]) + "\n")
    calls = []
    original = runtime.route
    runtime.route = lambda texts, **kw: calls.append(len(texts)) or original(texts, **kw)
    summary = route_file(runtime, src, tmp_path / "out.jsonl", batch_size=4, lam=30.0)
    assert calls == [4, 4, 4, 1]  # never more than batch_size prompts in memory
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == 13 and summary["n_prompts"] == 13
    assert out[0]["id"] == 1 and out[1]["id"] == "q1"  # line number when no id; blank line 6 skipped
    assert out[5]["id"] == "q5" and out[6]["id"] == 8
    assert [o["model"] for o in out] == ["large"] * 7 + ["small"] * 6
    assert summary["decisions"] == {"small": 6, "medium": 0, "large": 7}


def test_route_file_text_format(ckpt, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Solve for x: 3x + 4 = 10\nSay hello to Bo in a cheerful way\n")
    route_file(routecast.load(ckpt), src, tmp_path / "out.jsonl", fmt="text", lam=30.0)
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(o["id"], o["model"]) for o in out] == [(1, "large"), (2, "small")]


# bad input lines: tests/serving/test_batch_files.py::test_each_bad_line_is_one_error_naming_the_line


def test_cli_route_export_and_errors(ckpt, tmp_path):
    """The real `routecast` entry point: export from a run folder, route a file, refuse a tampered one."""
    run = tmp_path / "run"
    (run / "router").parent.mkdir()
    import shutil

    shutil.copytree(ckpt, run / "router")
    (run / "metrics.json").write_text("{}")
    exe = [sys.executable, "-m", "routecast.cli"]
    done = subprocess.run(exe + ["export", str(run), "--out", str(tmp_path / "exported")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "exported knn router (3 models)" in done.stdout
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"id": i, "prompt": p}) for i, p in
                             enumerate(prompts_of("math", 3) + prompts_of("chat", 3))) + "\n")
    done = subprocess.run(exe + ["route", str(tmp_path / "exported"), "--input", str(src), "--output",
                                 str(tmp_path / "out.jsonl"), "--lam", "30", "--batch-size", "2"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "routed 6 prompts" in done.stdout and "small: 3, large: 3" in done.stdout
    (tmp_path / "exported" / "evil.pkl").write_bytes(b"x")
    done = subprocess.run(exe + ["route", str(tmp_path / "exported"), "--input", str(src), "--output",
                                 str(tmp_path / "out2.jsonl")], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2
    assert "evil.pkl: file is not listed in manifest.json" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out2.jsonl").exists()


def test_export_accepts_checkpoint_dir_and_refuses_other_folders(ckpt, tmp_path):
    from routecast.core.checkpoint import copy_checkpoint, load_checkpoint

    copy_checkpoint(ckpt, tmp_path / "copy")
    assert load_checkpoint(tmp_path / "copy").models_ == ("small", "medium", "large")
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        copy_checkpoint(tmp_path / "nothing", tmp_path / "x")
