"""``routecast cascade`` end to end on a small RouterArena subset (hashing encoder)."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from routecast.cli import app
from routecast.errors import ConfigError


@pytest.fixture(scope="module")
def small_parquet(tmp_path_factory):
    df = pd.read_parquet("/work/shared/data/routerarena_2models/data.parquet")
    keep = pd.Series(df["prompt_id"].unique()).sample(n=160, random_state=0)
    path = tmp_path_factory.mktemp("data") / "arena_small.parquet"
    df[df["prompt_id"].isin(set(keep))].to_parquet(path)
    return path


def test_cascade_command_writes_metrics_and_report(small_parquet, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["cascade", "--data", str(small_parquet), "--deferral", "ex-ante",
                                      "--encoder", "hashing:dim=128", "--n-boot", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    labels = {row["label"] for row in metrics["leaderboard"]}
    assert {"cascade (ex-ante)", "majority-vote", "best-of-n", "oracle-ensemble",
            "claude-3-haiku-20240307", "gemini-2.0-flash-001"} <= labels
    facts = metrics["cascades"]["cascade (ex-ante)"]
    assert facts["chain"] == ["gemini-2.0-flash-001", "claude-3-haiku-20240307"]  # cheapest first
    oracle = next(r for r in metrics["leaderboard"] if r["label"] == "oracle-ensemble")
    single_best = max(v["quality"] for v in metrics["single_models"].values())
    assert oracle["max_quality"] >= single_best
    assert "## Cascades" in (out / "report.md").read_text()


def test_cascade_command_unknown_chain_model(small_parquet, tmp_path):
    result = CliRunner().invoke(app, ["cascade", "--data", str(small_parquet), "--chain", "gpt-9,gemini-2.0-flash-001",
                                      "--out", str(tmp_path / "x")])
    assert isinstance(result.exception, ConfigError)
    assert "gpt-9" in str(result.exception)
