"""The evidence gate (routecast.cascade.evidence_gate): answer evidence per slice only where it beats
the cascade's own ex-ante twin on validation. A synthetic log with two benchmarks: on ``honest`` a
cheap model hedges exactly when it is wrong (its answer tells), on ``liar`` it hedges exactly when
it is right, so a posterior learnt mostly on ``honest`` misreads ``liar`` answers. Hashing encoder."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from routecast.cascade.cascade_router import CascadeRouter
from routecast.cascade.evidence_gate import live_owner, unreadable_notes
from routecast.data.outcome_log import OutcomeLog

ENC = "hashing:dim=64"
VOCAB = {"honest": "alpha beta gamma delta epsilon zeta eta theta iota kappa".split(),
         "liar": "red green blue cyan magenta yellow black white orange violet".split()}


def two_benchmarks(n_honest: int, n_liar: int, seed: int) -> OutcomeLog:
    rng = np.random.default_rng(seed)
    rows = [("honest", i) for i in range(n_honest)] + [("liar", i) for i in range(n_liar)]
    rng.shuffle(rows)
    prompts, resp, scores, bench = [], [], [], []
    for k, (name, i) in enumerate(rows):
        truth = int(rng.integers(100, 999))
        prompts.append(f"{name} task {k}: " + " ".join(rng.choice(VOCAB[name], 8)) + f" {truth}?")
        row_r, row_s = [], []
        for model, p in (("A", 0.5), ("C", 0.95)):
            right = rng.random() < p
            answer = truth if right else int(rng.integers(1000, 9999))
            hedges = model == "A" and (right if name == "liar" else not right)
            row_r.append(f"I am not sure, it might perhaps be {answer}." if hedges else f"The answer is {answer}.")
            row_s.append(float(right))
        resp.append(row_r)
        scores.append(row_s)
        bench.append(name)
    n = len(rows)
    return OutcomeLog(np.array([f"p{i}" for i in range(n)], dtype=object), np.array(prompts, dtype=object),
                      ("A", "C"), np.array(scores), np.tile([1.0, 10.0], (n, 1)), np.array(resp, dtype=object),
                      pd.DataFrame({"benchmark": bench}), source="<two benchmarks>")


@pytest.fixture(scope="module")
def gated():
    train = two_benchmarks(300, 60, seed=1)
    val, test = two_benchmarks(80, 80, seed=2), two_benchmarks(80, 80, seed=3)
    router = CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(1.0,), n_lams=25,
                           gate_min_prompts=20).fit(train, val)
    return router, test


def test_evidence_is_kept_where_it_helps_and_dropped_where_it_misleads(gated):
    router, _ = gated
    report = router.gate_.report
    assert set(report) == {"honest", "liar"}
    assert report["honest"]["uses_evidence"] and not report["liar"]["uses_evidence"]
    assert report["honest"]["val_aiq_evidence"] > report["honest"]["val_aiq_ex_ante"]
    assert report["liar"]["val_aiq_evidence"] < report["liar"]["val_aiq_ex_ante"]
    assert {name: r["val_prompts"] for name, r in report.items()} == {"honest": 80, "liar": 80}


def test_live_prompts_join_their_benchmark_and_offline_matches_online(gated):
    router, test = gated
    bench = test.meta["benchmark"].to_numpy()
    owners = [live_owner(router, p) for p in test.prompts]
    assert all((o is router) == (b == "honest") for o, b in zip(owners, bench))
    assert all(o is router.twin_ for o, b in zip(owners, bench) if b == "liar")
    sim = router.simulate(test)
    for i in range(0, test.n_prompts, 16):
        out = router.run(test.prompts[i], lambda m, p, i=i: test.responses[i, test.model_index(m)])
        assert router.pool_.index(out.model) == sim["chosen"][0, i]


def test_on_the_misleading_slice_decisions_do_not_depend_on_the_answers(gated):
    router, test = gated
    liar = test.subset(np.flatnonzero(test.meta["benchmark"].to_numpy() == "liar"))
    other = np.full(liar.responses.shape, "I am not sure, it might perhaps be 1.", dtype=object)
    swapped = OutcomeLog(liar.prompt_ids, liar.prompts, liar.models, liar.scores, liar.costs, other, liar.meta,
                         liar.source)
    a, b = router.simulate(liar, router.lams_), router.simulate(swapped, router.lams_)
    np.testing.assert_array_equal(a["called"], b["called"])
    np.testing.assert_array_equal(a["chosen"], b["chosen"])
    honest = test.subset(np.flatnonzero(test.meta["benchmark"].to_numpy() == "honest"))
    hidden = OutcomeLog(honest.prompt_ids, honest.prompts, honest.models, honest.scores, honest.costs,
                        np.full(honest.responses.shape, "I am not sure, it might perhaps be 1.", dtype=object),
                        honest.meta, honest.source)
    assert (router.simulate(honest, router.lams_)["called"] != router.simulate(hidden, router.lams_)["called"]).any()


def test_the_gate_survives_a_checkpoint(gated, tmp_path):
    router, test = gated
    loaded = CascadeRouter.load(router.save(tmp_path / "cascade"))
    assert loaded.gate_.report == router.gate_.report
    np.testing.assert_array_equal(loaded.gate_.use, router.gate_.use)
    a, b = router.simulate(test, router.lams_), loaded.simulate(test, router.lams_)
    np.testing.assert_array_equal(a["called"], b["called"])
    np.testing.assert_array_equal(a["chosen"], b["chosen"])


def test_unreadable_answers_warn_with_the_share_and_fall_back_to_ex_ante():
    log = two_benchmarks(60, 0, seed=4)
    prose = np.where(np.ones_like(log.responses, bool), "I could not say, sorry.", None).astype(object)
    log = OutcomeLog(log.prompt_ids, log.prompts, log.models, log.scores, log.costs, prose, log.meta, "<prose>")
    notes, none_read = unreadable_notes(log, log.models)
    assert none_read and len(notes) == 1
    assert "A (0% read)" in notes[0] and "C (0% read)" in notes[0] and "ex-ante evidence only" in notes[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        router = CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(0.0,), n_lams=9,
                               n_folds=2).fit(log.subset(np.arange(40)), log.subset(np.arange(40, 60)))
    assert any("cannot be read" in str(w.message) for w in caught)
    assert not router.has_answers_ and router.gate_ is None and router.scorer_ is None


def test_a_declared_format_is_what_cascade_routing_reads():
    """Prose answers ending on numbers: guessed, they are read (last number); declared JSON, they are not."""
    log = two_benchmarks(60, 0, seed=5)
    meta = log.meta.assign(answer_format="json")
    declared = OutcomeLog(log.prompt_ids, log.prompts, log.models, log.scores, log.costs, log.responses, meta,
                          "<declared json>")
    assert unreadable_notes(log, log.models) == ([], False)
    notes, none_read = unreadable_notes(declared, declared.models)
    assert none_read and "A (0% read)" in notes[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        router = CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(0.0,), n_lams=9,
                               n_folds=2).fit(declared.subset(np.arange(40)), declared.subset(np.arange(40, 60)))
    assert router.answer_format_ == "json" and not router.has_answers_


def test_evaluate_lists_answer_kinds_as_skipped_when_no_answer_can_be_read():
    from routecast.cascade.kinds import cascade_support

    log = two_benchmarks(20, 0, seed=6)
    prose = np.full(log.responses.shape, "I could not say, sorry.", dtype=object)
    log = OutcomeLog(log.prompt_ids, log.prompts, log.models, log.scores, log.costs, prose, log.meta, "<prose>")
    support = cascade_support(log, "all", warn=False)
    assert {"agreement", "majority-vote"} <= set(support.skipped)
    assert "cannot be read" in support.skipped["agreement"] and "A (0% read)" in support.skipped["agreement"]
    assert "cascade-routing" in support.runnable and "ex-post" in support.runnable
    assert any("cannot be read" in note for note in support.warnings)
