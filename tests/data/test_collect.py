"""``collect`` against fake OpenAI-compatible endpoints on 127.0.0.1 (official openai client)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from routecast.data.collect import DEFAULT_CONCURRENCY, collect, journal_path, read_journal
from routecast.errors import ConfigError, DataError
from tests._support.fake_openai import FakeOpenAI

PRICES = {"slow": [1.0, 2.0], "flaky": [0.1, 0.2]}


def _prompts(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"question number {i}", "reference": str(i)}) + "\n"
                            for i in range(n)), encoding="utf-8")
    return path


@pytest.fixture
def backends():
    slow, flaky = FakeOpenAI(delay=0.1), FakeOpenAI(flaky=True)
    yield slow, flaky
    slow.stop()
    flaky.stop()


def _endpoints(slow, flaky) -> dict:
    return {"endpoints": {"slow": {"base_url": slow.base_url, "concurrency": 4},
                          "flaky": {"base_url": flaky.base_url, "concurrency": 4, "requests_per_second": 200}}}


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_collect_two_backends_retries_and_costs(tmp_path, backends):
    slow, flaky = backends
    prompts = _prompts(tmp_path / "prompts.jsonl", 12)
    out = tmp_path / "log.jsonl"
    result = collect(prompts, _endpoints(slow, flaky), out, prices=PRICES, backoff=0.01, progress=False)
    assert (result.cells, result.sent_cells, result.resumed_cells, result.failed) == (24, 24, 0, [])
    rows = _records(out)
    assert Counter((r["prompt_id"], r["model"]) for r in rows).most_common(1)[0][1] == 1 and len(rows) == 24
    assert flaky.statuses[429] > 0 and flaky.statuses[500] == flaky.statuses[429]  # retried through both
    assert {r["attempts"] for r in rows if r["model"] == "flaky"} == {1, 3}
    row = next(r for r in rows if r["model"] == "slow" and r["prompt"] == "question number 3")
    assert row["score"] is None and row["reference"] == "3" and row["response"] == "slow says: 3 rebmun noitseuq"
    assert row["cost"] == pytest.approx((row["tokens_in"] * 1.0 + row["tokens_out"] * 2.0) / 1e6)
    assert row["latency_s"] >= 0.1
    # a rerun sends nothing
    again = collect(prompts, _endpoints(slow, flaky), out, prices=PRICES, progress=False)
    assert (again.sent_cells, again.resumed_cells) == (0, 24)
    assert sum(slow.answered.values()) == 12


def test_collect_killed_and_resumed_every_cell_exactly_once(tmp_path, backends):
    slow, flaky = backends
    n = 40
    prompts = _prompts(tmp_path / "prompts.jsonl", n)
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps(_endpoints(slow, flaky)), encoding="utf-8")
    out = tmp_path / "log.jsonl"
    code = ("import sys; from routecast.data.collect import collect; "
            f"collect({str(prompts)!r}, {str(endpoints)!r}, {str(out)!r}, prices={PRICES!r}, backoff=0.01, "
            "progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path)
    journal = journal_path(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 20:
            break
        assert proc.poll() is None, "collect finished before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()  # the log is only written at the end, atomically
    durable_at_kill = set(read_journal(journal))
    before = len(durable_at_kill)
    assert 20 <= before < 2 * n
    result = collect(prompts, endpoints, out, prices=PRICES, backoff=0.01, progress=False)
    assert result.resumed_cells == before and result.sent_cells == 2 * n - before
    rows = _records(out)
    cells = Counter((r["prompt_id"], r["model"]) for r in rows)
    assert len(cells) == 2 * n and set(cells.values()) == {1}
    journal_keys = Counter((r["prompt_id"], r["model"]) for r in _records(journal))
    assert set(journal_keys.values()) == {1}  # nothing journaled twice
    # A cell answered twice is one whose first answer was not yet durable at the kill: in flight,
    # or arrived and waiting for the group-commit fsync. A cell durable at the kill is never resent.
    text_of = {r["prompt_id"]: r["prompt"] for r in rows}
    durable_texts = {(text_of[pid], model) for pid, model in durable_at_kill}
    answered = slow.answered_cells() + flaky.answered_cells()
    twice = {key for key, c in answered.items() if c > 1}
    assert not twice & durable_texts and all(answered[key] == 2 for key in twice)
    assert all(answered[key] == 1 for key in durable_texts)
    # at most one such cell per task alive at the kill (collect keeps 2 x the concurrency caps alive)
    assert len(twice) <= 2 * max(DEFAULT_CONCURRENCY, 4 + 4)


def test_collect_garbage_endpoint_is_one_error_and_keeps_the_rest(tmp_path, backends):
    slow, _ = backends
    junk = FakeOpenAI(garbage=True)
    try:
        prompts = _prompts(tmp_path / "prompts.jsonl", 3)
        out = tmp_path / "log.csv"
        eps = {"slow": {"base_url": slow.base_url}, "junk": {"base_url": junk.base_url}}
        with pytest.raises(DataError) as info:
            collect(prompts, eps, out, progress=False)
        err = info.value
        assert (err.path, err.row, err.column) == (str(prompts), 1, "response")
        assert "'junk'" in str(err) and "not a chat completion" in str(err) and "2 more cells" in str(err)
        import pandas as pd

        kept = pd.read_csv(out)
        assert sorted(kept["model"]) == ["slow"] * 3  # what it got is written
    finally:
        junk.stop()


def test_collect_bad_inputs(tmp_path):
    prompts = _prompts(tmp_path / "prompts.jsonl", 2)
    with pytest.raises(ConfigError, match="base_url"):
        collect(prompts, {"a": {"base_url": "ftp://x"}}, tmp_path / "o.jsonl", progress=False)
    with pytest.raises(ConfigError, match="unknown key"):
        collect(prompts, {"a": {"base_url": "http://127.0.0.1:9/v1", "concurrence": 3}}, tmp_path / "o.jsonl")
    with pytest.raises(DataError, match="not found"):
        collect(tmp_path / "missing.jsonl", {"a": {"base_url": "http://127.0.0.1:9/v1"}}, tmp_path / "o.jsonl")
    dup = tmp_path / "dup.csv"
    dup.write_text("prompt_id,prompt\n1,a\n1,b\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        collect(dup, {"a": {"base_url": "http://127.0.0.1:9/v1"}}, tmp_path / "o.jsonl")
    assert (info.value.row, info.value.column) == (2, "prompt_id")
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "assistant", "content": "hi"}]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        collect(chat, {"a": {"base_url": "http://127.0.0.1:9/v1"}}, tmp_path / "o.jsonl")
    assert (info.value.row, info.value.column) == (1, "messages")


def test_torn_journal_line_is_cut(tmp_path):
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b'{"prompt_id": "p", "model": "m", "response": "x"}\n{"prompt_id": "q", "mo')
    assert list(read_journal(journal)) == [("p", "m")]
    assert journal.read_bytes().endswith(b"}\n")


def test_rate_limiter_spaces_request_starts():
    import asyncio

    from routecast.data.chat_calls import RateLimiter

    async def starts(rate, n):
        limiter = RateLimiter(rate)
        t0 = time.monotonic()
        await asyncio.gather(*(limiter.wait() for _ in range(n)))
        return time.monotonic() - t0

    assert asyncio.run(starts(50.0, 11)) >= 0.19  # 10 intervals of 20 ms
    assert asyncio.run(starts(None, 100)) < 0.1
