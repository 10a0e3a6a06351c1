"""Pairwise preference logs in train / evaluate / calibrate, and --map / --price-table on them.

The preference CSV is built from REAL outcomes: 300 prompts of the built-in routellm_strong_weak
log, the winner of each (Mixtral, GPT-4) pair decided by the logged scores (equal scores tie).
The cheap hashing encoder and quick hyperparameters keep every command to seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from routecast.cli import app
from routecast.errors import DataError, RoutingError

ENC = "hashing:dim=256"
MIXTRAL, GPT4 = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
PRICES_YAML = f"{MIXTRAL}: [0.6, 0.6]\n{GPT4}: [10, 30]\n"
MF_QUICK = ["-p", "epochs=3", "-p", "dim=16"]


def _preference_rows(n: int = 300, seed: int = 0) -> list[dict]:
    from routecast.data import load_log

    log = load_log("routellm_strong_weak")
    rng = np.random.default_rng(seed)
    rows = []
    for i in rng.choice(log.n_prompts, n, replace=False):
        sa, sb = log.scores[i]
        a, b = log.models
        winner = "tie" if sa == sb else (a if sa > sb else b)
        if rng.random() < 0.5:  # both orders appear in the file
            a, b = b, a
        rows.append({"prompt": log.prompts[i], "model_a": a, "model_b": b, "winner": winner})
    return rows


@pytest.fixture(scope="module")
def prefs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prefs")
    rows = _preference_rows()
    pd.DataFrame(rows).to_csv(folder / "prefs.csv", index=False)
    (folder / "prices.yaml").write_text(PRICES_YAML)
    return folder, rows


def invoke(args, cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"routecast {' '.join(map(str, args))}: {result.output}\n{result.exception!r}"
    return result


@pytest.fixture(scope="module")
def trained(prefs, tmp_path_factory):
    """`routecast train --data prefs.csv --router mf --price-table prices.yaml` (once per module)."""
    folder, _ = prefs
    mp = pytest.MonkeyPatch()
    try:
        result = invoke(["train", "--data", "prefs.csv", "--router", "mf", "--price-table", "prices.yaml",
                         "--encoder", ENC, "--out", "run_mf", "--no-track", *MF_QUICK], folder, mp)
    finally:
        mp.undo()
    return folder / "run_mf", result.output


def test_train_mf_on_pairs_writes_a_run_with_win_rates(trained, prefs):
    run_dir, output = trained
    folder, rows = prefs
    assert (run_dir / "router" / "config.json").exists()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["kind"] == "pairwise" and run["router"] == "mf"
    assert run["split"]["prices"] == str((folder / "prices.yaml").resolve())
    assert run["data"] == str((folder / "prefs.csv").resolve())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # default reference: the model with most wins in the whole log
    wins = {m: sum(r["winner"] == m for r in rows) for m in (MIXTRAL, GPT4)}
    assert metrics["reference"] == max(wins, key=wins.get) == GPT4
    points = metrics["routers"]["mf"]
    assert points[0]["lam"] == 0.0 and len(points) >= 2
    for p in points:  # 2 models, one pair per prompt: every choice is judged against the reference
        assert p["judged"] + p["not_judged"] == metrics["n_prompts"] and p["not_judged"] == 0
        assert p["ci95"][0] <= p["win_rate"] <= p["ci95"][1]
        assert sum(p["call_shares"].values()) == pytest.approx(1.0)
    # costs come from the price table: the cheapest point costs what always-Mixtral costs
    always = metrics["single_models"]
    assert points[-1]["cost_per_query"] == pytest.approx(always[MIXTRAL]["cost_per_query"])
    assert always[GPT4]["win_rate"] == 0.5 and always[GPT4]["chose_reference"] == metrics["n_prompts"]
    assert always[GPT4]["cost_per_query"] > 10 * always[MIXTRAL]["cost_per_query"] > 0
    assert "win rate" in output and "not judged" in (run_dir / "report.md").read_text()


def test_evaluate_mf_and_sw_ranking_on_pairs(prefs, monkeypatch):
    folder, _ = prefs
    result = invoke(["evaluate", "--data", "prefs.csv", "--routers", "mf,sw-ranking", "--price-table", "prices.yaml",
                     "--encoder", ENC, "--out", "ev", "--no-track", "--n-boot", "50",
                     "--reference", MIXTRAL], folder, monkeypatch)
    metrics = json.loads((folder / "ev" / "metrics.json").read_text())
    assert metrics["reference"] == MIXTRAL and set(metrics["routers"]) == {"mf", "sw-ranking"}
    always_gpt4 = metrics["single_models"][GPT4]
    # GPT-4 beats Mixtral more often than it loses on these real scores
    assert always_gpt4["win_rate"] > 0.5
    for points in metrics["routers"].values():
        rates = [p["win_rate"] for p in points]
        assert all(0.0 <= r <= 1.0 for r in rates)
        assert points[-1]["call_shares"][MIXTRAL] == 1.0 and points[-1]["win_rate"] == 0.5
    report = (folder / "ev" / "report.md").read_text()
    assert "sw-ranking" in report and f"Reference model: **{MIXTRAL}**" in report
    assert "cost_quality.png" not in result.output


def test_calibrate_a_budget_on_a_pairwise_run(trained, prefs, monkeypatch):
    run_dir, _ = trained
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cheap = metrics["single_models"][MIXTRAL]["cost_per_query"]
    dear = metrics["single_models"][GPT4]["cost_per_query"]
    budget = cheap + 0.3 * (dear - cheap)
    monkeypatch.chdir(run_dir.parent.parent)  # another folder: run.json holds absolute paths
    result = CliRunner().invoke(app, ["calibrate", str(run_dir), "--budget", repr(budget), "--no-track"])
    assert result.exit_code == 0, result.output
    cal = json.loads((run_dir / "calibration.json").read_text())
    assert cal["calibration_split"]["cost"] <= budget * (1 + 1e-9)
    assert 0.0 < cal["calibration_split"]["strong_share"] < 1.0
    assert cal["test_split"]["judged"] == cal["test_split"]["n_prompts"] > 0
    assert any("win rate of the chosen model" in note for note in cal["notes"])
    from routecast.core.checkpoint import load_checkpoint

    router = load_checkpoint(run_dir / "router")
    assert router.default_operating_point() == f"budget-{budget:.6g}"
    assert router.calibration_["kind"] == "pairwise"


def test_a_spreadsheet_with_other_column_names_trains_with_map(prefs, tmp_path, monkeypatch):
    _, rows = prefs
    sheet = pd.DataFrame({"Question": [r["prompt"] for r in rows], "First": [r["model_a"] for r in rows],
                          "Second": [r["model_b"] for r in rows], "Verdict": [r["winner"] for r in rows]})
    sheet.to_csv(tmp_path / "sheet.csv", index=False)
    (tmp_path / "prices.json").write_text(json.dumps({MIXTRAL: [0.6, 0.6], GPT4: [10, 30]}))
    invoke(["train", "--data", "sheet.csv", "--router", "sw-ranking", "--map",
            "prompt=Question,model_a=First,model_b=Second,winner=Verdict", "--price-table", "prices.json",
            "--encoder", ENC, "--out", "run", "--no-track", "-p", "newton_steps=5"], tmp_path, monkeypatch)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["split"]["columns"] == "prompt=Question,model_a=First,model_b=Second,winner=Verdict"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["n_prompts"] > 0
    # without the mapping the same file is one clear line naming the missing column
    monkeypatch.chdir(tmp_path)
    bad = CliRunner().invoke(app, ["train", "--data", "sheet.csv", "--router", "mf", "--encoder", ENC,
                                   "--out", "bad", "--no-track"])
    assert bad.exit_code == 2 and "prompt" in bad.output and "Traceback" not in bad.output


def test_a_router_that_cannot_learn_from_pairs_is_one_clear_error(prefs):
    from routecast.data import load_data
    from routecast.core.registry import make_router

    folder, _ = prefs
    pairs = load_data(folder / "prefs.csv")
    with pytest.raises(RoutingError, match=r"router 'knn' cannot learn from pairwise preferences.*"
                                           r"routers that can: mf, sw-ranking"):
        make_router("knn", encoder=ENC).fit(pairs)


def test_knn_on_pairs_in_the_cli_fails_before_any_work(prefs, monkeypatch):
    folder, _ = prefs
    monkeypatch.chdir(folder)
    result = CliRunner().invoke(app, ["evaluate", "--data", "prefs.csv", "--routers", "mf,knn", "--encoder", ENC,
                                      "--out", "ev_knn", "--no-track"])
    assert result.exit_code == 2 and "router 'knn' cannot learn from pairwise preferences" in result.output
    assert not (folder / "ev_knn").exists()


def test_tuning_a_pairwise_log_is_a_clear_error(prefs, monkeypatch):
    folder, _ = prefs
    monkeypatch.chdir(folder)
    result = CliRunner().invoke(app, ["tune", "--data", "prefs.csv", "--router", "mf", "--encoder", ENC,
                                      "--trials", "1", "--out", "tune", "--no-track"])
    assert result.exit_code == 2 and "tuning needs an outcome log" in result.output


def test_fit_from_pairs_takes_costs_from_the_price_table_and_calibration_needs_them(prefs):
    from routecast.data import load_data, split_log
    from routecast.core.registry import make_router

    folder, _ = prefs
    priced = load_data(folder / "prefs.csv", prices=str(folder / "prices.yaml"))
    train, val, _ = split_log(priced, seed=0)
    assert val.prices is priced.prices  # the table survives the split
    router = make_router("mf", encoder=ENC, epochs=2, dim=8).fit(train)
    costs = dict(zip(router.models_, router.costs_))
    assert costs == pytest.approx(train.model_costs())
    assert costs[GPT4] > costs[MIXTRAL] > 0
    assert router.strong_weak().strong == router.models_.index(GPT4)  # the model winning most often
    router.calibrate(val)
    curve = router.operating_curve()
    assert curve.measured and curve.n_prompts == val.n_prompts
    assert curve.cost.min() == pytest.approx(costs[MIXTRAL], rel=0.2)
    unpriced = make_router("mf", encoder=ENC, epochs=2, dim=8).fit(load_data(folder / "prefs.csv"))
    assert np.isnan(unpriced.costs_).all()
    with pytest.raises(RoutingError, match="needs a cost per model.*price table"):
        unpriced.calibrate(val)


# ------------------------------------------------------- the definitions, by hand
def _three_model_pairs():
    """Three prompts, three models: p1 a>b and a~c; p2 b>c; p3 c>a."""
    from routecast.data.preferences import PairwiseLog

    return PairwiseLog(prompt_ids=["p1", "p1", "p2", "p3"], prompts=["one", "one", "two", "three"],
                       model_a=["a", "a", "b", "c"], model_b=["b", "c", "c", "a"],
                       winner=["model_a", "tie", "model_a", "model_a"], source="hand")


def test_judged_scores_and_win_rate_against_a_reference_by_hand():
    from routecast.evaluation.pairwise import default_reference, judged_prompts

    pairs = _three_model_pairs()
    judged = judged_prompts(pairs, ("a", "b", "c"))
    assert judged.prompt_ids.tolist() == ["p1", "p2", "p3"] and judged.first_pair.tolist() == [0, 2, 3]
    nan = np.nan
    np.testing.assert_allclose(judged.scores(), [[0.75, 0.0, 0.5], [nan, 1.0, 0.0], [0.0, nan, 1.0]])
    # against a: b lost to a on p1; c tied on p1, won on p3; a itself is 0.5 everywhere
    np.testing.assert_allclose(judged.versus("a"), [[0.5, 0.0, 0.5], [0.5, nan, nan], [0.5, nan, 1.0]])
    assert default_reference(pairs) == "a"  # every model wins once at win rate 0.5: ties go by name
    with pytest.raises(RoutingError, match="reference model 'z'"):
        judged.versus("z")


def test_evaluate_counts_choices_not_judged_against_the_reference():
    from routecast.evaluation.pairwise import evaluate_pairwise

    pairs = _three_model_pairs()
    result = evaluate_pairwise({}, pairs, reference="a", n_boot=20)
    b, c = result.single_models["b"], result.single_models["c"]
    # always b: judged on p1 only (lost); p2, p3 have no (b, a) pair -> not judged, not dropped
    assert (b.win_rate, b.judged, b.not_judged) == (0.0, 1, 2)
    assert (c.win_rate, c.judged, c.not_judged) == (0.75, 2, 1)
    assert result.single_models["a"].chose_reference == 3 and np.isnan(b.cost)  # no price table


def test_prepare_keeps_pairs_between_the_given_models_and_limits_prompts():
    from routecast.router.pipeline import _select_pairs

    pairs = _three_model_pairs()
    sub = _select_pairs(pairs, models=["a", "c"], limit=None, seed=0)
    assert sub.prompt_ids.tolist() == ["p1", "p3"]
    assert _select_pairs(pairs, models=None, limit=2, seed=0).n_prompts == 2
    with pytest.raises(DataError, match=r"model\(s\) z not in the pairwise log"):
        _select_pairs(pairs, models=["a", "z"], limit=None, seed=0)


def test_cascade_on_a_pairwise_log_is_a_clear_error(prefs, monkeypatch):
    folder, _ = prefs
    monkeypatch.chdir(folder)
    result = CliRunner().invoke(app, ["cascade", "--data", "prefs.csv", "--encoder", ENC, "--price-table",
                                      "prices.yaml", "--out", "casc"])
    assert result.exit_code == 2 and "a cascade needs an outcome log" in result.output


def test_evaluate_an_outcome_spreadsheet_with_map_and_a_price_table(tmp_path, monkeypatch):
    """--map and --price-table on an outcome log: a sheet with its own headers and no cost column."""
    from routecast.data import load_log

    log = load_log("llmrouter_9models").select_models(["qwen2.5-7b-instruct", "llama-3.1-8b-instruct"])
    log = log.subset(np.arange(120))
    rows = [{"Question": log.prompts[i], "LLM": m, "Accuracy": log.scores[i, j]}
            for i in range(log.n_prompts) for j, m in enumerate(log.models)]
    pd.DataFrame(rows).to_csv(tmp_path / "sheet.csv", index=False)
    (tmp_path / "prices.json").write_text(json.dumps({"qwen2.5-7b-instruct": [0.3, 0.3],
                                                      "llama-3.1-8b-instruct": [0.9, 0.9]}))
    invoke(["evaluate", "--data", "sheet.csv", "--routers", "best-single,cheapest", "--map",
            "prompt=Question,model=LLM,score=Accuracy", "--price-table", "prices.json", "--encoder", ENC,
            "--out", "ev", "--no-track", "--n-boot", "20"], tmp_path, monkeypatch)
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["metadata"]["data"]["columns"] == "prompt=Question,model=LLM,score=Accuracy"
    single = metrics["single_models"]  # the sheet has no cost column: every cost is from the price table
    ratio = single["llama-3.1-8b-instruct"]["cost"] / single["qwen2.5-7b-instruct"]["cost"]
    assert ratio == pytest.approx(3.0) and single["qwen2.5-7b-instruct"]["cost"] > 0
