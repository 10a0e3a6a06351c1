"""Decision log: append, feedback, rotation, kill -9, and the bandit outcome log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from routecast.data.decision_log import DecisionLog, outcome_log_from_decisions, text_hash
from routecast.errors import DataError

MODELS = ["small", "big"]


def record(i: int, chosen: str = "small", propensity: float = 0.9) -> dict:
    return {"request_id": f"r{i}", "text": f"prompt {i}", "models": MODELS, "ranking": [chosen, "big" if chosen == "small" else "small"],
            "predicted": {"small": 0.4, "big": 0.7}, "chosen": chosen, "rank": 0, "propensity": propensity,
            "lam": 10.0, "expected_cost": 0.001 if chosen == "small" else 0.01, "operating_point": "default",
            "key_id": "k1", "conversation_id": f"c{i // 2}"}


def test_text_is_hashed_by_default_and_kept_only_when_asked(tmp_path):
    with DecisionLog(tmp_path / "d.sqlite") as log:
        log.append(record(1))
        rec = log.get("r1")
    assert rec["text"] is None and rec["text_hash"] == text_hash("prompt 1")
    assert rec["ranking"] == ["small", "big"] and rec["predicted"] == {"small": 0.4, "big": 0.7}
    with DecisionLog(tmp_path / "t.sqlite", store_text=True) as log:
        log.append(record(1))
        assert log.get("r1")["text"] == "prompt 1"


def test_feedback_errors_leave_the_log_unchanged(tmp_path):
    with DecisionLog(tmp_path / "d.sqlite") as log:
        log.append(record(1))
        with pytest.raises(DataError, match="duplicate request id 'r1'"):
            log.append(record(1))
        with pytest.raises(DataError, match="unknown request id 'nope'"):
            log.add_feedback("nope", 0.5)
        with pytest.raises(DataError, match=r"score must be a number in \[0, 1\], got 1.5"):
            log.add_feedback("r1", 1.5)
        with pytest.raises(DataError, match="got True"):
            log.add_feedback("r1", True)
        log.add_feedback("r1", 0.75)
        with pytest.raises(DataError, match="already has feedback"):
            log.add_feedback("r1", 0.1)
        assert log.get("r1")["score"] == 0.75
        log.add_feedback("r1", 0.25, replace=True)
        assert log.get("r1")["score"] == 0.25


def test_import_validates_every_row_before_writing(tmp_path):
    with DecisionLog(tmp_path / "d.sqlite") as log:
        for i in range(3):
            log.append(record(i))
        bad = tmp_path / "fb.jsonl"
        bad.write_text("\n".join(json.dumps(r) for r in [{"request_id": "r0", "score": 1.0},
                                                          {"request_id": "r1", "score": 2.0}]) + "\n")
        with pytest.raises(DataError) as err:
            log.import_feedback(bad)
        assert err.value.row == 2 and err.value.column == "score" and "outside [0, 1]" in str(err.value)
        assert log.get("r0")["score"] is None  # nothing written
        good = tmp_path / "fb.csv"
        good.write_text("request_id,score\nr0,1\nr2,0\n")
        assert log.import_feedback(good) == 2
        assert [r["score"] for r in log.records()] == [1.0, None, 0.0]


def test_rotation_keeps_every_record_reachable(tmp_path):
    with DecisionLog(tmp_path / "d.sqlite", max_bytes=1) as log:  # rotate at every check
        for i in range(600):
            log.append(record(i))
        assert len(log.segments()) >= 2
        log.add_feedback("r3", 1.0)  # in a rotated segment
        recs = list(log.records())
    assert [r["request_id"] for r in recs] == [f"r{i}" for i in range(600)]
    assert next(r for r in recs if r["request_id"] == "r3")["score"] == 1.0


def test_sigkill_loses_no_committed_record(tmp_path):
    path = tmp_path / "d.sqlite"
    script = textwrap.dedent(f"""
        import sys
        from routecast.data.decision_log import DecisionLog
        log = DecisionLog({str(path)!r})
        i = 0
        while True:
            log.append({{"request_id": f"r{{i}}", "text": "t", "models": ["a", "b"], "ranking": ["a", "b"],
                        "predicted": {{"a": 0.1, "b": 0.2}}, "chosen": "a", "propensity": 1.0}})
            print(i, flush=True)
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    last = -1
    deadline = time.time() + 30
    while last < 300 and time.time() < deadline:
        last = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with DecisionLog(path) as log:
        ids = {r["request_id"] for r in log.records()}
    assert last >= 300
    assert all(f"r{i}" in ids for i in range(last + 1))


def test_outcome_log_from_decisions_observes_only_the_chosen_cell(tmp_path):
    with DecisionLog(tmp_path / "d.sqlite", store_text=True) as log:
        log.append(record(0, "small", 0.9))
        log.append(record(1, "big", 0.1))
        log.append(record(2, "small", 0.9))
        log.add_feedback("r0", 1.0)
        log.add_feedback("r1", 0.5)
        bandit = outcome_log_from_decisions(log)
    assert bandit.n_prompts == 2 and bandit.models == ("small", "big")
    assert np.isnan(bandit.scores[0, 1]) and bandit.scores[0, 0] == 1.0
    assert np.isnan(bandit.scores[1, 0]) and bandit.scores[1, 1] == 0.5
    assert bandit.costs[1, 1] == 0.01
    assert bandit.meta["propensity"].tolist() == [0.9, 0.1]
    assert bandit.meta["predicted_big"].tolist() == [0.7, 0.7]


def test_outcome_log_needs_stored_text(tmp_path):
    with DecisionLog(tmp_path / "d.sqlite") as log:
        log.append(record(0))
        log.add_feedback("r0", 1.0)
        with pytest.raises(DataError, match="no stored text"):
            outcome_log_from_decisions(log)


def test_two_writer_processes_rotating_lose_no_record(tmp_path):
    """Rotation starts a new segment under a lock and never renames a file another writer holds."""
    path = tmp_path / "d.sqlite"
    script = textwrap.dedent(f"""
        import sys
        from routecast.data.decision_log import DecisionLog
        log = DecisionLog({str(path)!r}, max_bytes=1)
        for i in range(700):
            log.append({{"request_id": f"{{sys.argv[1]}}-{{i}}", "text": "t", "models": ["a", "b"],
                        "ranking": ["a", "b"], "predicted": {{"a": 0.1, "b": 0.2}}, "chosen": "a",
                        "propensity": 1.0}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, name]) for name in ("w1", "w2")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with DecisionLog(path) as log:
        ids = [r["request_id"] for r in log.records()]
        assert len(log.segments()) >= 2
    assert sorted(ids) == sorted(f"{w}-{i}" for w in ("w1", "w2") for i in range(700))
