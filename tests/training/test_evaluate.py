"""Evaluation on a tiny hand-made log, where every number can be worked out on paper.

Log (models weak, strong; costs 1 and 3 per call):

    prompt  weak  strong
    p0      1     1
    p1      0     1
    p2      1     0
    p3      0     1

Single models: weak (cost 1, quality .5), strong (cost 3, quality .75).
A router predicting the true scores picks, at lam = 0, weak on p0/p2 and strong on p1/p3:
cost 2, quality 1 (the oracle); for lam > .5 it picks weak everywhere: (1, .5).
"""

import json
import math

import numpy as np
import pytest

from routecast.data.outcome_log import OutcomeLog
from routecast.errors import RoutingError
from routecast.router.base import Router
from routecast.core.curve import RELATIVE, USD, Curve
from routecast.evaluation.curves import realised_costs
from routecast.evaluation.evaluate import evaluate, single_model_curves, sweep_router
from tests._support.routers import LookupRouter

SCORES = np.array([[1, 1], [0, 1], [1, 0], [0, 1]], dtype=float)
COSTS = np.tile([1.0, 3.0], (4, 1))


def make_log(scores=SCORES, costs=COSTS, prompts=None):
    n = len(scores)
    prompts = prompts or [f"prompt {i}" for i in range(n)]
    return OutcomeLog(prompt_ids=[f"p{i}" for i in range(n)], prompts=prompts, models=("weak", "strong"),
                      scores=scores, costs=costs, source="<test>")


class ConstantRouter(Router):
    """Predicts every model's mean training score for every prompt (prompt-blind)."""

    name = "constant"
    family = "a2"
    uses_embeddings = False

    def __init__(self):
        pass

    def _fit(self, log, X):
        self.means_ = log.mean_scores()

    def _predict_quality(self, X, texts):
        return np.tile(self.means_, (len(texts), 1))


def test_complete_rows():
    scores = SCORES.copy()
    scores[2, 1] = np.nan
    assert make_log(scores).complete_rows().tolist() == [True, True, False, True]


def test_sweep_oracle_reaches_oracle_quality_at_lam_zero():
    log = make_log()
    curve = sweep_router(LookupRouter().fit(log), log)
    assert curve.lams[0] == 0
    assert curve.quality[0] == pytest.approx(log.oracle_quality()) == pytest.approx(1.0)
    assert curve.cost[0] == pytest.approx(2.0)
    assert curve.strong_share[0] == pytest.approx(0.5)
    assert curve.choices.dtype == np.int16 and curve.choices.shape == (len(curve.lams), 4)
    assert curve.choices[0].tolist() == [0, 1, 0, 1]
    # largest lam: weak everywhere
    assert (curve.cost[-1], curve.quality[-1]) == (pytest.approx(1.0), pytest.approx(0.5))
    # only two distinct operating points exist
    assert sorted(set(zip(curve.cost.round(9), curve.quality.round(9)))) == [(1.0, 0.5), (2.0, 1.0)]
    assert curve.cost_unit == USD and curve.n_cost_imputed == 0


def test_evaluate_hand_computed_numbers():
    log = make_log()
    curves = {"oracle": sweep_router(LookupRouter().fit(log), log, label="oracle"),
              "constant": sweep_router(ConstantRouter().fit(log), log, label="constant")}
    res = evaluate(curves, log, n_boot=50, seed=0)
    assert res.cost_range == (1.0, 3.0)
    assert res.best_single_model == "strong"
    assert (res.strong_model, res.weak_model) == ("strong", "weak")
    # zero router: (1,.5)-(3,.75) -> mean height .625
    assert res.zero_router_aiq == pytest.approx(0.625)
    o = res.routers["oracle"]
    # hull (1,.5)-(2,1) then flat: ((.5+1)/2 * 1 + 1 * 1) / 2
    assert o.aiq == pytest.approx(0.875)
    assert o.aiq_gain == pytest.approx(0.25)
    assert o.max_quality == pytest.approx(1.0)
    assert o.cost_to_match_best == pytest.approx(1.5)  # hull reaches .75 half way from 1 to 2
    assert o.cost_ratio_to_best == pytest.approx(0.5)
    assert o.quality_at_best_cost == pytest.approx(1.0)
    # APGR: PGR 0 @ share 0, 2 @ .5, stays 2 -> .5*1 + .5*2
    assert o.apgr == pytest.approx(1.5)
    assert o.cpt50 == pytest.approx(0.125)
    assert o.cpt80 == pytest.approx(0.2)
    assert o.call_shares == {"weak": 0.5, "strong": 0.5}
    lo, hi = o.aiq_ci
    assert lo <= o.aiq <= hi and lo < hi
    # the prompt-blind router walks the single models: exactly the zero router
    c = res.routers["constant"]
    assert c.aiq == pytest.approx(0.625)
    assert c.aiq_gain == pytest.approx(0.0, abs=1e-12)
    assert c.apgr == pytest.approx(0.5)
    assert c.call_shares == {"weak": 0.0, "strong": 1.0}
    assert [r["label"] for r in res.leaderboard()] == ["oracle", "constant"]
    assert res.oracle_quality == pytest.approx(1.0)
    json.dumps(res.to_dict(), allow_nan=False)


def test_missing_score_rows_are_dropped_and_missing_costs_filled():
    scores = np.vstack([SCORES, [[1.0, np.nan]]])
    costs = np.vstack([COSTS, [[1.0, 3.0]]])
    costs[0, 1] = np.nan  # filled with strong's mean logged cost (3)
    log = make_log(scores, costs)
    curve = sweep_router(LookupRouter().fit(log), log, label="oracle")
    assert curve.n_prompts == 4 and curve.meta["n_dropped"] == 1 and curve.n_cost_imputed == 1
    assert curve.prompt_index.tolist() == [0, 1, 2, 3]
    res = evaluate({"oracle": curve}, log, n_boot=10)
    assert res.n_dropped == 1 and res.n_prompts == 4
    assert res.routers["oracle"].aiq == pytest.approx(0.875)


def test_no_costs_at_all_uses_relative_cost_scale():
    log = make_log(costs=np.full((4, 2), np.nan))
    unit_costs, n_imputed, unit = realised_costs(log)
    assert unit == RELATIVE and n_imputed == 0
    assert unit_costs[0].tolist() == [0.0, 1.0]  # strong = higher mean score
    curve = sweep_router(LookupRouter().fit(log), log)
    res = evaluate({"oracle": curve}, log, n_boot=10)
    assert res.cost_unit == RELATIVE
    # cost axis = strong share: hull (0,.5)-(.5,1) flat to 1 -> .375 + .5
    assert res.routers["oracle"].aiq == pytest.approx(0.875)


def test_partially_unknown_costs_raise():
    costs = COSTS.copy()
    costs[:, 1] = np.nan
    with pytest.raises(RoutingError, match="strong"):
        realised_costs(make_log(costs=costs))


def test_from_points_cascade_and_single_models():
    log = make_log()
    # a 'cascade' with two settings: always weak; weak then strong on every prompt (cost 4)
    pc = np.array([[1, 1, 1, 1], [4, 4, 4, 4]], dtype=float)
    pq = np.array([SCORES[:, 0], SCORES.max(axis=1)])
    cascade = Curve.from_points(pc, pq, ["t=1", "t=0"], label="cascade", models=log.models,
                                family="cascade", strong_share=[0.0, 1.0])
    singles = single_model_curves(log)
    res = evaluate({"cascade": cascade, **singles}, log, n_boot=20)
    # the range is the single models' [cheapest, dearest] mean cost, not the cascade's 4
    assert res.cost_range == (1.0, 3.0)
    # hull (1,.5)-(4,1) over [1, 3]: .5 at 1, .8333 at 3 -> mean height 2/3
    assert res.routers["cascade"].aiq == pytest.approx(2.0 / 3.0)
    assert res.routers["strong"].status == "point" and math.isnan(res.routers["strong"].aiq)
    assert [r["label"] for r in res.leaderboard()] == ["cascade"]
    assert res.routers["strong"].cost_to_match_best == pytest.approx(3.0)
    assert res.routers["weak"].cost_to_match_best == math.inf
    # zero router over [1, 3]: hull (1,.5)-(3,.75) -> mean .625
    assert res.zero_router_aiq == pytest.approx(0.625)


def test_aiq_does_not_depend_on_the_policies_compared():
    log = make_log()
    alone = evaluate({"oracle": sweep_router(LookupRouter().fit(log), log, label="oracle")}, log, n_boot=20)
    everyone = {"oracle": sweep_router(LookupRouter().fit(log), log, label="oracle"),
                "call-all": Curve.from_points(np.full((1, 4), 4.0), SCORES.max(axis=1)[None], ["all"],
                                              label="call-all", models=log.models, family="ensemble"),
                **single_model_curves(log)}
    together = evaluate(everyone, log, n_boot=20)
    assert together.routers["oracle"].aiq == alone.routers["oracle"].aiq
    assert together.routers["oracle"].aiq_ci == alone.routers["oracle"].aiq_ci
    # a policy whose every point costs more than the range is reported, never scored 0
    assert together.routers["call-all"].status == "outside the range"
    assert math.isnan(together.routers["call-all"].aiq)
    assert together.routers["call-all"].max_quality == pytest.approx(1.0)
    assert any("outside the cost range" in note for note in together.notes)


def test_pinned_cost_range_is_used_and_checked():
    log = make_log()
    curve = sweep_router(LookupRouter().fit(log), log, label="oracle")
    wide = evaluate({"oracle": curve}, log, n_boot=5, cost_range=(0.0, 6.0))
    assert wide.cost_range == (0.0, 6.0) and wide.cost_range_source == "given (cost_range)"
    default = evaluate({"oracle": curve}, log, n_boot=5)
    assert wide.routers["oracle"].aiq != pytest.approx(default.routers["oracle"].aiq)
    with pytest.raises(RoutingError, match="cost_range"):
        evaluate({"oracle": curve}, log, cost_range=(3.0, 1.0))


def test_from_points_on_full_log_is_aligned_to_complete_rows():
    scores = np.vstack([SCORES, [[np.nan, 1.0]]])
    log = make_log(scores, np.vstack([COSTS, [[1.0, 3.0]]]))
    pq = np.array([list(SCORES[:, 1]) + [0.0]])
    curve = Curve.from_points(np.full((1, 5), 3.0), pq, ["strong"], label="s")
    res = evaluate({"s": curve}, log, n_boot=5)
    assert res.routers["s"].max_quality == pytest.approx(0.75)
    bad = Curve.from_points(np.ones((1, 3)), np.ones((1, 3)), ["x"], label="bad")
    with pytest.raises(RoutingError, match="bad"):
        evaluate({"bad": bad}, log, n_boot=5)


def test_bootstrap_is_paired_and_seeded():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 2, size=(60, 2)).astype(float)
    log = make_log(scores, np.tile([1.0, 3.0], (60, 1)))
    curves = {"oracle": sweep_router(LookupRouter().fit(log), log)}
    a = evaluate(curves, log, n_boot=40, seed=1).routers["oracle"].aiq_ci
    b = evaluate(curves, log, n_boot=40, seed=1).routers["oracle"].aiq_ci
    c = evaluate(curves, log, n_boot=40, seed=2).routers["oracle"].aiq_ci
    assert a == b and a != c


def test_real_slice_oracle_beats_best_single(small_split):
    train, test = small_split
    from routecast.core.registry import make_router

    oracle = make_router("oracle").fit(test)
    best = make_router("best-single").fit(train)
    curves = {"oracle": sweep_router(oracle, test), "best-single": sweep_router(best, test)}
    res = evaluate(curves, test, n_boot=20)
    o, b = res.routers["oracle"], res.routers["best-single"]
    assert o.max_quality == pytest.approx(test.oracle_quality())
    assert o.aiq > b.aiq
    assert b.aiq <= res.zero_router_aiq + 1e-9  # a prompt-blind router cannot beat random mixing
    assert o.cost_ratio_to_best < 1.0
    assert res.cost_unit == USD


class EmbeddingEcho(Router):
    """Reads its 'predictions' straight from the first columns of the embeddings it is given."""

    name = "echo"

    def __init__(self):
        pass

    def _fit(self, log, X):
        self.dim_ = int(X.shape[1])

    def _predict_quality(self, X, texts):
        return X[:, :2]


def test_sweep_uses_given_embeddings_of_complete_rows_only():
    scores = np.vstack([SCORES, [[np.nan, 1.0]]])
    log = make_log(scores, np.vstack([COSTS, [[1.0, 3.0]]]))
    # embeddings carry the true scores; the incomplete row carries a sentinel that would break it
    emb = np.vstack([SCORES, [[9.0, 9.0]]]).astype(np.float32)
    router = EmbeddingEcho().fit(log, emb)
    curve = sweep_router(router, log, embeddings=emb)
    assert curve.quality[0] == pytest.approx(1.0) and curve.cost[0] == pytest.approx(2.0)
    with pytest.raises(RoutingError, match="embeddings"):
        sweep_router(router, log, embeddings=emb[:3])


def test_sweep_reorders_test_log_columns_to_router_models():
    log = make_log()
    router = LookupRouter().fit(log)
    swapped = log.select_models(["strong", "weak"])
    curve = sweep_router(router, swapped)
    assert curve.models == ("weak", "strong")
    assert curve.quality[0] == pytest.approx(1.0)


def test_from_points_nan_on_dropped_rows_is_fine_but_not_on_kept_rows():
    scores = np.vstack([SCORES, [[np.nan, 1.0]]])
    log = make_log(scores, np.vstack([COSTS, [[1.0, 3.0]]]))
    ok = Curve.from_points(np.full((1, 5), 1.0), [list(SCORES[:, 0]) + [np.nan]], ["weak"], label="w")
    assert ok.quality[0] == pytest.approx(0.5)
    assert evaluate({"w": ok}, log, n_boot=5).routers["w"].max_quality == pytest.approx(0.5)
    bad = Curve.from_points(np.full((1, 5), 1.0), [[1.0, np.nan, 0.0, 0.0, 1.0]], ["x"], label="holes")
    with pytest.raises(RoutingError, match="holes"):
        evaluate({"holes": bad}, log, n_boot=5)
