"""Fuzzing the data loaders: whatever the file holds, the only failure is a DataError, and a file
that loads keeps every row (rows in = cells out).

Inputs: random long logs (numbers, NaN, inf, bools, numeric text, junk text, huge / empty /
whitespace prompts, int and str ids, duplicate keys, missing columns) written as CSV, JSON lines,
JSON arrays and Parquet; byte-level mutations of valid CSV / JSONL files (including latin-1 bytes,
i.e. mixed encodings); truncated / bit-flipped Parquet files; random preference files. The count
of fuzzed inputs is printed by the last test (run with ``-s``) and asserted to be non-trivial.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from routecast.data import load_log, load_preferences
from routecast.errors import DataError

FUZZED = {"log": 0, "bytes": 0, "parquet": 0, "prefs": 0}
LOADED = {"log": 0, "bytes": 0, "prefs": 0}  # how many fuzzed inputs were valid and loaded
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
score_values = st.one_of(
    st.floats(min_value=0, max_value=1), st.sampled_from([0, 1, 0.5]), st.none(), st.just(float("nan")),
    st.sampled_from([float("inf"), -float("inf"), 1.5, -0.1, True, False]),
    st.sampled_from(["0.25", "1", "", "abc", "NaN", " 0.5 "]), text,
)
clean_scores = st.one_of(st.floats(min_value=0, max_value=1), st.sampled_from([0, 1]), st.none())
clean_costs = st.one_of(st.floats(min_value=0, max_value=10), st.none())
cost_values = st.one_of(st.floats(min_value=0, max_value=10), st.none(),
                        st.sampled_from([-1.0, float("inf"), "x", "", 0]))


def _expected_score(value):
    """What a valid load must turn this score cell into: a float, NaN (not logged), or 'bad'."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return "bad"
    if isinstance(value, str):
        s = value.strip()
        if s == "" or s.lower() in {"nan", "na", "n/a", "null", "none", "<na>"}:
            return math.nan
        try:
            value = float(s)
        except ValueError:
            return "bad"
    value = float(value)
    if math.isnan(value):
        return math.nan
    return value if 0 <= value <= 1 else "bad"


@st.composite
def long_logs(draw):
    clean = draw(st.booleans())  # half the cases are valid logs, to check nothing valid is dropped
    n_prompts = draw(st.integers(1, 6))
    ids = draw(st.lists(st.one_of(st.text(min_size=0, max_size=6), st.integers(0, 5)),
                        min_size=n_prompts, max_size=n_prompts))
    prompt_text = (st.one_of(st.text(alphabet="abc xyz?\n\u00e9\u4e2d", min_size=1, max_size=30).filter(str.strip),
                             st.just("y" * 20000))
                   if clean else st.one_of(text, st.just(""), st.just("   "), st.just("x" * 20000)))
    prompts = draw(st.lists(prompt_text, min_size=n_prompts, max_size=n_prompts))
    if clean:
        ids = [f"id{i}" for i in range(n_prompts)] if draw(st.booleans()) else list(range(n_prompts))
    model_names = ["a", "b", "gpt-4", "m x"] if clean else ["a", "b", "gpt-4", "m|x", ""]
    models = draw(st.lists(st.sampled_from(model_names), min_size=1, max_size=3, unique=True))
    rows = []
    for i in range(n_prompts):
        for m in models:
            if draw(st.booleans()) or not rows:
                rows.append({"prompt_id": ids[i], "prompt": prompts[i], "model": m,
                             "score": draw(clean_scores if clean else score_values),
                             "cost": draw(clean_costs if clean else cost_values)})
    if clean and all(r["score"] is None for r in rows):
        clean = False  # a log with no score logged at all is refused: nothing to learn from it
    mutation = "none" if clean else draw(st.sampled_from(["none", "dup_row", "drop_col", "other_text", "no_id"]))
    if mutation == "dup_row":
        rows.append(dict(rows[draw(st.integers(0, len(rows) - 1))]))
    elif mutation == "drop_col":
        col = draw(st.sampled_from(["prompt", "model", "score", "cost", "prompt_id"]))
        for r in rows:
            r.pop(col, None)
    elif mutation == "other_text":
        rows[-1]["prompt"] = str(rows[-1].get("prompt")) + " changed"
    elif mutation == "no_id":
        for r in rows:
            r.pop("prompt_id", None)
    return rows, draw(st.sampled_from([".csv", ".jsonl", ".json", ".parquet"])), clean


def _write(rows, path: Path) -> bool:
    frame = pd.DataFrame(rows)
    try:
        if path.suffix == ".csv":
            frame.to_csv(path, index=False)
        elif path.suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            payload = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
            body = json.dumps(payload) if path.suffix == ".json" else "\n".join(json.dumps(r) for r in payload)
            path.write_text(body, encoding="utf-8")
    except Exception:  # the test cannot write this (e.g. mixed-type parquet column): not a loader input
        return False
    return True


@SETTINGS
@given(long_logs())
def test_random_logs_load_or_raise_data_error(case):
    rows, suffix, clean = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"log{suffix}"
        assume(_write(rows, path))
        FUZZED["log"] += 1
        try:
            log = load_log(path)
        except DataError as err:
            assert not clean, f"a valid log was rejected: {err}"
            assert err.path == str(path) and str(err).startswith(f"file {path}"), f"error does not name the file: {err}"
            return
    LOADED["log"] += 1
    # it loaded: every row is one cell and every logged score survived
    assert all(k in rows[0] for k in ("prompt", "model", "score"))
    expected = [_expected_score(r["score"]) for r in rows]
    assert "bad" not in expected or suffix == ".csv"  # CSV may stringify e.g. True -> 'True' (still an error)
    n_logged = sum(not math.isnan(v) for v in expected if v != "bad")
    assert int((~np.isnan(log.scores)).sum()) == n_logged
    assert log.n_prompts * log.n_models >= len(rows)
    assert log.n_prompts == len({str(r.get("prompt_id", r["prompt"])) for r in rows})
    keys = {(str(r.get("prompt_id", r["prompt"])), str(r["model"])) for r in rows}
    assert len(keys) == len(rows)  # no duplicate slipped through


def _valid_csv() -> bytes:
    lines = ["prompt_id,prompt,model,score,cost"]
    for i in range(4):
        for m in ("a", "b"):
            lines.append(f"p{i},\"question {i}, please\",{m},{(i % 2) * 0.5},0.01")
    return ("\n".join(lines) + "\n").encode()


def _valid_jsonl() -> bytes:
    rows = [{"prompt_id": f"p{i}", "prompt": f"question {i}", "model": m, "score": 1.0, "cost": 0.1}
            for i in range(4) for m in ("a", "b")]
    return "\n".join(json.dumps(r) for r in rows).encode()


@st.composite
def mutated_bytes(draw):
    kind = draw(st.sampled_from([".csv", ".jsonl"]))
    data = bytearray(_valid_csv() if kind == ".csv" else _valid_jsonl())
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "latin1"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "replace" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from([b",", b"\n", b'"', b"{", b"}", b"\xff", b"nan", b"inf", b"\x00"]))
        elif op == "delete" and data:
            del data[pos]
        else:
            data[pos:pos] = "café".encode("latin-1")
    return bytes(data), kind


@SETTINGS
@given(mutated_bytes())
def test_mutated_bytes_only_raise_data_error(case):
    data, suffix = case
    FUZZED["bytes"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"log{suffix}"
        path.write_bytes(data)
        try:
            log = load_log(path)
        except DataError as err:
            assert err.path == str(path), f"error does not name the file: {err}"
            return
        LOADED["bytes"] += 1
        assert log.n_prompts >= 1 and log.n_models >= 1


@pytest.fixture(scope="module")
def parquet_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("pq") / "ok.parquet"
    pd.DataFrame({"prompt": ["a", "b"], "model": ["m", "m"], "score": [0.0, 1.0]}).to_parquet(path)
    return path.read_bytes()


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(cut=st.integers(0, 2000), flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4))
def test_corrupt_parquet_only_raises_data_error(parquet_bytes, cut, flips):
    data = bytearray(parquet_bytes[: max(len(parquet_bytes) - cut, 0)])
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    FUZZED["parquet"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.parquet"
        path.write_bytes(bytes(data))
        try:
            log = load_log(path)
        except DataError as err:  # any other exception type fails the test
            assert err.path == str(path), f"error does not name the file: {err}"
        else:  # a flip that left a readable file: at most the two rows written
            assert log.n_prompts <= 2 and log.n_models == 1


@SETTINGS
@given(st.lists(st.fixed_dictionaries({
    "prompt": st.one_of(st.text(alphabet="ab c?", min_size=1, max_size=8).filter(str.strip), text, st.none()),
    "model_a": st.sampled_from(["x", "x", "y", "", None]),
    "model_b": st.sampled_from(["x", "y", "z"]),
    "winner": st.one_of(st.sampled_from(["model_a", "model_b", "tie", "tie (bothbad)", "x", "q", None, 3]), text)}),
    min_size=1, max_size=3), st.sampled_from([".jsonl", ".csv"]))
def test_random_preferences(rows, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"prefs{suffix}"
        assume(_write(rows, path))
        FUZZED["prefs"] += 1
        try:
            prefs = load_preferences(path)
        except DataError:
            return
        LOADED["prefs"] += 1
        assert len(prefs) == len(rows)
        assert set(prefs.winner) <= {"model_a", "model_b", "tie"}


def test_zz_report_fuzz_count():
    total = sum(FUZZED.values())
    print(f"\nloader fuzz: {total} inputs fuzzed {FUZZED}; valid and loaded {LOADED}")
    if total:  # 0 only when this test runs alone (-k)
        assert total >= 300
        assert all(v > 0 for v in LOADED.values()), "fuzzing never produced a valid input: strategies too harsh"
