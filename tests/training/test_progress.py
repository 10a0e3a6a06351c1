"""Long work shows progress when nobody watches a terminal: plain lines in a CI log, at most one
every few seconds, with a counter (evaluate's routers, tune's trials)."""

from __future__ import annotations

import io

import numpy as np

from routecast.progress import Progress
from routecast.router.pipeline import Prepared

HASHING = "hashing:dim=64"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_without_a_tty_at_most_one_every_few_seconds():
    stream, clock = io.StringIO(), Clock()
    with Progress("tune knn", total=6, stream=stream, every=5.0, clock=clock) as progress:
        for t, name in zip((0, 1, 2, 6, 7, 12), "abcdef"):
            clock.now = 100.0 + t
            progress.step(f"trial {name}")
        clock.now = 113.0
    assert stream.getvalue().splitlines() == [
        "routecast: tune knn 0/6 done, now: trial a (0 s)",
        "routecast: tune knn 3/6 done, now: trial d (6 s)",
        "routecast: tune knn 5/6 done, now: trial f (12 s)",
        "routecast: tune knn 6/6 done (13 s)",
    ]


def test_disabled_progress_writes_nothing():
    stream = io.StringIO()
    with Progress("evaluate", total=2, stream=stream, enabled=False) as progress:
        progress.step("fitting knn")
    assert stream.getvalue() == ""


def _prepared(small_log) -> Prepared:
    idx = np.arange(small_log.n_prompts)
    return Prepared(log=small_log, train=small_log.subset(idx[:220]), val=small_log.subset(idx[220:290]),
                    test=small_log.subset(idx[290:]), encoder=HASHING,
                    settings={"data": "llmrouter_9models[small]", "encoder": HASHING, "seed": 0})


def test_evaluate_and_tune_report_progress_on_a_non_tty_stderr(small_log, capsys):
    from routecast.training.experiment import run_experiment
    from routecast.training.tune import tune

    prepared = _prepared(small_log)
    run_experiment(prepared, ["linear", "best-single"], n_boot=10)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "routecast: evaluate 0/3 done, now: fitting linear (0 s)"
    assert err[-1].startswith("routecast: evaluate 3/3 done (")
    tune(prepared, "knn", n_trials=3, storage=None, seed=0)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "routecast: tune knn 0/3 done, now: trial 0 (0 s)"
    assert err[-1].startswith("routecast: tune knn 3/3 done (")


def test_counted_units_are_reported_with_their_unit_at_most_every_few_seconds():
    stream, clock = io.StringIO(), Clock()
    with Progress("embedding (static)", total=5000, unit="prompts", stream=stream, clock=clock) as progress:
        for t in (0.5, 1, 2, 5.6, 7):
            clock.now = 100.0 + t
            progress.advance(1000)
    assert stream.getvalue().splitlines() == [
        "routecast: embedding (static) 1,000/5,000 prompts done (0 s)",
        "routecast: embedding (static) 4,000/5,000 prompts done (6 s)",
        "routecast: embedding (static) 5,000/5,000 prompts done (7 s)",
    ]  # the end repeats no count already written
