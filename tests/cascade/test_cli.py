"""``routecast cascade`` end to end on a small RouterArena subset (hashing encoder)."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from routecast.cli import app
from tests._support.paths import shared_dataset


@pytest.fixture(scope="module")
def small_parquet(tmp_path_factory):
    df = pd.read_parquet(shared_dataset("routerarena_2models"))
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
    labels = {row["label"] for row in metrics["leaderboard"] + metrics["unranked"]}  # points are unranked
    assert {"cascade (ex-ante)", "majority-vote", "best-of-n", "oracle-ensemble",
            "claude-3-haiku-20240307", "gemini-2.0-flash-001"} <= labels
    facts = metrics["cascades"]["cascade (ex-ante)"]
    assert facts["chain"] == ["gemini-2.0-flash-001", "claude-3-haiku-20240307"]  # cheapest first
    oracle = next(r for r in metrics["leaderboard"] + metrics["unranked"] if r["label"] == "oracle-ensemble")
    single_best = max(v["quality"] for v in metrics["single_models"].values())
    assert oracle["max_quality"] >= single_best
    # the report's cascade row shows the same chain, deferral and val-matched test quality as metrics.json
    report = (out / "report.md").read_text().splitlines()
    assert "## Cascades" in report
    cascades_section = report[report.index("## Cascades"):]  # the same label also heads an unranked-points row
    row = next(line for line in cascades_section if line.startswith("| cascade (ex-ante) |"))
    honest = facts.get("match_best_on_test")
    quality = f"{honest['quality']:.4f}" if honest else "unreachable on val"
    assert f"| {' → '.join(facts['chain'])} | {facts['deferral']} | {quality} |" in row, row


def test_cascade_command_unknown_chain_model(small_parquet, tmp_path):
    result = CliRunner().invoke(app, ["cascade", "--data", str(small_parquet), "--chain", "gpt-9,gemini-2.0-flash-001",
                                      "--out", str(tmp_path / "x")])
    assert result.exit_code == 2  # a ConfigError is one line on stderr, not a traceback
    assert len(result.stderr.strip().splitlines()) == 1 and "gpt-9" in result.stderr
