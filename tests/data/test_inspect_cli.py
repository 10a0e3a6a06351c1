from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from routecast.cli import app
from routecast.data import load_log
from routecast.data.inspect import summarize, summary_tables
from tests._support import data_files as helpers


def _shared(folder):
    path = helpers.SHARED_DATA / folder / "data.parquet"
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (expected beside the repo: ../shared/data)")
    return path


@pytest.mark.parametrize("folder", ["arena_bench_v1", "routerarena_2models", "alpaca_eval_gpt4turbo_judge"])
def test_summary_matches_pandas(folder):
    path = _shared(folder)
    df = pd.read_parquet(path)
    summary = summarize(load_log(path))
    expected = df.groupby("model")["score"].mean()
    got = {r["model"]: r["mean_score"] for r in summary["per_model"]}
    assert set(got) == set(expected.index)
    for model, value in expected.items():
        assert got[model] == pytest.approx(value, abs=1e-12)
    logged = df.groupby("model")["score"].count()
    assert {r["model"]: r["n_logged"] for r in summary["per_model"]} == logged.to_dict()
    assert summary["best_single_model"] == expected.idxmax()
    wide = df.pivot(index="prompt_id", columns="model", values="score")
    assert summary["prompts"] == len(wide)
    assert summary["oracle_quality"] == pytest.approx(wide.max(axis=1).dropna().mean())
    assert summary["missing_cells"] == int(wide.isna().sum().sum())
    per_prompt = df.drop_duplicates("prompt_id")
    assert summary["benchmarks"] == per_prompt["benchmark"].value_counts().to_dict()
    if df["cost"].notna().any():
        costs = df.groupby("model")["cost"].mean()
        for r in summary["per_model"]:
            assert r["mean_cost"] == pytest.approx(costs[r["model"]])
    tables = summary_tables(summary)
    per_model = next(t for t in tables if t["title"] == "per model")
    assert len(per_model["rows"]) == summary["n_models"]
    assert all(len(row) == len(t["columns"]) for t in tables for row in t["rows"])


@pytest.mark.parametrize("folder", helpers.FOLDERS)
def test_cli_inspect_every_shared_folder(folder):
    path = _shared(folder)
    result = CliRunner().invoke(app, ["data", "inspect", str(path.parent), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["prompts"] == pd.read_parquet(path, columns=["prompt_id"])["prompt_id"].nunique()


def test_cli_inspect_builtin_tables_and_datasets():
    runner = CliRunner()
    result = runner.invoke(app, ["data", "inspect", "llmrouter_9models"])
    assert result.exit_code == 0
    assert "llama-3.1-nemotron-51b-instruct" in result.output and "oracle quality" in result.output
    assert "0.7950" in result.output
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0
    assert "routellm_strong_weak" in result.output and "15,521" in result.output and "Apache-2.0" in result.output


def test_cli_bad_file_is_one_line_error(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,model,score\nhi,m,2\n")
    proc = subprocess.run([sys.executable, "-c", "from routecast.cli import main; main()", "data", "inspect", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "row 1" in proc.stderr and "'score'" in proc.stderr and "Traceback" not in proc.stderr


def test_inspect_refuses_a_price_table_that_misses_a_model(tmp_path):
    """A price table without a model whose costs are not logged was silently half-applied (exit 0)."""
    log = tmp_path / "log.csv"
    log.write_text("prompt,model,score\nq1,a,0.5\nq1,b,1\nq2,a,0\nq2,b,1\n")
    partial = tmp_path / "prices.json"
    partial.write_text('{"a": [1, 2]}')
    result = CliRunner().invoke(app, ["data", "inspect", str(log), "--price-table", str(partial)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: file {log}, column 'model': price table {partial} has no price for model(s) b "
        "(their costs are not logged); priced: a"]
    full = tmp_path / "full.json"
    full.write_text('{"a": [1, 2], "b": [3, 4]}')
    result = CliRunner().invoke(app, ["data", "inspect", str(log), "--price-table", str(full), "--json"])
    assert result.exit_code == 0
    costs = {r["model"]: r["mean_cost"] for r in json.loads(result.stdout)["per_model"]}
    assert costs["a"] > 0 and costs["b"] > costs["a"]


def test_an_unmapped_cost_column_is_named_not_dropped(tmp_path):
    """'Cost ($)' varies per call, so it is not metadata; unmapped it vanished and costs became relative."""
    from routecast.errors import RoutecastWarning

    sheet = tmp_path / "sheet.csv"
    sheet.write_text("Question,LLM,Accuracy,Cost ($)\nq1,a,0.5,0.01\nq1,b,1,0.02\nq2,a,0,0.01\nq2,b,1,0.03\n")
    with pytest.warns(RoutecastWarning, match=r"column 'Cost \(\$\)' looks like a cost but is not read") as caught:
        log = load_log(sheet, columns="prompt=Question,model=LLM,score=Accuracy")
    assert len(caught) == 1 and 'map it: cost="Cost ($)"' in str(caught[0].message)
    assert np.isnan(log.costs).all()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RoutecastWarning)  # mapped: read as the cost, no warning
        mapped = load_log(sheet, columns='prompt=Question,model=LLM,score=Accuracy,cost="Cost ($)"')
    assert mapped.mean_costs().tolist() == pytest.approx([0.01, 0.025])
    from routecast.cli import _one_line_warning

    assert _one_line_warning(caught[0].message, RoutecastWarning, "loaders.py", 1) == \
        f"warning: {caught[0].message}\n"  # the CLI prints it as one line
