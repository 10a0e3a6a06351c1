"""``score``: scorers, the LLM judge (fake endpoint on 127.0.0.1), then train + evaluate the result."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from routecast.data import load_log, load_preferences
from routecast.data.collect import collect
from routecast.data.score import judge_pairs, score_log
from routecast.data.scorers import ScoringRow, make_scorer
from routecast.errors import ConfigError, DataError
from tests._support.fake_openai import FakeOpenAI


def _s(name, response, reference=None, **params):
    return make_scorer(name, **params).score(ScoringRow("q", response, "m", reference))


def test_builtin_scorers_values():
    assert _s("exact", "  Paris. ", "paris") == 1.0 and _s("exact", "Lyon", "Paris") == 0.0
    assert _s("choice", "I think the answer is (B).", "B") == 1.0
    assert _s("choice", "Answer: C", "(B)") == 0.0 and _s("choice", "no idea", "B") == 0.0
    assert _s("numeric", "He pays 2 * 617 = $1,234.00\n#### 1234", "1234") == 1.0
    assert _s("numeric", "so 41 apples", "#### 42") == 0.0 and _s("numeric", "none", "3") == 0.0
    assert _s("numeric", "x = 0.3333", "1/3 is 0.33333", tolerance=1e-3) == 1.0
    assert _s("regex", "FINAL: yes", None, pattern=r"FINAL: (\w+)") == 1.0
    assert _s("regex", "FINAL: no", "yes", pattern=r"FINAL: (\w+)") == 0.0
    assert _s("regex", "nothing", None, pattern="FINAL") == 0.0
    with pytest.raises(ConfigError, match="unknown scorer"):
        make_scorer("fuzzy")
    with pytest.raises(ConfigError, match="not a regular expression"):
        make_scorer("regex", pattern="(")


def _collected(tmp_path: Path, rows: list[dict], name: str = "collected.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [{"prompt_id": "p1", "prompt": "2+2?", "model": "a", "score": None, "response": "#### 4", "reference": "4"},
        {"prompt_id": "p1", "prompt": "2+2?", "model": "b", "score": None, "response": "5", "reference": "4"},
        {"prompt_id": "p2", "prompt": "3+3?", "model": "a", "score": None, "response": None, "reference": "6"},
        {"prompt_id": "p2", "prompt": "3+3?", "model": "b", "score": None, "response": "6", "reference": "6"}]


def test_score_numeric_writes_a_loadable_log(tmp_path):
    src = _collected(tmp_path, ROWS)
    out = tmp_path / "scored.csv"
    result = score_log(src, "numeric", out, progress=False)
    assert (result.rows, result.scored, result.no_response) == (4, 3, 1)
    log = load_log(out)
    assert log.models == ("a", "b")
    np.testing.assert_array_equal(log.scores, [[1.0, 0.0], [np.nan, 1.0]])


def test_scorer_errors_name_file_row_and_field(tmp_path):
    src = _collected(tmp_path, ROWS)
    bad = [dict(r) for r in ROWS]
    bad[3]["reference"] = ""
    with pytest.raises(DataError) as info:
        score_log(_collected(tmp_path, bad, "bad.jsonl"), "exact", tmp_path / "o.jsonl", progress=False)
    assert (info.value.row, info.value.column) == (4, "reference")
    no_ref = [{k: v for k, v in r.items() if k != "reference"} for r in ROWS]
    with pytest.raises(DataError, match="no column 'reference'"):
        score_log(_collected(tmp_path, no_ref, "noref.jsonl"), "choice", tmp_path / "o.jsonl", progress=False)

    class Boom(type(make_scorer("exact"))):
        name = "boom"

        def score(self, row):
            if row.response == "5":
                raise ZeroDivisionError("bad luck")
            return 1.0

    with pytest.raises(DataError) as info:
        score_log(src, Boom(), tmp_path / "o.jsonl", progress=False)
    assert (info.value.path, info.value.row, info.value.column) == (str(src), 2, "response")
    assert "ZeroDivisionError: bad luck" in str(info.value)
    assert not (tmp_path / "o.jsonl").exists()  # nothing half-written


def test_entry_point_scorer(tmp_path, monkeypatch):
    pkg = tmp_path / "site"
    (pkg / "my_scorers").mkdir(parents=True)
    (pkg / "my_scorers" / "__init__.py").write_text(
        "def length(prompt, response, reference, record):\n    return min(1.0, len(response) / 10)\n"
        "def broken(prompt, response, reference, record):\n    return 'high'\n")
    info = pkg / "my_scorers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-scorers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[routecast.scorers]\nlength = my_scorers:length\n"
                                           "broken = my_scorers:broken\n")
    monkeypatch.syspath_prepend(str(pkg))
    src = _collected(tmp_path, ROWS)
    score_log(src, "entry:length", tmp_path / "o.jsonl", progress=False)
    scored = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["score"] for r in scored] == [0.6, 0.1, None, 0.1]
    with pytest.raises(DataError) as err:
        score_log(src, "entry:broken", tmp_path / "o2.jsonl", progress=False)
    assert (err.value.row, err.value.column) == (1, "score") and "'high'" in str(err.value)
    with pytest.raises(ConfigError, match="no scorer 'nope'"):
        make_scorer("entry:nope")


_QUESTION = re.compile(r"What is (\d+) \+ (\d+)\?")


def _judge_answer(text: str, model: str) -> str:
    """A fake MT-Bench judge: 9 for the right sum, 2 otherwise; 'no idea' if told to."""
    if "[[A]]" in text or "Assistant A" in text:
        a, b = re.findall(r"Answer\]\n(.*?)\n\[The End", text, re.S)
        return "Both fine. [[C]]" if a == b else ("A is right. [[A]]" if "right" in a else "[[B]]")
    x, y = map(int, _QUESTION.search(text).groups())
    answer = text.split("[The Start of Assistant's Answer]\n", 1)[1]
    if "unjudgeable" in answer:
        return "I cannot rate this."
    return "Correct. Rating: [[9]]" if str(x + y) in answer else "Wrong. Rating: [[2]]"


def test_collect_score_with_judge_then_train_and_evaluate(tmp_path):
    from routecast.evaluation.evaluate import evaluate, single_model_curves, sweep_router
    from routecast.router.pipeline import fit_router, prepare, split_embeddings

    def strong(text, model):
        x, y = map(int, _QUESTION.search(text).groups())
        return f"The sum is {x + y}. right"

    def weak(text, model):
        x, y = map(int, _QUESTION.search(text).groups())
        return f"The sum is {x + y if x % 3 else x + y + 1}."  # wrong on multiples of 3

    backends = [FakeOpenAI(strong), FakeOpenAI(weak), FakeOpenAI(_judge_answer)]
    try:
        n = 60
        prompts = tmp_path / "prompts.csv"
        prompts.write_text("prompt,benchmark\n" + "".join(f"What is {i} + {i % 7}?,add\n" for i in range(n)))
        endpoints = {"strong": {"base_url": backends[0].base_url}, "weak": {"base_url": backends[1].base_url}}
        collected = tmp_path / "collected.jsonl"
        collect(prompts, endpoints, collected, prices={"strong": [5, 15], "weak": [0.1, 0.3]}, progress=False)
        judge = {"judge-model": {"base_url": backends[2].base_url}}
        scored = tmp_path / "scored.jsonl"
        first = score_log(collected, "judge", scored, endpoints=judge, progress=False)
        assert (first.scored, first.judge_calls, first.judge_cached) == (2 * n, 2 * n, 0)
        again = score_log(collected, "judge", tmp_path / "again.jsonl", endpoints=judge,
                          cache=tmp_path / "scored.jsonl.judge-cache.jsonl", progress=False)
        assert (again.judge_calls, again.judge_cached) == (0, 2 * n)  # every judgement from the cache
        rows = [json.loads(line) for line in scored.read_text().splitlines()]
        assert {r["judge_rating"] for r in rows if r["model"] == "strong"} == {9.0}
        assert all("Rating: [[" in r["judge_output"] for r in rows)
        log = load_log(scored)
        means = dict(zip(log.models, log.mean_scores()))
        assert means["strong"] == pytest.approx(8 / 9)
        assert means["weak"] == pytest.approx((8 / 9 * 40 + 1 / 9 * 20) / 60)

        prepared = prepare(str(scored), encoder="hashing", seed=0)
        router, _ = fit_router("knn", {"k": 5}, prepared)
        curve = sweep_router(router, prepared.test, embeddings=split_embeddings(router, prepared, "test"), label="knn")
        result = evaluate({"knn": curve, **single_model_curves(prepared.test)}, prepared.test, n_boot=20)
        knn = result.routers["knn"]
        assert prepared.test.n_prompts == 12 and np.isfinite(knn.aiq) and 0 < knn.aiq <= 1
    finally:
        for b in backends:
            b.stop()


def test_judge_without_a_number_and_pairwise(tmp_path):
    judge_backend = FakeOpenAI(_judge_answer)
    try:
        judge = {"j": {"base_url": judge_backend.base_url}}
        rows = [{"prompt_id": "p1", "prompt": "What is 1 + 1?", "model": "a", "response": "2 right"},
                {"prompt_id": "p1", "prompt": "What is 1 + 1?", "model": "b", "response": "3"},
                {"prompt_id": "p2", "prompt": "What is 2 + 2?", "model": "a", "response": "unjudgeable"}]
        src = _collected(tmp_path, rows)
        with pytest.raises(DataError) as info:
            score_log(src, "judge", tmp_path / "o.jsonl", endpoints=judge, progress=False)
        assert (info.value.path, info.value.row, info.value.column) == (str(src), 3, "judge_output")
        assert "no [[rating]]" in str(info.value) and "I cannot rate this." in str(info.value)

        prefs = tmp_path / "prefs.jsonl"
        result = judge_pairs(src, judge, prefs)
        assert result.rows == 1 and result.judge_calls == 2  # one pair, judged in both orders
        pairs = load_preferences(prefs)
        assert list(pairs.winner) == ["model_a"]  # the right answer wins in both orders
        raw = json.loads(prefs.read_text().splitlines()[0])["judge_output"]
        assert len(raw) == 2 and "[[A]]" in raw[0] and "[[B]]" in raw[1]  # raw outputs of both orders kept
    finally:
        judge_backend.stop()
    biased = FakeOpenAI(lambda text, model: "The first one. [[A]]")
    try:
        judge = {"j": {"base_url": biased.base_url}}
        judge_pairs(src, judge, prefs, cache=tmp_path / "biased-cache.jsonl")
        assert list(load_preferences(prefs).winner) == ["tie"]  # position bias cancels out
        judge_pairs(src, judge, prefs, cache=tmp_path / "biased-cache.jsonl", swap=False)
        assert list(load_preferences(prefs).winner) == ["model_a"]
    finally:
        biased.stop()
