"""The CLI of collect / score / data inspect --map: one line and exit 2 on bad input."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from routecast.cli import app
from routecast.data import load_log
from tests._support.fake_openai import FakeOpenAI

runner = CliRunner()


def test_inspect_map_price_table_and_preferences(tmp_path):
    sheet = tmp_path / "team_sheet.csv"
    sheet.write_text("Question,LLM,Accuracy,Cost ($)\nq1,a,1,0.01\nq1,b,0,0.001\n", encoding="utf-8")
    res = runner.invoke(app, ["data", "inspect", str(sheet), "--json", "--map",
                              'prompt=Question,model=LLM,score=Accuracy,cost="Cost ($)"'])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["best_single_model"] == "a"
    res = runner.invoke(app, ["data", "inspect", str(sheet), "--map", "prompt=Q"])
    assert res.exit_code == 2 and "column 'Q'" in res.output and "Traceback" not in res.output
    prefs = tmp_path / "prefs.csv"
    prefs.write_text("prompt,model_a,model_b,winner\nq1,a,b,a\nq2,a,b,b\n", encoding="utf-8")
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"a": [1, 2], "b": [0.5, 1]}), encoding="utf-8")
    res = runner.invoke(app, ["data", "inspect", str(prefs), "--json", "--price-table", str(prices)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["kind"] == "pairwise" and summary["pairs"] == 2
    assert {r["model"]: r["mean_cost"] for r in summary["per_model"]} == {"a": (1 + 512) / 1e6, "b": (0.5 + 256) / 1e6}
    res = runner.invoke(app, ["data", "inspect", str(tmp_path / "missing.csv")])
    assert res.exit_code == 2 and "not found" in res.output


def test_collect_then_score_on_the_cli(tmp_path):
    backend = FakeOpenAI(lambda text, model: "Answer: B" if model == "good" else "Answer: C")
    try:
        prompts = tmp_path / "prompts.csv"
        prompts.write_text("prompt,reference\n" + "".join(f"question {i}?,B\n" for i in range(5)), encoding="utf-8")
        endpoints = tmp_path / "endpoints.yaml"
        endpoints.write_text(f"endpoints:\n  good: {{base_url: '{backend.base_url}'}}\n"
                             f"  bad: {{base_url: '{backend.base_url}'}}\n", encoding="utf-8")
        out = tmp_path / "collected.jsonl"
        res = runner.invoke(app, ["collect", str(prompts), "-e", str(endpoints), "-o", str(out), "--no-progress"])
        assert res.exit_code == 0, res.output
        assert "10 cells (5 prompts x 2 models; 10 sent, 0 from the journal)" in res.output
        scored = tmp_path / "scored.parquet"
        res = runner.invoke(app, ["score", str(out), "-s", "choice", "-o", str(scored), "--no-progress"])
        assert res.exit_code == 0, res.output
        assert "10 rows scored" in res.output and "mean score 0.5000" in res.output
        assert load_log(scored).mean_scores().tolist() == [1.0, 0.0]
        res = runner.invoke(app, ["score", str(out), "-s", "judge", "-o", str(scored)])
        assert res.exit_code == 2 and "--judge-endpoints" in res.output
        res = runner.invoke(app, ["collect", str(prompts), "-e", str(tmp_path / "nope.yaml"), "-o", str(out)])
        assert res.exit_code == 2 and "not found" in res.output
    finally:
        backend.stop()
