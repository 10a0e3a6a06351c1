"""Lightning distribution of the torch routers: options, rank-0-only writes, 2-process DDP on CPU.

The DDP runs use ``ddp_spawn`` with the gloo backend on 1,500 real prompts of llmrouter_9models
(hashing encoder, 8 epochs), so both fit in CI on 2 cores.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from routecast.errors import ConfigError
from routecast.router.distributed import (DistributedTrainingError, check_trainer_options, distribution_params,
                                          global_rank, is_rank_zero, lightning_routers)

HASHING = "hashing:dim=256"
MLP = {"max_epochs": 8, "hidden_dim": 64, "patience": 3}
TWO_RANKS = {"devices": 2, "strategy": "ddp_spawn"}


def test_only_lightning_routers_take_distribution_options():
    assert {"mlp", "finetuned-encoder"} <= set(lightning_routers())
    assert "knn" not in lightning_routers()
    assert distribution_params("knn", {"devices": 1, "strategy": "auto"}) == {}  # the defaults pass anywhere
    assert distribution_params("mlp", {"devices": 2, "strategy": "ddp"}) == {"devices": 2, "strategy": "ddp"}
    with pytest.raises(ConfigError, match="router 'knn' does not train with Lightning.*devices"):
        distribution_params("knn", {"devices": 2, "strategy": "ddp"})


@pytest.mark.parametrize("options, message", [
    ({"strategy": "fsdp"}, "strategy must be one of"),
    ({"devices": 2}, "need strategy 'ddp' or 'ddp_spawn'"),
    ({"devices": 0, "strategy": "ddp"}, "devices must be an integer >= 1"),
    ({"num_nodes": True, "strategy": "ddp"}, "num_nodes must be an integer"),
    ({"accelerator": "tpu9"}, "accelerator must be one of"),
])
def test_bad_distribution_options_are_refused(options, message):
    full = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto", **options}
    with pytest.raises(ConfigError, match=message):
        check_trainer_options(**full)


def test_rank_comes_from_lightning_environment(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert global_rank() == 0 and is_rank_zero()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert global_rank() == 1 and not is_rank_zero()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("NODE_RANK", "2")
    assert not is_rank_zero()
    monkeypatch.setenv("RANK", "0")  # a launcher's global rank wins
    assert is_rank_zero()


def test_cli_refuses_ddp_for_a_router_without_lightning(tmp_path):
    from routecast.cli import app

    result = CliRunner().invoke(app, ["train", "-d", "llmrouter_9models", "-r", "knn", "-o", str(tmp_path / "run"),
                                      "--devices", "2", "--strategy", "ddp", "--no-track"])
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line]
    assert len(lines) == 1 and "does not train with Lightning" in lines[0], result.output
    assert not (tmp_path / "run").exists()


def test_tune_refuses_subprocess_ddp(tmp_path):
    from routecast.training.runs import tune_to_folder

    with pytest.raises(ConfigError, match="needs strategy 'ddp_spawn'"):
        tune_to_folder("llmrouter_9models", "mlp", out=tmp_path / "t", trials=1, track=False,
                       distribution={"devices": 2, "strategy": "ddp"})
    assert not (tmp_path / "t").exists()


def test_a_rank_above_zero_writes_nothing(tmp_path, monkeypatch):
    """What Lightning's ``ddp`` children (and other nodes) run: the whole command, minus every write."""
    from routecast.training.runs import train_to_folder

    monkeypatch.setenv("LOCAL_RANK", "1")
    out = tmp_path / "run"
    run = train_to_folder("llmrouter_9models", out=out, router="knn", encoder=HASHING, limit=300,
                          track=True, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.report is None
    assert not out.exists()
    assert not (tmp_path / "mlflow.db").exists()
    monkeypatch.setenv("LOCAL_RANK", "0")
    run = train_to_folder("llmrouter_9models", out=out, router="knn", encoder=HASHING, limit=300, track=False)
    assert run.report is not None and (out / "router").is_dir() and (out / "run.json").is_file()


@pytest.fixture(scope="module")
def prepared():
    from routecast.router.pipeline import prepare

    return prepare("llmrouter_9models", encoder=HASHING, limit=1500, seed=0)


def _held_out_aiq(router, prepared) -> float:
    from routecast.evaluation.evaluate import evaluate, sweep_router

    curve = sweep_router(router, prepared.test, embeddings=prepared.embeddings("test"))
    return evaluate({"mlp": curve}, prepared.test, n_boot=20).routers["mlp"].aiq


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(prepared):
    """Same data, seed and global batch: 2 gloo ranks reach the held-out AIQ of 1 process within
    0.03 (measured: 0.612 vs 0.615), and the same validation loss within 0.01 (0.6608 vs 0.6609).
    They cannot be bit-identical: the ranks see a different shuffle and sum gradients in another order."""
    from routecast.router.pipeline import fit_router

    single, _ = fit_router("mlp", MLP, prepared)
    double, _ = fit_router("mlp", MLP, prepared, trainer_options=TWO_RANKS)
    assert double.trainer_options()["devices"] == 2 and double.trainer_options()["strategy"] == "ddp_spawn"
    assert "devices" not in double.get_params()  # where it trained is not a hyperparameter
    # the weights came back from rank 0 to this process, with the epoch report
    assert double.epochs_ == single.epochs_ == MLP["max_epochs"]
    assert 0 <= double.best_epoch_ < MLP["max_epochs"]
    assert abs(double.best_val_loss_ - single.best_val_loss_) < 0.01
    a1, a2 = _held_out_aiq(single, prepared), _held_out_aiq(double, prepared)
    assert 0.5 < a1 < 0.75 and abs(a1 - a2) < 0.03, (a1, a2)
    # and the two are not the same network by accident
    X = prepared.embeddings("test")[:50]
    assert not np.allclose(single.predict_quality(embeddings=X), double.predict_quality(embeddings=X))


@pytest.mark.slow
def test_a_dying_rank_gives_one_clear_error(prepared):
    from routecast.core.registry import make_router
    from tests._support.ddp import FailOnRank

    router = make_router("mlp", encoder=HASHING, **{**MLP, "max_epochs": 2}).set_trainer_options(**TWO_RANKS)
    with pytest.raises(DistributedTrainingError) as info:
        router.fit_with_callbacks(prepared.train, prepared.embeddings("train"), callbacks=[FailOnRank(1)])
    message = str(info.value)
    assert message == "DDP training failed: rank 1 raised RuntimeError: injected failure on rank 1"
    assert not hasattr(router, "net_")


@pytest.mark.slow
def test_cli_ddp_runs_the_command_per_rank_and_only_rank_zero_writes(tmp_path):
    """``--strategy ddp``: Lightning re-runs ``routecast train`` as rank 1; that rank trains its shard and
    neither locks, writes nor prints, so the folder and the leaderboard appear exactly once."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    routecast = Path(sys.executable).with_name("routecast")
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOCAL_RANK", "NODE_RANK", "RANK", "WORLD_SIZE", "MASTER_PORT")}  # Lightning picks a port
    env["MASTER_ADDR"] = "127.0.0.1"
    result = subprocess.run([str(routecast), "train", "-d", "llmrouter_9models", "-r", "mlp", "-o", str(out),
                             "--encoder", "hashing:dim=64", "--limit", "600", "-p", "max_epochs=2",
                             "-p", "hidden_dim=16", "--devices", "2", "--strategy", "ddp", "--no-track"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("run folder:") == 1, result.stdout
    params = json.loads((out / "run.json").read_text())["trainer_options"]
    assert params["devices"] == 2 and params["strategy"] == "ddp"
    assert (out / "router").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no lock or temp file left, no mlflow.db
