from __future__ import annotations

import json

import numpy as np
import pytest

from routecast.data import PriceTable, load_log
from routecast.data.costs import estimate_tokens
from routecast.errors import DataError


def test_estimate_tokens_rule():
    np.testing.assert_array_equal(estimate_tokens(["", "abcd", "abcde", None]), [0, 1, 2, np.nan])


def test_hand_checked_costs(tmp_path):
    # prompt 10 chars -> 3 tokens in; response 9 chars -> 3 tokens out; no response -> 256 (default)
    path = tmp_path / "log.jsonl"
    rows = [
        {"prompt_id": "a", "prompt": "0123456789", "model": "m1", "score": 1, "response": "012345678"},
        {"prompt_id": "a", "prompt": "0123456789", "model": "m2", "score": 0, "response": None},
        {"prompt_id": "b", "prompt": "xy", "model": "m1", "score": 1, "cost": 0.5},
        {"prompt_id": "b", "prompt": "xy", "model": "m2", "score": 1, "tokens_in": 100, "tokens_out": 1000},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    prices = {"m1": [2.0, 4.0], "m2": {"in": 1.0, "out": 10.0}}
    log = load_log(path, prices=prices)
    assert log.costs[0, 0] == pytest.approx((3 * 2.0 + 3 * 4.0) / 1e6)
    assert log.costs[0, 1] == pytest.approx((3 * 1.0 + 256 * 10.0) / 1e6)
    assert log.costs[1, 0] == 0.5  # a logged cost wins
    assert log.costs[1, 1] == pytest.approx((100 * 1.0 + 1000 * 10.0) / 1e6)


def test_price_table_from_json_and_errors(tmp_path):
    p = tmp_path / "prices.json"
    p.write_text(json.dumps({"prices": {"m": {"input": 1, "output": 2}}, "default_output_tokens": 10}))
    table = PriceTable.from_json(p)
    assert table.prices == {"m": (1.0, 2.0)} and table.default_output_tokens == 10
    np.testing.assert_allclose(table.call_cost("m", [1e6], [1e6]), [3.0])
    assert np.isnan(table.call_cost("other", [1], [1])).all()
    with pytest.raises(DataError, match="finite and >= 0"):
        PriceTable({"m": (-1, 2)})
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(DataError, match="not valid JSON"):
        PriceTable.from_json(bad)


def test_builtin_costs_follow_the_documented_rule():
    from routecast.data.costs import reprice

    log = load_log("routellm_strong_weak")
    prices = {"gpt-4-1106-preview": [10, 30], "mistralai/Mixtral-8x7B-Instruct-v0.1": [0.6, 0.6]}
    np.testing.assert_allclose(reprice(log, prices).costs, log.costs)
    i = int(np.flatnonzero(log.meta["benchmark"].to_numpy() == "mmlu")[0])
    j = log.model_index("gpt-4-1106-preview")
    assert log.costs[i, j] == pytest.approx((np.ceil(len(log.prompts[i]) / 4) * 10 + 256 * 30) / 1e6)
    with pytest.raises(DataError, match="no price"):
        reprice(log, {"gpt-4-1106-preview": [1, 1]})
