"""`routecast demo` and `routecast train` show the baseline that may win: the priors (lookup tables)
as leaderboard rows, each learned router's gain over the better prior with its interval, and a
last line saying in words whether learned routing beat the lookup table."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from routecast.cli import app
from routecast.training.commands import not_run_lines
from routecast.training.tables import routing_verdict

ENC = "hashing:dim=128"


def _result(gain, ci, *, prior="task-prior"):
    rows = [{"label": "mlp", "family": "a1", "aiq": 0.6123, "gain_over_prior": gain, "gain_over_prior_ci": ci},
            {"label": prior, "family": "a2", "aiq": 0.6193, "gain_over_prior": None, "gain_over_prior_ci": None}]
    return SimpleNamespace(prior_choice={"prior": prior}, leaderboard=lambda: rows,
                           routers={prior: SimpleNamespace(aiq=0.6193)})


def test_the_verdict_follows_the_paired_interval():
    assert routing_verdict(_result(-0.0070, [-0.0100, -0.0040])) == (
        "Learned routing did not beat the lookup table on this data: the better prior is ahead of the best "
        "learned router (mlp AIQ 0.6123 vs task-prior 0.6193, gain -0.0070 [95% CI -0.0100, -0.0040]).")
    assert routing_verdict(_result(0.0200, [0.0100, 0.0300])).startswith(
        "Learned routing beat the lookup table on this data: mlp AIQ 0.6123 vs task-prior 0.6193, gain +0.0200")
    assert routing_verdict(_result(0.0010, [-0.0050, 0.0070])).startswith(
        "Learned routing did not clearly beat the lookup table on this data")
    no_prior = _result(None, None)
    no_prior.prior_choice = {}
    assert routing_verdict(no_prior) is None


def test_not_run_lines_group_policies_with_the_same_reason():
    reason = "no responses logged"
    assert not_run_lines({"ex-post": reason, "agreement": reason, "task-prior": "no benchmark column",
                          "smoothie": reason}) == [
        "not run: ex-post, agreement, smoothie: no responses logged",
        "not run: task-prior: no benchmark column"]


def _leaderboard_rows(stdout: str) -> dict[str, list[str]]:
    table = stdout.split("### Leaderboard (test split)", 1)[1].split("\n\n", 2)[1]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    return {row[0]: row for row in rows}


def test_train_shows_the_priors_and_the_gain_over_the_better_one(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "-d", "llmrouter_9models", "-r", "linear", "--encoder", ENC,
                                      "--limit", "600", "-o", str(out), "--no-track"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    board = {row["label"]: row for row in metrics["leaderboard"]}
    assert {"linear", "task-prior", "cluster-prior"} <= set(board)
    rows = _leaderboard_rows(result.stdout)
    assert {"linear", "task-prior", "cluster-prior"} <= set(rows)
    linear = board["linear"]
    prior = metrics["prior_choice"]["prior"]
    assert linear["prior"] == prior and prior in board
    lo, hi = linear["gain_over_prior_ci"]
    assert rows["linear"][3] == f"{linear['gain_over_prior']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
    assert linear["gain_over_prior"] == pytest.approx(linear["aiq"] - board[prior]["aiq"], abs=1e-9)
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("Learned routing ") and f"vs {prior} {board[prior]['aiq']:.4f}" in last
    assert json.loads((out / "run.json").read_text())["router"] == "linear"  # the checkpoint is the router's


def test_demo_shows_priors_a_cascade_and_ends_with_the_verdict(tmp_path, monkeypatch):
    import routecast.training.runs as runs

    monkeypatch.setattr(runs, "DEMO_ROUTERS", ("linear", "best-single"))  # the demo's shape, in seconds
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--encoder", ENC, "-o", str(out), "--no-track"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    labels = {row["label"] for row in metrics["leaderboard"]}
    assert {"linear", "task-prior", "cluster-prior", "cascade (ex-ante)"} <= labels
    assert {"task-prior", "cluster-prior", "cascade (ex-ante)"} <= set(_leaderboard_rows(result.stdout))
    # the built-in log has no responses: the agreement cascade is listed with the reason
    assert "not run: agreement: no responses logged" in result.stdout
    board = {row["label"]: row for row in metrics["leaderboard"]}
    linear, prior = board["linear"], metrics["prior_choice"]["prior"]
    lo, hi = linear["gain_over_prior_ci"]
    expected = routing_verdict(SimpleNamespace(prior_choice=metrics["prior_choice"],
                                               leaderboard=lambda: metrics["leaderboard"],
                                               routers={prior: SimpleNamespace(aiq=board[prior]["aiq"])}))
    assert result.stdout.strip().splitlines()[-1] == expected
    word = "beat" if lo > 0 else ("did not beat" if hi < 0 else "did not clearly beat")
    assert f"Learned routing {word} the lookup table on this data" in expected
    report = (out / "report.md").read_text()
    assert "vs prior [95% CI]" in report and "| task-prior |" in report
