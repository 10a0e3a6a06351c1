"""``collect --fill``: value-of-information choice of missing cells, sent through the real collector
(fake OpenAI-compatible endpoints on 127.0.0.1, official openai client), appended to the log."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from routecast.cli import app
from routecast.data import load_log
from routecast.data.fill_cells import read_fill_target
from routecast.data.outcome_log import OutcomeLog
from routecast.data.score import score_log
from routecast.errors import ConfigError, DataError
from routecast.training.fill import (choose_cells, choose_cells_by_prompt, fill_log, plan_fill, prompt_groups,
                                     ridge_belief)
from tests._support.fake_openai import FakeOpenAI

COST = {"a": 0.002, "b": 0.001}


def _traffic(path: Path, n: int = 24, blocked=(1, 2)) -> list[dict]:
    """One model per prompt (alternating), two benchmarks, a reference, some prompts not to resend."""
    rows = []
    for i in range(n):
        model = "ab"[i % 2]
        rows.append({"prompt": f"question {i}?", "model": model, "score": float(i % 3 == 0), "cost": COST[model],
                     "benchmark": "alpha" if i < n // 2 else "beta", "reference": "B",
                     "propensity": 0.5, "do_not_resend": i in blocked})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


@pytest.fixture
def backend():
    fake = FakeOpenAI(lambda text, model: "Answer: B" if model == "a" else "Answer: C")
    yield fake
    fake.stop()


def _endpoints(fake) -> dict:
    return {"endpoints": {"a": {"base_url": fake.base_url, "concurrency": 4},
                          "b": {"base_url": fake.base_url, "concurrency": 4, "requests_per_second": 200}}}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_fill_sends_chosen_cells_once_and_appends_them(tmp_path, backend):
    log = tmp_path / "traffic.jsonl"
    rows = _traffic(log)
    original = log.read_bytes()
    budget = 0.0105  # room for ~7 cells of a (0.002) or ~10 of b (0.001)
    result = fill_log(log, _endpoints(backend), budget, backoff=0.01, progress=False)
    plan, got = result.plan, result.collected
    # the budget holds, on the estimated cost of exactly the chosen cells
    models = ("a", "b")
    assert plan.estimated_cost == pytest.approx(sum(COST[models[j]] for _, j in plan.cells))
    assert 0 < plan.estimated_cost <= budget
    # what reached the endpoint: the chosen cells, each once; never a blocked prompt or a logged cell
    logged = {(r["prompt"], r["model"]) for r in rows}
    asked = Counter(backend.answered)
    assert set(asked.values()) == {1} and len(asked) == len(plan.cells) == got.sent_cells
    assert not {text for text, _ in asked} & {"question 1?", "question 2?"}
    assert not set(asked) & logged
    # the log keeps its lines and gains one unscored row per answer, with prompt-level columns carried
    data = log.read_bytes()
    assert data.startswith(original)
    added = _lines(log)[len(rows):]
    assert len(added) == got.cells == len(plan.cells)
    assert {(r["prompt"], r["model"]) for r in added} == set(asked)
    for r in added:
        assert r["score"] is None and r["reference"] == "B" and "propensity" not in r
        assert r["response"] == ("Answer: B" if r["model"] == "a" else "Answer: C")
        i = int(r["prompt"].split()[1].rstrip("?"))
        assert r["benchmark"] == ("alpha" if i < 12 else "beta") and r["do_not_resend"] is False
    # rerun: the log now holds those cells, so the same budget buys new ones and none twice
    again = fill_log(log, _endpoints(backend), budget, backoff=0.01, progress=False)
    assert set(Counter(backend.answered).values()) == {1}
    assert not {tuple(map(int, c)) for c in again.plan.cells} & {tuple(map(int, c)) for c in plan.cells}
    # routecast score labels the appended rows and keeps the logged scores
    scored = tmp_path / "scored.jsonl"
    res = score_log(log, "choice", scored, progress=False)
    assert res.scored == len(added) + len(again.plan.cells) and res.kept == len(rows)
    full = load_log(scored)
    assert int((~np.isnan(full.scores)).sum()) == len(rows) + res.scored
    by_model = {m: full.scores[:, j] for j, m in enumerate(full.models)}
    new_a = [r for r in _lines(scored)[len(rows):] if r["model"] == "a"]
    assert all(r["score"] == 1.0 for r in new_a)
    assert np.nanmax(by_model["b"]) <= 1.0


def test_killed_fill_resumes_without_resending(tmp_path, backend):
    log = tmp_path / "traffic.csv"
    rows = _traffic(tmp_path / "t.jsonl")
    import pandas as pd

    pd.DataFrame(rows).to_csv(log, index=False)
    out = tmp_path / "filled.csv"
    target = read_fill_target(log)
    plan = plan_fill(target, 0.008)
    half = plan.cells[: len(plan.cells) // 2]
    from routecast.data.fill_cells import collect_cells

    collect_cells(target, half, _endpoints(backend), out, backoff=0.01, progress=False)  # "killed" after half
    assert sum(backend.answered.values()) == len(half)
    result = fill_log(log, _endpoints(backend), 0.008, out=out, backoff=0.01, progress=False)
    assert result.plan.cells == plan.cells  # the same (seeded) choice from the unchanged log
    assert (result.collected.resumed_cells, result.collected.sent_cells) == (len(half), len(plan.cells) - len(half))
    assert set(Counter(backend.answered).values()) == {1} and sum(backend.answered.values()) == len(plan.cells)
    filled = pd.read_csv(out)
    assert len(filled) == len(rows) + len(plan.cells)
    assert filled["score"].iloc[len(rows):].isna().all() and filled["response"].iloc[len(rows):].notna().all()


def _belief_log(groups: dict[str, tuple[int, float, float, int]]) -> OutcomeLog:
    """``name -> (prompts, mean of a, mean of b, logged cells per model)``: a logged on the first
    cells of each group, b on the next ones, with 0/1 scores at exactly the given means."""
    ids, bench, scores = [], [], []
    for name, (n, qa, qb, k) in groups.items():
        for i in range(n):
            row = [np.nan, np.nan]
            if i < k:
                row[0] = float(i < round(qa * k))
            elif i < 2 * k:
                row[1] = float(i - k < round(qb * k))
            ids.append(f"{name}-{i}")
            bench.append(name)
            scores.append(row)
    n = len(ids)
    import pandas as pd

    return OutcomeLog(np.array(ids), np.array(ids), ("a", "b"), np.array(scores), np.tile([0.002, 0.001], (n, 1)),
                      meta=pd.DataFrame({"benchmark": bench}))


def test_voi_prefers_the_uncertain_group_and_spreads_over_equal_ones():
    # equal costs: one decision per group (lam does not matter); "covered" is clear-cut and well
    # observed, "thin" a tie seen on 3 prompts per model: its cells are the ones worth buying
    log = _belief_log({"covered": (200, 0.9, 0.3, 100), "thin": (200, 0.67, 0.67, 3)})
    groups = (log.meta["benchmark"] == "thin").to_numpy().astype(np.int64)
    candidates = np.isnan(log.scores)
    blocked = np.zeros(log.n_prompts, bool)
    blocked[200 + np.arange(6, 40)] = True  # unlogged prompts of "thin" that must not be resent
    candidates &= ~blocked[:, None]
    cells, spent, lams = choose_cells(log, 0.0305, np.array([0.001, 0.001]), groups, candidates=candidates)
    assert lams.tolist() == [0.0] and len(cells) == 30 and spent == pytest.approx(0.03)
    assert all(candidates[i, j] for i, j in cells) and len(set(cells)) == len(cells)
    assert not any(blocked[i] for i, _ in cells) and not any(~np.isnan(log.scores[i, j]) for i, j in cells)
    in_thin = sum(groups[i] for i, _ in cells)
    assert in_thin / len(cells) >= 0.9  # the well-covered, clear-cut group is worth almost nothing
    # two identical uncertain groups share the budget: diminishing returns per (group, model)
    twin = _belief_log({"x": (100, 0.67, 0.67, 3), "y": (100, 0.67, 0.67, 3)})
    g2 = (twin.meta["benchmark"] == "y").to_numpy().astype(np.int64)
    cells, _, _ = choose_cells(twin, 0.0405, np.array([0.001, 0.001]), g2, candidates=np.isnan(twin.scores))
    per_group = Counter(int(g2[i]) for i, _ in cells)
    assert abs(per_group[0] - per_group[1]) <= 1 and sum(per_group.values()) == 40


def _two_regions(n: int = 120, seed: int = 0):
    """Prompts in two regions of a 2-d embedding space, models a and b at equal cost. "clear"
    (first half): a logged on 40 prompts scoring 1, b on 40 (half of them the same) scoring 0; "close" (second half): a
    and b each logged on 3 prompts, both averaging 2/3 (a tie seen barely)."""
    rng = np.random.default_rng(seed)
    half = n // 2
    X = 5 * np.vstack([np.tile([1.0, 0.0], (half, 1)), np.tile([0.0, 1.0], (half, 1))]) + rng.normal(0, 0.2, (n, 2))
    scores = np.full((n, 2), np.nan)
    scores[:40, 0], scores[half - 40:half, 1] = 1.0, 0.0
    scores[half:half + 3, 0] = [1.0, 1.0, 0.0]
    scores[half + 3:half + 6, 1] = [1.0, 0.0, 1.0]
    ids = np.array([f"p{i}" for i in range(n)])
    return OutcomeLog(ids, ids, ("a", "b"), scores, np.full((n, 2), 0.001)), X


def test_prompt_value_buys_where_the_decision_is_close_and_unseen():
    log, X = _two_regions()
    candidates = np.isnan(log.scores)
    cells, spent, lams = choose_cells_by_prompt(log, 0.0205, np.array([0.001, 0.001]), X, candidates=candidates)
    assert lams.tolist() == [0.0] and len(cells) == 20 and spent == pytest.approx(0.02)
    assert len(set(cells)) == 20 and all(candidates[i, j] for i, j in cells)
    in_close = sum(i >= 60 for i, _ in cells)
    assert in_close >= 18  # the clear region (a beats b by 1 on 60 cells) is worth almost nothing
    assert {j for _, j in cells} == {0, 1}  # both sides of the tie are worth seeing
    # a model that is far worse everywhere (and no cheaper) is never worth a cell
    worse = OutcomeLog(log.prompt_ids, log.prompts, ("a", "b", "c"),
                       np.c_[log.scores, np.where(np.arange(120) % 2 == 0, -5.0, np.nan)],
                       np.full((120, 3), 0.001))
    cells, _, _ = choose_cells_by_prompt(worse, 0.0205, np.full(3, 0.001), X, candidates=np.isnan(worse.scores))
    assert len(cells) == 20 and not any(j == 2 for _, j in cells)


def test_ridge_belief_update_is_the_direct_inverse_and_its_variance_fall():
    log, X = _two_regions()
    observed = ~np.isnan(log.scores)
    belief = ridge_belief(X, log.scores, observed, alpha=2.0, strength=1.0)
    # the mean is the ridge fit of the logged cells: in the clear region a is ~1 and b ~0
    assert belief.mean[:60, 0].mean() > 0.8 and belief.mean[:60, 1].mean() < 0.2
    before = belief.variance(1)
    fall = belief.observe(70, 1)
    observed[70, 1] = True
    direct = ridge_belief(X, log.scores, observed, alpha=2.0, strength=1.0)
    np.testing.assert_allclose(belief.inverse[1], direct.inverse[1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(before - fall, direct.variance(1), rtol=1e-9, atol=1e-15)
    # the fall is in the observed prompt's region: far smaller in the other one
    assert fall[60:].min() > 20 * fall[:60].max()
    np.testing.assert_allclose(belief.inverse[0], direct.inverse[0])  # model a's belief did not move


def test_plan_fill_refuses_an_unknown_value(tmp_path):
    log = tmp_path / "traffic.jsonl"
    _traffic(log)
    target = read_fill_target(log)
    with pytest.raises(ConfigError, match="value must be one of prompt, group"):
        plan_fill(target, 0.01, value="cell")
    by_group, by_prompt = plan_fill(target, 0.006, value="group"), plan_fill(target, 0.006, value="prompt")
    assert by_group.value == "group" and by_prompt.value == "prompt"
    for plan in (by_group, by_prompt):
        assert 0 < plan.estimated_cost <= 0.006 and not any(target.blocked[i] for i, _ in plan.cells)


def test_fill_refuses_what_it_cannot_do(tmp_path, backend):
    log = tmp_path / "traffic.jsonl"
    _traffic(log)
    with pytest.raises(ConfigError, match=r"budget must be a number >= 0 \(USD\), got -1.0"):
        fill_log(log, _endpoints(backend), -1.0, progress=False)
    (tmp_path / "traffic.jsonl.card.yaml").write_text("do_not_resend: true\n", encoding="utf-8")
    with pytest.raises(DataError, match="do_not_resend"):
        fill_log(log, _endpoints(backend), 1.0, progress=False)
    (tmp_path / "traffic.jsonl.card.yaml").unlink()
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"prompt": "q", "model": "a", "score": 1, "cost": 0.1}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="one model"):
        fill_log(one, _endpoints(backend), 1.0, progress=False)
    free = tmp_path / "nocost.jsonl"
    free.write_text("".join(json.dumps({"prompt": f"q{i}", "model": "ab"[i % 2], "score": 1}) + "\n"
                            for i in range(4)), encoding="utf-8")
    with pytest.raises(DataError, match="no cost is known for model"):
        fill_log(free, _endpoints(backend), 1.0, progress=False)
    assert sum(backend.answered.values()) == 0


def test_collect_fill_on_the_cli(tmp_path, backend):
    log = tmp_path / "traffic.jsonl"
    rows = _traffic(log)
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps(_endpoints(backend)), encoding="utf-8")
    res = CliRunner().invoke(app, ["collect", "--fill", str(log), "--budget", "0.006", "-e", str(endpoints),
                                   "--no-progress", "--value", "group"])
    assert res.exit_code == 0, res.output
    cells = sum(backend.answered.values())
    assert cells > 0 and f"{cells} sent, 0 from the journal; {cells} rows appended" in res.output
    # the LOG itself (no --out) gained exactly the answered cells, unscored, within the budget
    added = _lines(log)[len(rows):]
    assert {(r["prompt"], r["model"]) for r in added} == set(backend.answered) and len(added) == cells
    assert all(r["score"] is None for r in added) and sum(COST[r["model"]] for r in added) <= 0.006 + 1e-12
    assert "groups: benchmark" in res.output and "next: routecast score" in res.output
    assert "value of information per group" in res.output
    res = CliRunner().invoke(app, ["collect", "p.jsonl", "-e", str(endpoints), "-o", "x.jsonl", "--value", "group"])
    assert res.exit_code == 2 and "--value goes with --fill" in res.output
    res = CliRunner().invoke(app, ["collect", "p.jsonl", "--fill", str(log), "--budget", "1", "-e", str(endpoints)])
    assert res.exit_code == 2 and "no PROMPTS file" in res.output
    res = CliRunner().invoke(app, ["collect", "p.jsonl", "-e", str(endpoints), "-o", "x.jsonl", "--budget", "1"])
    assert res.exit_code == 2 and "--budget goes with --fill" in res.output


def test_groups_are_the_benchmark_else_clusters_of_the_embeddings():
    log = _belief_log({"x": (6, 0.5, 0.5, 1), "y": (6, 0.5, 0.5, 1)})
    groups, names, by = prompt_groups(log)
    assert by == "benchmark" and names == ["x", "y"] and groups.tolist() == [0] * 6 + [1] * 6
    one = OutcomeLog(log.prompt_ids, log.prompts, log.models, log.scores, log.costs)  # no benchmark column
    X = np.vstack([np.tile([1.0, 0.0, 0.0], (6, 1)), np.tile([0.0, 1.0, 0.0], (6, 1))])
    X += np.random.default_rng(0).normal(0, 0.01, X.shape)
    groups, names, by = prompt_groups(one, embeddings=X, clusters=2)
    assert by == "2 k-means clusters" and len(set(groups[:6])) == 1 and len(set(groups[6:])) == 1
    assert groups[0] != groups[6]
