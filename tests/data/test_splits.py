from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from routecast.data import OutcomeLog, Splits, load_log, split_log
from routecast.errors import ConfigError, DataError


def _log(n=400, dup_every=10, benchmarks=("a", "b", "c", "d")):
    prompts = [f"question number {i}" for i in range(n)]
    for i in range(0, n, dup_every):  # a whitespace-variant copy under another id
        prompts[i + 1] = "  question   number " + str(i) + " "
    rng = np.random.default_rng(1)
    return OutcomeLog(prompt_ids=[f"id{i}" for i in range(n)], prompts=prompts, models=("x", "y"),
                      scores=rng.random((n, 2)), costs=np.full((n, 2), 0.1),
                      meta=pd.DataFrame({"benchmark": [benchmarks[i % len(benchmarks)] for i in range(n)],
                                         "split": (["train"] * (n - 100) + ["test"] * 60 + ["ood"] * 40)[:n]
                                         if n >= 100 else ["train"] * n}))


def _norm(p):
    return " ".join(p.split())


def test_grouped_stratified_sized():
    log = _log()
    sp = split_log(log, val=0.1, test=0.2, seed=0)
    assert isinstance(sp, Splits)
    ids = [set(s.prompt_ids) for s in sp]
    assert sum(len(s) for s in ids) == log.n_prompts and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    texts = [{_norm(p) for p in s.prompts} for s in sp]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert abs(len(sp.test) - 80) <= 8 and abs(len(sp.val) - 40) <= 8
    for part in sp:
        counts = part.meta["benchmark"].value_counts()
        assert counts.max() - counts.min() <= 6  # each benchmark split in proportion


def test_seeded_and_deterministic_and_row_order_invariant():
    log = _log()
    a, b = split_log(log, seed=3), split_log(log, seed=3)
    assert list(a.test.prompt_ids) == list(b.test.prompt_ids)
    c = split_log(log, seed=4)
    assert set(a.test.prompt_ids) != set(c.test.prompt_ids)
    shuffled = log.subset(np.random.default_rng(0).permutation(log.n_prompts))
    assert set(split_log(shuffled, seed=3).test.prompt_ids) == set(a.test.prompt_ids)


def test_logged_split_with_val_carved_and_ood_to_test():
    log = _log()
    sp = split_log(log, use_logged_split=True, val=0.1)
    assert len(sp.test) == 100 and set(sp.test.meta["split"]) == {"test", "ood"}
    assert abs(len(sp.val) - 40) <= 6 and set(sp.val.meta["split"]) == {"train"}
    assert len(sp.train) + len(sp.val) == 300
    dropped = split_log(log, use_logged_split=True, other_split="drop")
    assert len(dropped.test) == 60


def test_llmrouter_logged_split():
    log = load_log("llmrouter_9models")
    sp = split_log(log, use_logged_split=True, val=0.1)
    assert len(sp.test) == 489 and len(sp.train) + len(sp.val) == 5489
    assert len(sp.val) == pytest.approx(598, abs=20)


def test_errors():
    log = _log(n=4, dup_every=100)
    with pytest.raises(DataError, match="split is empty"):
        split_log(log, val=0.1, test=0.1)
    with pytest.raises(ConfigError):
        split_log(log, val=0.6, test=0.5)
    no_split = OutcomeLog(["a"], ["x"], ("m",), [[1.0]], [[np.nan]])
    with pytest.raises(DataError, match="no 'split' column"):
        split_log(no_split, use_logged_split=True)
