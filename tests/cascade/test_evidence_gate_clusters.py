"""The evidence gate without benchmarks (routecast.cascade.evidence_gate): slices by k-means clusters
of the prompt embeddings, gains shrunk against noise, the live prompt embedded once.

The log is the one of test_evidence_gate (on ``honest`` prompts a cheap model hedges exactly when
it is wrong, on ``liar`` prompts exactly when it is right) under a single benchmark label, so only
the prompts' words tell the two kinds apart. Hashing encoder."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from routecast.cascade.cascade_router import CascadeRouter
from routecast.cascade.evidence_gate import PREFIX, EvidenceGate, live_owner, shrunk_gains, slice_decisions
from routecast.data.outcome_log import OutcomeLog
from routecast.errors import ConfigError
from tests.cascade.test_evidence_gate import ENC, two_benchmarks


def one_benchmark(n_honest: int, n_liar: int, seed: int) -> tuple[OutcomeLog, np.ndarray]:
    """The two-benchmark log with every prompt labelled ``gsm``, and the hidden kind of each prompt."""
    log = two_benchmarks(n_honest, n_liar, seed)
    kind = log.meta["benchmark"].to_numpy()
    meta = log.meta.assign(benchmark="gsm")
    return OutcomeLog(log.prompt_ids, log.prompts, log.models, log.scores, log.costs, log.responses, meta,
                      "<one benchmark>"), kind


@pytest.fixture(scope="module")
def clustered():
    train, _ = one_benchmark(300, 60, seed=1)
    val, _ = one_benchmark(80, 80, seed=2)
    test, kind = one_benchmark(80, 80, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # 160 validation prompts, at least 60 a slice: k = 2 clusters
        router = CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(1.0,), n_lams=25,
                               gate_min_prompts=60).fit(train, val)
    return router, test, kind


def test_one_benchmark_is_sliced_by_clusters_and_evidence_kept_where_it_helps_only(clustered):
    router, test, kind = clustered
    gate = router.gate_
    assert gate.by == "cluster" and gate.names == ["cluster-1", "cluster-2"]
    assert gate.use.tolist().count(True) == 1
    report = gate.report
    assert sum(r["val_prompts"] for r in report.values()) == 160
    kept = gate.names[int(np.flatnonzero(gate.use)[0])]
    dropped = next(n for n in gate.names if n != kept)
    assert report[kept]["shrunk_gain"] > report[kept]["shrunk_gain_se"] > 0
    assert report[dropped]["gain"] < 0 and report[dropped]["shrunk_gain"] <= report[dropped]["shrunk_gain_se"]
    # the kept cluster is the honest prompts, the dropped one the liars, found from words alone
    names = np.array(gate.slice_names(router, list(test.prompts)))
    assert (names[kind == "honest"] == kept).all() and (names[kind == "liar"] == dropped).all()
    owners = [live_owner(router, p) for p in test.prompts[:20]]
    assert all((o is router) == (k == "honest") for o, k in zip(owners, kind[:20]))


def test_the_cluster_gate_survives_a_checkpoint_with_identical_decisions(clustered, tmp_path):
    router, test, _ = clustered
    loaded = CascadeRouter.load(router.save(tmp_path / "cascade"))
    assert loaded.gate_.by == "cluster" and loaded.gate_.names == router.gate_.names
    assert loaded.gate_.report == router.gate_.report and loaded.get_params()["gate_se"] == 1.0
    # pooled, answers do not pay (the liars outweigh): the honest cluster departs from that decision
    assert loaded.gate_.pooled == router.gate_.pooled and not router.gate_.pooled["uses_evidence"]
    np.testing.assert_array_equal(loaded.gate_.use, router.gate_.use)
    np.testing.assert_array_equal(loaded.gate_.centroids, router.gate_.centroids)
    assert loaded.gate_.slice_names(loaded, list(test.prompts)) == router.gate_.slice_names(router, list(test.prompts))
    a, b = router.simulate(test, router.lams_), loaded.simulate(test, router.lams_)
    np.testing.assert_array_equal(a["called"], b["called"])
    np.testing.assert_array_equal(a["chosen"], b["chosen"])


def test_a_gate_state_that_does_not_fit_itself_is_refused(clustered):
    config, arrays = clustered[0].gate_.state()
    EvidenceGate.from_state(config, arrays, dim=64)
    bad = {**arrays, PREFIX + "slice_of_benchmark": np.array([0.0, 2.0])}
    with pytest.raises(ValueError, match="slice_of_benchmark must give each of the 2 centroids a slice index below 2"):
        EvidenceGate.from_state(config, bad)
    with pytest.raises(ValueError, match="'by' must be one of all, benchmark, cluster, got 'topic'"):
        EvidenceGate.from_state({**config, "by": "topic"}, arrays)
    with pytest.raises(ValueError, match="centroids has dimension 64, the router's encoder 32"):
        EvidenceGate.from_state(config, arrays, dim=32)
    with pytest.raises(ValueError, match="use must hold one 0/1 flag per slice"):
        EvidenceGate.from_state(config, {**arrays, PREFIX + "use": np.array([1.0])})


def test_a_live_start_embeds_the_prompt_once(clustered, monkeypatch):
    """The gate's slice and the ex-ante router's prediction read one embedding (the hashing encoder
    skips the disk cache, so every embedding is an encoder call)."""
    router, test, kind = clustered
    encoder = router.router_.get_encoder()
    assert encoder is router._encoder()
    calls = []
    real = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts, **kw: calls.append(list(texts)) or real(texts, **kw))
    prompt = test.prompts[int(np.flatnonzero(kind == "liar")[0])]
    state = router.start(prompt, lam=router.lam_)
    assert calls == [[prompt]]
    assert state.planner.owner is router.twin_  # the liar cluster decides ex ante
    calls.clear()
    few = test.subset(np.arange(10))
    router.simulate(few, router.lams_)  # offline too: the prompts are embedded once for router and gate
    hits = [c for c in calls if set(c) & set(few.prompts)]
    assert len(hits) == 1 and sorted(hits[0]) == sorted(few.prompts)


def test_shrunk_gains_follow_the_pooled_gain_when_slices_differ_by_noise_only():
    """Hand-computed DerSimonian-Laird: equal errors 0.01, gains within noise of each other -> the
    between-slice variance is 0 and every slice gets the pooled mean with the pooled error."""
    gain, se = np.array([0.012, 0.004, 0.008]), np.full(3, 0.01)
    shrunk, shrunk_se = shrunk_gains(gain, se)
    np.testing.assert_allclose(shrunk, [0.008] * 3)
    np.testing.assert_allclose(shrunk_se, [0.01 / np.sqrt(3)] * 3)
    # a slice far from the others keeps (almost all of) its own gain
    shrunk, _ = shrunk_gains(np.array([0.05, 0.05, -0.10]), np.full(3, 0.005))
    assert shrunk[2] < -0.09 and shrunk[0] > 0.045
    # one slice: its own gain and error
    s, e = shrunk_gains(np.array([0.02]), np.array([0.03]))
    assert s.tolist() == [0.02] and e.tolist() == pytest.approx([0.03])


def test_a_slice_departs_from_the_pooled_decision_only_beyond_its_errors():
    """Shrunk gains +0.0001 ± 0.0001 (validation cannot tell), -0.03 ± 0.01 (answers mislead),
    +0.02 ± 0.01 (they help): under a pooled "read answers" the first follows it; under a pooled
    "ex ante" only the third reads answers."""
    shrunk, se = np.array([0.0001, -0.03, 0.02]), np.array([0.0001, 0.01, 0.01])
    assert slice_decisions(True, shrunk, se, 1.0).tolist() == [True, False, True]
    assert slice_decisions(False, shrunk, se, 1.0).tolist() == [False, False, True]
    assert slice_decisions(True, shrunk, se, 0.0).tolist() == [True, False, True]
    assert slice_decisions(False, np.array([0.0, 0.001]), np.array([0.0, 0.01]), 0.0).tolist() == [False, True]


@pytest.mark.parametrize("params, message", [({"gate_se": -1.0}, "gate_se must be a finite number >= 0"),
                                             ({"gate_min_prompts": 0}, "gate_min_prompts must be an integer >= 1")])
def test_bad_gate_parameters_name_the_parameter(params, message):
    log, _ = one_benchmark(20, 0, seed=7)
    with pytest.raises(ConfigError, match=message):
        CascadeRouter(router="linear", encoder=ENC, **params).fit(log, log)
