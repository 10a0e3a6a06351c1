"""Repeated (prompt, model) rows, as every traffic log has them: merged by default (mean score and
cost, a count per cell, one warning line), or kept first/last, or refused naming the user's columns."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from routecast.data import load_log
from routecast.errors import DataError, RoutecastWarning

ROWS = ("Question,LLM,Grade,cost\n"
        "x,a,1,0.10\n"
        "x,b,0,0.30\n"
        "x,a,0,0.20\n"
        "y,a,1,0.10\n"
        "x,a,0.5,\n")
MAP = "prompt=Question,model=LLM,score=Grade"


def _file(tmp_path):
    path = tmp_path / "team_sheet.csv"
    path.write_text(ROWS, encoding="utf-8")
    return path


def test_mean_is_the_default_and_counts_the_rows(tmp_path):
    with pytest.warns(RoutecastWarning, match=r"merged 2 repeated \(prompt, model\) rows") as caught:
        log = load_log(_file(tmp_path), columns=MAP)
    assert len([w for w in caught if issubclass(w.category, RoutecastWarning)]) == 1
    assert log.models == ("a", "b")
    np.testing.assert_allclose(log.scores, [[0.5, 0.0], [1.0, np.nan]])
    np.testing.assert_allclose(log.costs, [[0.15, 0.30], [0.10, np.nan]])  # an empty cost is not a zero
    np.testing.assert_array_equal(log.counts, [[3, 1], [1, 0]])
    long = log.to_long()
    assert long["count"].tolist() == [3, 1, 1]


@pytest.mark.parametrize("how, score, cost", [("first", 1.0, 0.10), ("last", 0.5, np.nan)])
def test_first_and_last(tmp_path, how, score, cost):
    with pytest.warns(RoutecastWarning, match=f"into the {how} row"):
        log = load_log(_file(tmp_path), columns=MAP, duplicates=how)
    assert log.scores[0, 0] == score
    np.testing.assert_equal(log.costs[0, 0], cost)
    np.testing.assert_array_equal(log.counts[:, 0], [3, 1])


def test_error_names_the_users_columns(tmp_path):
    with pytest.raises(DataError) as info:
        load_log(_file(tmp_path), columns=MAP, duplicates="error")
    err = info.value
    assert (err.row, err.column) == (3, "Question")
    assert "'x' and LLM 'a' appear twice (first at row 1)" in str(err) and "prompt_id" not in str(err)
    assert "--duplicates mean" in str(err)


def test_unique_log_has_no_counts_and_no_warning(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("prompt,model,score\nx,a,1\nx,b,0\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log = load_log(path)
    assert log.counts is None and "count" not in log.to_long().columns


def test_bad_choice_is_refused(tmp_path):
    with pytest.raises(DataError, match="duplicates must be one of mean, first, last, error, got 'sum'"):
        load_log(_file(tmp_path), columns=MAP, duplicates="sum")


def test_cli_option_reaches_the_loader(tmp_path):
    from routecast.cli import app

    path = _file(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["data", "inspect", str(path), "--map", MAP, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["prompts"] == 2
    refused = runner.invoke(app, ["data", "inspect", str(path), "--map", MAP, "--duplicates", "error"])
    assert refused.exit_code == 2 and "duplicate row: Question 'x'" in refused.output
