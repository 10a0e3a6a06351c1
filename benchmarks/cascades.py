"""Cascade routing vs the best router and the best fixed cascade, on the logs with responses.

    nice -n 5 .venv/bin/python benchmarks/cascades.py [--datasets a,b] [--n-boot 200]

Per dataset, one split (routecast.router.pipeline.prepare: seeded, grouped by prompt text,
val 0.1 / test 0.2, the static encoder - the same path and defaults as every command):

* single models (points), routers ``knn`` and ``linear`` (lam sweep), fixed cascades
  (FrugalGPT-style chain search over the training split's cost-quality frontier, thresholds on
  validation; ex-ante, ex-post and agreement deferral where the log allows), post-hoc selectors
  (Smoothie: embedding agreement, no labels; majority vote; the oracle ensemble, an upper bound),
  and cascade routing (``routecast.cascade.cascade_router``: linear ex-ante router + answer
  scorer + agreement + Smoothie + format features; posterior model cross-fitted on train, its
  uncertainty scale chosen on validation). The answer scorer (of cascade routing and of the
  ex-post cascade alike) uses its default encoder, MiniLM, unless ``--scorer-encoder`` says
  otherwise; its embeddings are cached on disk, so a rerun does not re-embed;
* the agreement-escalation rule (``routecast.cascade.agreement_escalation``: call two cheaper
  models, accept when their final answers agree, else call the strongest; pair chosen on train,
  thresholds on validation), in the fixed-cascade family, on logs with at least three models;
* the posterior's calibration (Brier, expected calibration error) on validation and test, per
  group (ex-ante, answer in hand, model not called yet);
* an ablation: cascade routing fitted and run with the responses hidden (ex-ante evidence only),
  which says how much the answer evidence itself adds;
* AIQ over the declared cost range [cheapest, dearest single model's mean test cost], with a
  95 % percentile bootstrap over test prompts (the same draws for every policy, so differences
  are paired);
* quality at <= 50 % of the best single model's cost, two ways: the operating point chosen on
  validation for a budget of 50 % of the best model's validation cost, applied to test
  (what a deployment sees), and the test hull's quality at 50 % of the best model's test cost
  (optimistic: it reads test outcomes to pick the point);
* the quality-target stop rule: the cheapest operating point whose *validation* quality reaches
  the best single model's validation quality (``target_quality``, the kernel's
  routecast.core.curve.Curve), applied to test - quality, cost (x the best model's) and the paired quality gap
  to the best model, with intervals, for every policy with validation operating points;
* upper bounds (``routecast.cascade.bounds``; oracles reading the *test* scores, labelled as such):
  a perfect-verifier cascade (accept a cheaper answer iff it is as good as the best model's), the
  same chains with a perfect stop rule, and the oracle router - so a reader sees whether "the best
  model's quality at <= 50 % of its cost" is reachable at all on a log, and the test-hull cost at
  which every policy reaches the best model's quality.

Nothing is tuned on test. The "best router" and "best fixed cascade" are the best *on test* of
their families, which favours the baselines.

Costs: routerarena_2models and routellm_strong_weak have logged USD costs. arena_bench_v1 and
alpaca_eval have none; their costs are derived from the list prices below (USD per million
input / output tokens; tokens = ceil(chars / 4) of the prompt and of the logged response).
They are assumptions (providers' list prices when the models were current, typical hosted prices
for open models), not bills: ratios matter, absolute values do not.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path("/work/shared/data")
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from routecast.jsonable import finite_or_none  # noqa: E402  (after the path set-up)

#: USD per million tokens (input, output); see the module docstring for where they come from
PRICES = {
    # arena_bench_v1
    "gpt-4-1106-preview": (10.0, 30.0), "gpt-4-0314": (30.0, 60.0), "gpt-3.5-turbo": (1.5, 2.0),
    "gpt-3.5-turbo-1106": (1.0, 2.0), "mistralai/Mixtral-8x7B-Instruct-v0.1": (0.6, 0.6),
    "claude-2.1": (8.0, 24.0), "claude-1": (8.0, 24.0), "claude-instant-1": (0.8, 2.4),
    "Starling-LM-7B-alpha": (0.2, 0.2), "openchat_3.5": (0.2, 0.2), "vicuna-33b-v1.3": (0.8, 0.8),
    "Llama-2-70b-chat": (0.9, 0.9), "mistralai/Mistral-7B-Instruct-v0.1": (0.2, 0.2),
    "palm-2-chat-bison-001": (2.0, 2.0), "llama-13b": (0.3, 0.3),
    # alpaca_eval subset
    "gpt4_1106_preview": (10.0, 30.0), "claude-2": (8.0, 24.0), "vicuna-13b-v1.5": (0.3, 0.3),
    "FuseChat-Llama-3.2-1B-Instruct": (0.06, 0.06),
}
ALPACA_MODELS = ["FuseChat-Llama-3.2-1B-Instruct", "vicuna-13b-v1.5", "gpt-3.5-turbo-1106", "claude-2",
                 "gpt4_1106_preview"]

#: label -> (data, prepare_priced kwargs, benchmark filter or None, note)
DATASETS = {
    "routellm_strong_weak": ("routellm_strong_weak", {}, None,
                             "built-in; GPT-4 Turbo vs Mixtral, logged USD; responses only on the GSM8K part "
                             "(8.5 % of cells): elsewhere cascade routing has ex-ante evidence only"),
    "routellm_gsm8k": ("routellm_strong_weak", {}, "gsm8k",
                       "the GSM8K part of routellm_strong_weak (every prompt has both responses)"),
    "arena_bench_v1": (str(SHARED / "arena_bench_v1" / "data.parquet"), {"prices": PRICES}, None,
                       "15 models, GPT-4 judge 1-10 rescaled; cost = list price x chars/4 tokens; 300 prompts"),
    "alpaca_eval_gpt4turbo_judge": (str(SHARED / "alpaca_eval_gpt4turbo_judge" / "data.parquet"),
                                    {"prices": PRICES, "models": ALPACA_MODELS}, None,
                                    "5 systems spanning cost; score = P(beats GPT-4 Turbo); gpt4_1106_preview is "
                                    "the judge's own baseline (0.5 everywhere); cost = list price x chars/4"),
    "routerarena_2models": (str(SHARED / "routerarena_2models" / "data.parquet"), {}, None,
                            "logged USD costs; 809 prompts; gemini is cheaper and better on average"),
    "zeroeval_gsm_13models": (str(SHARED / "zeroeval_gsm_13models" / "data.parquet"), {"use_logged_split": True}, None,
                              "GSM8K test, 13 models, one JSON answer each, estimated USD costs (README); the "
                              "logged split (test 508 prompts, validation carved from its train part)"),
}
#: logs whose targets name a reference model (issue 27: "gpt-4o's quality at <= 0.35x its cost"): there the
#: quality-target rule and the cost-to-q* columns read that model in place of the best single test model
REFERENCE = {"zeroeval_gsm_13models": "gpt-4o-2024-08-06"}
ROUTERS = ("knn", "linear")
#: the logs with responses that issue 13's cascade targets name (routellm_strong_weak by its GSM8K part)
TARGET_LOGS = ("routellm_gsm8k", "zeroeval_gsm_13models", "arena_bench_v1", "alpaca_eval_gpt4turbo_judge",
               "routerarena_2models")
HALF = 0.5
#: issue 27: "an operating point chosen on validation reaches the reference model's quality at <= 0.35x its cost"
REFERENCE_BUDGET = 0.35


def prepared_for(label: str, encoder: str | None = None):
    from routecast.cascade.evaluation import prepare_priced

    data, kwargs, only, note = DATASETS[label]
    prepared = prepare_priced(data, **kwargs, **({"encoder": encoder} if encoder else {}))
    if only is not None:
        import dataclasses

        keep = {name: getattr(prepared, name) for name in ("log", "train", "val", "test")}
        keep = {k: v.subset(np.flatnonzero(v.meta["benchmark"].astype(str).to_numpy() == only))
                for k, v in keep.items()}
        prepared = dataclasses.replace(prepared, **keep, _embeddings={})
    return prepared, note


class Policy:
    """Per-prompt (k, n) test cost/quality of one policy and its validation-chosen point."""

    def __init__(self, name, family, cost, quality, *, chosen=None, seconds=None, extra=None, target=None):
        self.name, self.family = name, family
        self.cost = np.atleast_2d(np.asarray(cost, dtype=np.float64))
        self.quality = np.atleast_2d(np.asarray(quality, dtype=np.float64))
        self.chosen = chosen  # (test cost, test quality) at the val-chosen 50 % budget point, or None
        # the quality-target stop rule: (n,) test cost and quality of the cheapest validation point
        # reaching the best single model's validation quality, or a str saying why there is none
        self.target = target
        self.seconds = seconds
        self.extra = extra or {}


def cheapest_reaching(val_cost: np.ndarray, val_quality: np.ndarray, target: float) -> int | None:
    """Index of the cheapest validation point with quality >= ``target`` (ties: better), or None."""
    ok = np.flatnonzero(val_quality >= target - 1e-12)
    if ok.size == 0:
        return None
    return int(ok[np.lexsort((-val_quality[ok], val_cost[ok]))[0]])


def best_index_within(val_cost: np.ndarray, val_quality: np.ndarray, budget: float) -> int | None:
    ok = np.flatnonzero(val_cost <= budget * (1 + 1e-9))
    if ok.size == 0:
        return None
    return int(ok[np.lexsort((val_cost[ok], -val_quality[ok]))[0]])


#: family of the oracle policies: they read the test scores, so they bound, never compete
UPPER = "upper bound (oracle)"


def _cascade_routing_target(cr, log, target: float, unreachable: str):
    """(n,) test cost and quality of cascade routing at the cheapest validation lam reaching
    ``target`` (routecast.core.curve.Curve's ``target_quality``), or why none does."""
    from routecast.errors import RoutecastError

    try:
        lam = cr.lam_for(target_quality=target)
    except RoutecastError:
        return unreachable
    at = cr.simulate(log, [lam])
    return at["cost"][0], at["quality"][0]


def upper_bounds(test, unit: np.ndarray, best: int, pool: list[str]) -> list[Policy]:
    """Oracle policies (routecast.cascade.bounds) over cascade routing's pool plus the best test model.

    They read test scores - upper bounds, not policies: the perfect-verifier cascade (cheapest
    chain of <= 3 models ending at the best model whose verifier accepts an answer iff it is as
    good as the best model's), the same chains with a perfect stop rule (the chain with the best
    test quality at 50 % of the best model's cost), and the oracle router (pool; all models).
    """
    from routecast.cascade.bounds import cheapest_first_chains, oracle_cascade, oracle_router, perfect_verifier
    from routecast.evaluation import metrics

    cols = sorted({test.model_index(m) for m in pool} | {best})
    s, c = test.scores[:, cols], unit[:, cols]
    b = cols.index(best)
    mean_c = c.mean(axis=0)
    chains = cheapest_first_chains(mean_c, b, max_len=3)
    names = lambda chain: [test.models[cols[j]] for j in chain]  # noqa: E731
    out = []
    if chains:
        pv = [perfect_verifier(s, c, chain) for chain in chains]
        i = min(range(len(chains)), key=lambda i: (float(pv[i][0].mean()), -float(pv[i][1].mean())))
        out.append(Policy("perfect-verifier cascade", UPPER, *pv[i], extra={"chain": names(chains[i])}))
        oc = [oracle_cascade(s, c, chain) for chain in chains]

        def rank(i):
            cc, qq = oc[i][0].mean(axis=1), oc[i][1].mean(axis=1)
            half = metrics.quality_at_cost(cc, qq, HALF * mean_c[b])
            return (-(half if np.isfinite(half) else -1.0), metrics.cost_at_quality(cc, qq, s[:, b].mean()))

        i = min(range(len(chains)), key=rank)
        out.append(Policy("oracle-stop cascade", UPPER, *oc[i], extra={"chain": names(chains[i])}))
    out.append(Policy("oracle router (pool)", UPPER, *oracle_router(s, c)))
    if len(cols) < test.n_models:
        out.append(Policy("oracle router (all models)", UPPER, *oracle_router(test.scores, unit)))
    return out


def _cascade_routing_row(name, prepared, train, val, val_c, test, scorer_encoder, lookaheads, budget, ref_budget,
                         val_target, unreachable, params: dict | None = None):
    """(fitted cascade router, its Policy row, warnings about responses). ``ref_budget``: the
    operating point chosen on validation for that budget is kept (``budget_rule``) for issue 27's
    "the reference model's quality at <= 0.35x its cost". ``params``: further CascadeRouter
    hyperparameters (the one-slice gate row)."""
    from routecast.cascade.cascade_router import CascadeRouter
    from routecast.cascade.posterior_calibration import posterior_calibration

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cr = CascadeRouter(router="linear", encoder=prepared.encoder, scorer_encoder=scorer_encoder,
                           **({"lookaheads": lookaheads} if lookaheads else {}), **(params or {})).fit(train, val)
    notes = sorted({str(w.message) for w in caught if "response" in str(w.message)})
    calib = {"val": posterior_calibration(cr, val_c), "test": posterior_calibration(cr, test)}
    sim = cr.simulate(test, cr.lams_)
    chosen = None
    if budget >= cr.curve_.cost.min():
        at = cr.simulate(test, [cr.lam_for(budget=budget)])
        chosen = (float(at["cost"].mean()), float(at["quality"].mean()))
    at = cr.simulate(test, [cr.lam_for(budget=ref_budget)]) if ref_budget >= cr.curve_.cost.min() else None
    target = _cascade_routing_target(cr, test, val_target, unreachable)
    calls = np.array([[bin(int(m)).count("1") for m in row] for row in sim["called"]])
    row = Policy(name, "cascade routing", sim["cost"], sim["quality"], chosen=chosen,
                 seconds=time.perf_counter() - t0,
                 extra={"pool": list(cr.pool_), "kappa": cr.kappa_, "val_aiq_by_kappa": cr.val_aiq_,
                        "calibration": calib, "lookahead": cr.lookahead_,
                        "evidence_gate": None if cr.gate_ is None else {"by": cr.gate_.by, **cr.gate_.report},
                        "mean_calls_range": [float(calls.mean(axis=1).min()), float(calls.mean(axis=1).max())]},
                 target=target)
    row.budget_point = None if at is None else (at["cost"][0], at["quality"][0])
    return cr, row, notes


#: the evidence gate before cluster slices and the noise rule (issue 27, item 4): one slice unless benchmarks
#: split, evidence wherever its validation gain is above 0 - the ``--gate-baseline`` row, for a paired comparison
ONE_SLICE_GATE = {"gate_min_prompts": 10 ** 9, "gate_se": 0.0}


def run_dataset(label: str, n_boot: int, seed: int = 0, encoder: str | None = None,
                scorer_encoder: str | None = None, lookaheads: tuple[str, ...] | None = None,
                sets_row: bool = False, gate_baseline: bool = False) -> dict:
    from routecast.cascade.agreement_escalation import fit_agreement_escalation
    from routecast.cascade.answer_scorer import SCORER_ENCODER
    from routecast.cascade.cascade import Cascade, search_chains
    from routecast.cascade.deferral import ExPostDeferral
    from routecast.cascade.cascade_router import CascadeRouter
    from routecast.cascade.pool import frontier_models
    from routecast.cascade.ensembles import majority_vote, oracle_ensemble
    from routecast.cascade.kinds import cascade_support
    from routecast.cascade.smoothie import smoothie_select
    from routecast.data.outcome_log import OutcomeLog
    from routecast.errors import RoutecastError
    from routecast.evaluation import metrics
    from routecast.evaluation.curves import realised_costs
    from routecast.evaluation.evaluate import sweep_router
    from routecast.router.pipeline import fit_router

    t_start = time.perf_counter()
    prepared, note = prepared_for(label, encoder)
    train, val, test = prepared.train, prepared.val, prepared.test.complete()
    val_c = val.complete()
    unit, _, cost_unit = realised_costs(test)
    single_cost, single_q = unit.mean(axis=0), test.scores.mean(axis=0)
    best = sorted(range(test.n_models), key=lambda j: (-single_q[j], single_cost[j], j))[0]
    if label in REFERENCE:
        best = test.model_index(REFERENCE[label])
    val_cost_single = realised_costs(val_c)[0].mean(axis=0)
    val_best = sorted(range(val_c.n_models), key=lambda j: (-val_c.scores[:, j].mean(), val_cost_single[j], j))[0]
    if label in REFERENCE:
        val_best = val_c.model_index(REFERENCE[label])
    budget = HALF * float(val_cost_single[val_best])
    #: the quality-target stop rule's target: the best single model's quality on validation
    val_target = float(val_c.scores[:, val_best].mean())
    unreachable = f"no validation point reaches {val_target:.4f}"
    support = cascade_support(train, "all", warn=False)
    policies: list[Policy] = []
    skipped = dict(support.skipped)

    for j, name in enumerate(test.models):
        policies.append(Policy(name, "single", unit[:, j], test.scores[:, j]))

    for name in ROUTERS:
        t0 = time.perf_counter()
        router, _ = fit_router(name, None, prepared)
        curve_test = sweep_router(router, test, embeddings=None)
        curve_val = sweep_router(router, val_c)
        i = best_index_within(curve_val.cost, curve_val.quality, budget)
        pc, pq = curve_test.per_prompt()
        chosen = None if i is None else (float(pc[i].mean()), float(pq[i].mean()))
        t = cheapest_reaching(curve_val.cost, curve_val.quality, val_target)
        target = unreachable if t is None else (pc[t], pq[t])
        policies.append(Policy(name, "router", pc, pq, chosen=chosen, seconds=time.perf_counter() - t0,
                               target=target))

    pool = frontier_models(train.complete(), 5) if train.n_models > 5 else list(train.models)
    scorer_encoder = scorer_encoder or SCORER_ENCODER
    fixed = [k for k in ("ex-ante", "ex-post", "agreement", "agreement-escalation") if k in support.runnable]
    for kind in fixed:
        t0 = time.perf_counter()
        try:
            deferral = ExPostDeferral(encoder=scorer_encoder) if kind == "ex-post" else kind
            params = {"deferral": deferral, "router": "knn", "encoder": prepared.encoder}
            if kind == "agreement-escalation":
                cascade = fit_agreement_escalation(train, val, models=pool, router="knn", encoder=prepared.encoder)
            elif len(pool) > 2:
                cascade = search_chains(train, val, max_len=3, models=pool, **params).best
            else:
                cascade = Cascade(chain=sorted(pool, key=lambda m: train.mean_costs()[train.model_index(m)]),
                                  **params).fit(train, val)
            curve = cascade.curve(test)
            chosen = None
            try:
                choice = cascade.thresholds_for_budget(budget)
                c, q, _ = cascade.simulate(test, choice.thresholds)
                chosen = (float(c.mean()), float(np.nanmean(q)))
            except RoutecastError:
                pass
            try:
                c, q, _ = cascade.simulate(test, cascade.thresholds_for_quality(val_target).thresholds)
                target = (c, q)
            except RoutecastError:
                target = unreachable
            policies.append(Policy(f"cascade {kind}", "fixed cascade", curve.costs, curve.quality, chosen=chosen,
                                   seconds=time.perf_counter() - t0, extra={"chain": list(cascade.chain_)},
                                   target=target))
        except RoutecastError as exc:
            skipped[f"cascade {kind}"] = str(exc)

    ref_budget = REFERENCE_BUDGET * float(val_cost_single[val_best])
    cr, row, notes = _cascade_routing_row("cascade-routing", prepared, train, val, val_c, test, scorer_encoder,
                                          lookaheads, budget, ref_budget, val_target, unreachable)
    policies.append(row)
    if sets_row:  # the set actions alone (routecast.cascade.set_actions), declared up front, not chosen on test
        policies.append(_cascade_routing_row("cascade-routing (sets look-ahead)", prepared, train, val, val_c, test,
                                             scorer_encoder, ("sets",), budget, ref_budget, val_target,
                                             unreachable)[1])
    if gate_baseline:  # the same cascade with the one-slice, any-gain gate (ONE_SLICE_GATE)
        policies.append(_cascade_routing_row("cascade-routing (one-slice gate)", prepared, train, val, val_c, test,
                                             scorer_encoder, lookaheads, budget, ref_budget, val_target,
                                             unreachable, ONE_SLICE_GATE)[1])

    # ablation: the same policy without any answer evidence (responses hidden), on the same split
    t0 = time.perf_counter()
    blind = [OutcomeLog(s.prompt_ids, s.prompts, s.models, s.scores, s.costs, None, s.meta, s.source)
             for s in (train, val, test)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cr0 = CascadeRouter(router="linear", encoder=prepared.encoder).fit(blind[0], blind[1])
    sim0 = cr0.simulate(blind[2], cr0.lams_)
    chosen0 = None
    if budget >= cr0.curve_.cost.min():
        at0 = cr0.simulate(blind[2], [cr0.lam_for(budget=budget)])
        chosen0 = (float(at0["cost"].mean()), float(at0["quality"].mean()))
    policies.append(Policy("cascade-routing (ex-ante only)", "ablation", sim0["cost"], sim0["quality"],
                           chosen=chosen0, seconds=time.perf_counter() - t0,
                           target=_cascade_routing_target(cr0, blind[2], val_target, unreachable)))

    post_pool = pool
    if "smoothie" in support.runnable:
        r = smoothie_select(test, encoder=prepared.encoder, models=post_pool)
        policies.append(Policy("smoothie", "post-hoc", r.cost, r.quality))
    if "majority-vote" in support.runnable:
        r = majority_vote(test, models=post_pool)
        policies.append(Policy("majority-vote", "post-hoc", r.cost, r.quality))
    r = oracle_ensemble(test, models=post_pool)
    policies.append(Policy("oracle-ensemble", "post-hoc (upper bound)", r.cost, r.quality))
    bounds = upper_bounds(test, unit, best, list(cr.pool_))
    policies += bounds

    # ---------------------------------------------------------------- metrics
    lo, hi = float(single_cost.min()), float(single_cost.max())
    c_best, q_best = float(single_cost[best]), float(single_q[best])
    n = test.n_prompts
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, n, size=n) for _ in range(n_boot)]

    def aiq_of(p: Policy, idx=None) -> float:
        c = p.cost.mean(axis=1) if idx is None else p.cost[:, idx].mean(axis=1)
        q = p.quality.mean(axis=1) if idx is None else p.quality[:, idx].mean(axis=1)
        return float(metrics.aiq(c, q, lo, hi))

    def half_of(p: Policy, idx=None) -> float:
        c = p.cost.mean(axis=1) if idx is None else p.cost[:, idx].mean(axis=1)
        q = p.quality.mean(axis=1) if idx is None else p.quality[:, idx].mean(axis=1)
        return float(metrics.quality_at_cost(c, q, HALF * c_best))

    def to_best_of(p: Policy, idx=None) -> float:  # test-hull cost reaching the best model's quality, x its cost
        c = p.cost.mean(axis=1) if idx is None else p.cost[:, idx].mean(axis=1)
        q = p.quality.mean(axis=1) if idx is None else p.quality[:, idx].mean(axis=1)
        qb = q_best if idx is None else float(test.scores[idx, best].mean())
        cb = c_best if idx is None else float(unit[idx, best].mean())
        return float(metrics.cost_at_quality(c, q, qb - 1e-12)) / cb

    boots = {p.name: np.array([aiq_of(p, d) for d in draws]) for p in policies}
    half_boots = {p.name: np.array([half_of(p, d) for d in draws]) for p in policies}
    to_best_boots = {p.name: np.array([to_best_of(p, d) for d in draws]) for p in policies}
    s_best, u_best = test.scores[:, best], unit[:, best]

    def target_rule(p: Policy):
        """Test quality, cost (x the best model's, paired) and quality gap to the best model, with
        intervals, of the point the quality-target rule chose on validation."""
        if p.target is None:
            return None
        if isinstance(p.target, str):
            return {"unreachable_on_validation": p.target}
        tc, tq = (np.asarray(a, dtype=np.float64) for a in p.target)
        q, ratio, gap = float(np.nanmean(tq)), float(tc.mean() / u_best.mean()), float(np.nanmean(tq - s_best))
        return {"quality": q, "quality_ci": ci(np.array([np.nanmean(tq[d]) for d in draws])),
                "cost_ratio_to_best": ratio,
                "cost_ratio_ci": ci(np.array([tc[d].mean() / u_best[d].mean() for d in draws])),
                "quality_minus_best": gap, "quality_minus_best_ci": ci(np.array([np.nanmean((tq - s_best)[d])
                                                                                 for d in draws])),
                "meets_half_cost_target": bool(q >= q_best - 1e-12 and ratio <= HALF + 1e-12)}

    def ci(values):
        values = values[np.isfinite(values)]
        return [float(x) for x in np.quantile(values, [0.025, 0.975])] if values.size else [None, None]

    def ci_reach(values):
        """Interval of a cost to reach a quality: a draw where the policy never reaches it is +inf
        (kept, not dropped, so a bound that often fails shows an open upper end: None)."""
        values = values[~np.isnan(values)]
        if not values.size:
            return [None, None]
        return [finite_or_none(float(x)) for x in np.quantile(values, [0.025, 0.975], method="lower")]

    def outside(p: Policy) -> bool:  # its whole curve costs more than the dearest single model
        return bool(p.cost.mean(axis=1).min() > hi * (1 + 1e-9))

    rows = []
    for p in policies:
        rows.append({"policy": p.name, "family": p.family, "aiq": None if outside(p) else aiq_of(p),
                     "aiq_ci": [None, None] if outside(p) else ci(boots[p.name]), "outside_cost_range": outside(p),
                     "min_cost": float(p.cost.mean(axis=1).min()), "max_quality": float(p.quality.mean(axis=1).max()),
                     "hull_quality_at_half_cost": half_of(p), "hull_quality_at_half_cost_ci": ci(half_boots[p.name]),
                     "val_chosen_half_budget": None if p.chosen is None else
                     {"cost": p.chosen[0], "cost_ratio_to_best": p.chosen[0] / c_best, "quality": p.chosen[1]},
                     "hull_cost_to_best_quality_ratio": finite_or_none(to_best_of(p)),
                     "hull_cost_to_best_quality_ratio_ci": ci_reach(to_best_boots[p.name]),
                     "target_rule": target_rule(p),
                     "budget_rule": None if getattr(p, "budget_point", None) is None else
                     target_rule(Policy(p.name, p.family, p.cost, p.quality, target=p.budget_point)),
                     "seconds": p.seconds, **p.extra})

    def best_of(family):
        fam = [p for p in policies if p.family == family]
        return max(fam, key=aiq_of) if fam else None

    cr_pol = next(p for p in policies if p.name == "cascade-routing")
    comparisons = {}
    for family in ("router", "fixed cascade"):
        other = best_of(family)
        if other is None:
            continue
        diff = boots[cr_pol.name] - boots[other.name]
        comparisons[f"vs best {family}"] = {"against": other.name, "aiq_difference": aiq_of(cr_pol) - aiq_of(other),
                                            "ci": ci(diff), "wins": bool(aiq_of(cr_pol) > aiq_of(other))}
    rule = next((p for p in policies if p.name == "cascade agreement-escalation"), None)
    if rule is not None:
        comparisons["vs agreement-escalation"] = {
            "against": rule.name, "aiq_difference": aiq_of(cr_pol) - aiq_of(rule),
            "ci": ci(boots[cr_pol.name] - boots[rule.name]), "wins": bool(aiq_of(cr_pol) > aiq_of(rule))}
    sets_pol = next((p for p in policies if p.name == "cascade-routing (sets look-ahead)"), None)
    for other in ([best_of("router"), rule, cr_pol] if sets_pol is not None else []):
        if other is not None:  # the set actions row against the rule, the best router and the chosen cascade
            comparisons[f"sets look-ahead vs {other.name}"] = {
                "against": other.name, "aiq_difference": aiq_of(sets_pol) - aiq_of(other),
                "ci": ci(boots[sets_pol.name] - boots[other.name]), "wins": bool(aiq_of(sets_pol) > aiq_of(other))}
    one_slice = next((p for p in policies if p.name == "cascade-routing (one-slice gate)"), None)
    if one_slice is not None:
        comparisons["vs one-slice gate"] = {
            "against": one_slice.name, "aiq_difference": aiq_of(cr_pol) - aiq_of(one_slice),
            "ci": ci(boots[cr_pol.name] - boots[one_slice.name]), "wins": bool(aiq_of(cr_pol) > aiq_of(one_slice))}
    blind_pol = next(p for p in policies if p.family == "ablation")
    comparisons["vs ex-ante only"] = {"against": blind_pol.name, "aiq_difference": aiq_of(cr_pol) - aiq_of(blind_pol),
                                      "ci": ci(boots[cr_pol.name] - boots[blind_pol.name]),
                                      "wins": bool(aiq_of(cr_pol) > aiq_of(blind_pol))}
    clusters = cr.gate_.slice_names(cr, list(test.prompts)) if cr.gate_ is not None and cr.gate_.by == "cluster" \
        else None  # the gate's own slices of the test prompts, when they are not benchmarks
    slices = slice_comparisons(test, cr_pol, blind_pol, next(p for p in policies if p.name == "linear"), lo, hi,
                               n_boot, seed, clusters)
    chosen = cr_pol.chosen
    reaches = bool(chosen is not None and chosen[1] >= q_best - 1e-12 and chosen[0] <= HALF * c_best)
    return {"dataset": label, "note": note, "cost_unit": cost_unit,
            "prompts": {"train": train.n_prompts, "val": val.n_prompts, "test": prepared.test.n_prompts,
                        "test_complete": n},
            "best_single": test.models[best], "best_single_quality": q_best, "best_single_cost": c_best,
            "reference_model": REFERENCE.get(label),
            "cost_range": [lo, hi], "val_budget_half": budget, "rows": rows, "comparisons": comparisons,
            "scorer_encoder": scorer_encoder,
            "cascade_routing_reaches_best_at_half_cost_val_chosen": reaches,
            "val_target_quality": val_target,
            "cascade_routing_reaches_best_at_half_cost_target_rule": bool(
                (next(r for r in rows if r["policy"] == "cascade-routing")["target_rule"] or {})
                .get("meets_half_cost_target", False)),
            "reachable_at_half_cost": {r["policy"]: bool(r["hull_quality_at_half_cost"] is not None
                                                         and np.isfinite(r["hull_quality_at_half_cost"])
                                                         and r["hull_quality_at_half_cost"] >= q_best - 1e-12)
                                       for r in rows if r["family"] == UPPER},
            "slices": slices, "evidence_gate": None if cr.gate_ is None else cr.gate_.report,
            "evidence_gate_by": None if cr.gate_ is None else cr.gate_.by,
            "evidence_gate_pooled": None if cr.gate_ is None else cr.gate_.pooled,
            "skipped": skipped, "warnings": notes, "seconds": time.perf_counter() - t_start}


def slice_comparisons(test, cr: Policy, exante: Policy, router: Policy, lo: float, hi: float, n_boot: int,
                      seed: int, clusters: list[str] | None = None) -> list[dict]:
    """Per benchmark of the test split and, when the evidence gate slices by clusters, per gate
    slice (``clusters``: each test prompt's; one row for the whole log too): cascade routing's AIQ
    against its own ex-ante twin (the same policy with the responses hidden) and against its ex-ante
    router (linear), with paired bootstrap intervals over the slice's prompts. ``kind`` of a row:
    all, benchmark or cluster."""
    from routecast.evaluation import metrics

    labels = test.meta["benchmark"].astype(str).to_numpy() if "benchmark" in test.meta.columns else None
    groups = {"(all)": np.arange(test.n_prompts)}
    kinds = {"(all)": "all"}
    if labels is not None and len(set(labels)) > 1:
        groups.update({b: np.flatnonzero(labels == b) for b in sorted(set(labels))})
        kinds.update({b: "benchmark" for b in set(labels)})
    if clusters is not None:
        names = np.array(clusters)
        groups.update({c: np.flatnonzero(names == c) for c in dict.fromkeys(sorted(clusters))})
        kinds.update({c: "cluster" for c in clusters})
    rng = np.random.default_rng(seed + 1)
    out = []
    for name, rows in groups.items():
        def value(p: Policy, idx) -> float:
            return float(metrics.aiq(p.cost[:, idx].mean(axis=1), p.quality[:, idx].mean(axis=1), lo, hi))

        draws = [rows[rng.integers(0, len(rows), size=len(rows))] for _ in range(n_boot)]
        row = {"slice": name, "kind": kinds[name], "n": int(len(rows)), "cascade_routing": value(cr, rows)}
        for key, other in (("vs_ex_ante_twin", exante), ("vs_linear_router", router)):
            diff = np.array([value(cr, d) - value(other, d) for d in draws])
            diff = diff[np.isfinite(diff)]
            row[key] = {"aiq": value(other, rows), "difference": value(cr, rows) - value(other, rows),
                        "ci": [float(x) for x in np.quantile(diff, [0.025, 0.975])] if diff.size else [None, None]}
        out.append(row)
    return out


def markdown(results: list[dict], run: str = "") -> str:
    out = ["# Cascade routing vs routers, fixed cascades and post-hoc selectors", "",
           *([f"Run: {run}", ""] if run else []),
           "`benchmarks/cascades.py`. One seeded split per log (prepare(): grouped by prompt, val 0.1, test 0.2), "
           "static encoder for routers and response embeddings; answer scorer (cascade routing and the ex-post "
           f"cascade) on the `{results[0]['scorer_encoder'] if results else '?'}` encoder. AIQ over the declared range [cheapest, dearest single model's mean test cost]; "
           "95 % bootstrap intervals over test prompts, the same draws for every policy (differences are paired). "
           "`q @ 50% (val)`: the operating point chosen on validation for a budget of 50 % of the best single "
           "model's validation cost, applied to test (cost as a multiple of the best model's test cost). "
           "`hull q @ 50%`: the test hull's quality at 50 % of the best model's test cost (optimistic). "
           "Best router / best fixed cascade = the best of the family on test (favours them).", ""]
    summary = ["| dataset | cascade routing AIQ | best router | Δ [95% CI] | best fixed cascade | Δ [95% CI] | "
               "agreement-escalation AIQ | Δ [95% CI] | Δ vs ex-ante only [95% CI] | best single (q) | "
               "cascade routing q @ 50% (val-chosen) |",
               "|---|---:|---|---:|---|---:|---:|---:|---:|---|---:|"]
    for res in results:
        crow = next(r for r in res["rows"] if r["policy"] == "cascade-routing")
        cells = []
        for key in ("vs best router", "vs best fixed cascade"):
            comp = res["comparisons"].get(key)
            if comp is None:
                cells += ["—", "—"]
                continue
            other = next(r for r in res["rows"] if r["policy"] == comp["against"])
            cells += [f"{comp['against']} {other['aiq']:.4f}",
                      f"{comp['aiq_difference']:+.4f} [{_f(comp['ci'][0], '+.4f')}, {_f(comp['ci'][1], '+.4f')}]"]
        rule = res["comparisons"].get("vs agreement-escalation")
        if rule is None:
            cells += ["—", "—"]
        else:
            other = next(r for r in res["rows"] if r["policy"] == rule["against"])
            cells += [_aiq_cell(other).split(" [")[0],
                      f"{rule['aiq_difference']:+.4f} [{_f(rule['ci'][0], '+.4f')}, {_f(rule['ci'][1], '+.4f')}]"]
        ablation = res["comparisons"]["vs ex-ante only"]
        cells.append(f"{ablation['aiq_difference']:+.4f} [{_f(ablation['ci'][0], '+.4f')}, {_f(ablation['ci'][1], '+.4f')}]")
        ch = crow["val_chosen_half_budget"]
        summary.append(f"| {res['dataset']} | {crow['aiq']:.4f} [{_f(crow['aiq_ci'][0])}, {_f(crow['aiq_ci'][1])}] | "
                       f"{' | '.join(cells)} | {res['best_single']} ({res['best_single_quality']:.4f}) | "
                       f"{_point(ch)} |")
    out += ["## Summary", ""] + summary + [""]
    targets = [r for r in results if r["dataset"] in TARGET_LOGS]
    if targets:
        both = [r["dataset"] for r in targets
                if all(r["comparisons"].get(k, {"wins": True})["wins"] for k in ("vs best router", "vs best fixed cascade"))]
        sure = [r["dataset"] for r in targets
                if all((r["comparisons"].get(k) or {"ci": [1.0]})["ci"][0] > 0
                       for k in ("vs best router", "vs best fixed cascade"))]
        half = [r["dataset"] for r in targets if r["cascade_routing_reaches_best_at_half_cost_val_chosen"]]
        rule = [r["dataset"] for r in targets if r["cascade_routing_reaches_best_at_half_cost_target_rule"]]
        reach = [r["dataset"] for r in targets if r["reachable_at_half_cost"].get("oracle-stop cascade")]
        pv = [r["dataset"] for r in targets
              if any(row["policy"] == "perfect-verifier cascade"
                     and row["min_cost"] <= HALF * r["best_single_cost"] * (1 + 1e-9) for row in r["rows"])]
        out += ["Issue 13 targets, on the logs with responses measured here "
                f"({', '.join(r['dataset'] for r in targets)}): cascade routing beats both the best router and the "
                f"best fixed cascade on AIQ on **{len(both)} of {len(targets)}** ({', '.join(both) or 'none'}; "
                f"both paired intervals above 0 on {', '.join(sure) or 'none'}); it reaches the best single model's "
                f"quality at <= 50 % of its cost with the validation-chosen point on **{len(half)}** "
                f"({', '.join(half) or 'none'}), with the quality-target rule on **{len(rule)}** "
                f"({', '.join(rule) or 'none'}). Upper bounds: a perfect-verifier cascade reaches q* at <= 50 % of the "
                f"best model's cost on {', '.join(pv) or 'none'}; the oracle-stop cascade (test hull) on "
                f"{', '.join(reach) or 'none'}; out of reach even for it on "
                f"{', '.join(r['dataset'] for r in targets if r['dataset'] not in reach) or 'none'}.", ""]
    out += issue27_targets(results)
    out += ["## Is the 50 % target reachable, and does the quality-target rule reach it?", "",
            "Upper bounds (oracle: they read the **test** scores, so no deployable policy is above them) over "
            "cascade routing's pool: the *perfect-verifier cascade* accepts a cheaper model's answer iff its test "
            "score is >= the best model's (cheapest chain of <= 3 models ending at the best model); the "
            "*oracle-stop cascade* is the same chains with a perfect per-prompt stop rule (swept over lam); the "
            "*oracle router* returns the per-prompt best model (it bounds cascade routing too: a cascade pays for "
            "every model it calls). `cost to q*`: test-hull cost reaching the best single model's test quality q*, "
            "as a multiple of its cost (>= 0.50x: the target is out of reach for that policy; 'never': not reached).",
            "",
            "Quality-target rule: the cheapest operating point whose **validation** quality >= the best single "
            "model's validation quality (`target_quality`, routecast.core.curve.Curve), applied to "
            "test; Δq = paired test quality minus the best single model's; cost x paired with its cost.", "",
            "| dataset | best single q* | perfect verifier: q at cost x | oracle-stop cascade q @ 50% [95% CI] "
            "| oracle router (pool) q @ 50% [95% CI] | cascade routing cost to q* (test hull) [95% CI] | "
            "target rule: q [95% CI] | cost x [95% CI] | Δq [95% CI] | meets |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for res in results:
        rows = {r["policy"]: r for r in res["rows"]}
        pv, oc, orr = rows.get("perfect-verifier cascade"), rows.get("oracle-stop cascade"), \
            rows.get("oracle router (pool)")
        cr = rows["cascade-routing"]
        pv_cell = "—" if pv is None else (f"{pv['max_quality']:.4f} at "
                                          f"{pv['min_cost'] / res['best_single_cost']:.2f}x "
                                          f"[{_x(pv['hull_cost_to_best_quality_ratio_ci'][0])}, "
                                          f"{_x(pv['hull_cost_to_best_quality_ratio_ci'][1], 'never')}]")
        out.append(f"| {res['dataset']} | {res['best_single_quality']:.4f} | {pv_cell} | {_half_cell(oc)} | "
                   f"{_half_cell(orr)} | {_reach_cell(cr)} | {' | '.join(_target_cells(cr['target_rule']))} |")
    out += ["", "The same rule for every policy that has validation operating points is in each log's section "
            "below (`target rule` table).", ""]
    for res in results:
        out += [f"## {res['dataset']}", "", res["note"] + ".", "",
                f"Prompts train/val/test: {res['prompts']['train']}/{res['prompts']['val']}/{res['prompts']['test']} "
                f"(test with every score logged: {res['prompts']['test_complete']}). "
                f"{'Reference model (named by the issue; it stands for the best single model below)' if res.get('reference_model') else 'Best single model on test'}: "
                f"**{res['best_single']}** (quality {res['best_single_quality']:.4f}, cost {res['best_single_cost']:.4g} "
                f"{res['cost_unit']}). AIQ cost range: [{res['cost_range'][0]:.4g}, {res['cost_range'][1]:.4g}]. "
                f"Reaches the best single model's quality at <= 50 % of its cost (val-chosen point): "
                f"**{'yes' if res['cascade_routing_reaches_best_at_half_cost_val_chosen'] else 'no'}**.", "",
                "| policy | family | AIQ [95% CI] | max quality | min cost | hull q @ 50% [95% CI] | q @ 50% (val) | cost x (val) | seconds |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        # oracles last: they read test scores and bound the rest, they do not compete
        for r in sorted(res["rows"], key=lambda r: (r["family"] == UPPER,
                                                   -(r["aiq"] if r["aiq"] is not None else -1.0))):
            ch = r["val_chosen_half_budget"]
            hq = r["hull_quality_at_half_cost"]
            out.append(f"| {r['policy']}{' (' + ' → '.join(r['chain']) + ')' if r.get('chain') else ''} | {r['family']} | "
                       f"{_aiq_cell(r)} | {r['max_quality']:.4f} | "
                       f"{r['min_cost']:.4g} | {_f(hq)} [{_f(r['hull_quality_at_half_cost_ci'][0])}, "
                       f"{_f(r['hull_quality_at_half_cost_ci'][1])}] | {_f(None if ch is None else ch['quality'])} | "
                       f"{_x(None if ch is None else ch['cost_ratio_to_best'])} | {_f(r['seconds'], '.1f')} |")
        crow = next(r for r in res["rows"] if r["policy"] == "cascade-routing")
        out += ["", f"Cascade routing: pool {', '.join(crow['pool'])}; look-ahead {crow.get('lookahead', 'normal')}, "
                f"kappa {crow['kappa']} (validation AIQ by look-ahead:kappa: "
                f"{', '.join(f'{k}: {v:.4f}' for k, v in crow['val_aiq_by_kappa'].items())}); mean calls per prompt "
                f"{crow['mean_calls_range'][0]:.2f}–{crow['mean_calls_range'][1]:.2f} over the lam grid.", "",
                "Posterior calibration (Brier / ECE; lower is better): "
                + "; ".join(f"{split} " + ", ".join(f"{g} {c['brier']:.3f} / {c['ece']:.3f} (n {c['n']})"
                                                    for g, c in crow["calibration"][split].items())
                            for split in ("val", "test")) + ".", ""]
        out += ["Quality-target rule (validation target: the best single model's validation quality "
                f"{res['val_target_quality']:.4f}; test q* {res['best_single_quality']:.4f}) and the test-hull cost "
                "to reach q*:", "",
                "| policy | family | test q [95% CI] | cost x [95% CI] | Δq vs best [95% CI] | meets | "
                "cost to q* (test hull) [95% CI] |", "|---|---|---:|---:|---:|---|---:|"]
        for r in res["rows"]:
            if r["target_rule"] is None and r["family"] != UPPER:
                continue
            cells = ["—"] * 4 if r["target_rule"] is None else _target_cells(r["target_rule"])
            out.append(f"| {r['policy']}{' (' + ' → '.join(r['chain']) + ')' if r.get('chain') else ''} | "
                       f"{r['family']} | {' | '.join(cells)} | {_reach_cell(r)} |")
        out.append("")
        for kind, reason in res["skipped"].items():
            out.append(f"- skipped {kind}: {reason}")
        for note in res["warnings"]:
            out.append(f"- warning: {note}")
        out.append("")
    out += ["## Per slice: cascade routing against its own ex-ante decision", "",
            "Issue 27, item 4: per benchmark of the test split and, where the evidence gate slices by k-means "
            "clusters of the prompts (a log without two benchmarks of enough validation prompts), per gate cluster "
            "(test prompts joined to their nearest centroid, as live prompts are), cascade routing's AIQ (same cost "
            "range as the log) against the same policy with the responses hidden (its ex-ante twin) and against its "
            "ex-ante router (linear); paired 95 % bootstrap intervals over the slice's prompts. `gate`: whether the "
            "evidence gate, chosen on validation, uses answer evidence on that slice (a benchmark or cluster the "
            "gate pooled: its `rest` slice; a benchmark under a cluster gate: —). Slices with fewer than 5 test "
            "prompts are left out of the table (they are in the JSON).",
            "",
            "| dataset | slice | n | cascade routing AIQ | Δ vs ex-ante twin [95% CI] | Δ vs linear router [95% CI] | "
            "gate |", "|---|---|---:|---:|---:|---:|---|"]
    for res in results:
        gate, by = res.get("evidence_gate") or {}, res.get("evidence_gate_by", "benchmark")
        for row in [r for r in res.get("slices", []) if r["n"] >= 5]:
            g = _gate_of(gate, by, row)
            cells = [f"{row[k]['difference']:+.4f} [{_f(row[k]['ci'][0], '+.4f')}, {_f(row[k]['ci'][1], '+.4f')}]"
                     for k in ("vs_ex_ante_twin", "vs_linear_router")]
            used = "—" if g is None else ("evidence" if g.get("uses_evidence") else "ex ante")
            out.append(f"| {res['dataset']} | {row['slice']} | {row['n']} | {row['cascade_routing']:.4f} | "
                       f"{' | '.join(cells)} | {used} |")
    out += ["", "Evidence gate per slice on validation (AIQ with answer evidence / ex ante; gain ± its bootstrap "
            "standard error → shrunk gain ± its standard error; the pooled decision: evidence where the whole "
            "split's gain exceeds one standard error, a slice departing from it where its shrunk gain is more than one "
            "standard error on the other side of 0): " + "; ".join(
                f"{res['dataset']} (by {_gate_by(res)}{_pooled(res)}): " + ", ".join(
                    f"{k} {_f(v.get('val_aiq_evidence'))}/{_f(v.get('val_aiq_ex_ante'))} (n {v['val_prompts']}"
                    + (f"; {v['gain']:+.4f} ± {v['gain_se']:.4f} → {v['shrunk_gain']:+.4f} ± "
                       f"{v['shrunk_gain_se']:.4f}" if "gain" in v else "") + ")"
                    for k, v in (res.get("evidence_gate") or {}).items())
                for res in results) + ".", ""]
    missing = [label for label in DATASETS if label not in {r["dataset"] for r in results}]
    if missing:
        out += ["## Not in this run", "",
                f"{', '.join(missing)}: not run here (`--datasets` to add). The whole routellm_strong_weak log "
                "(15.5k prompts) has responses only on its GSM8K part, which is measured above as "
                "routellm_gsm8k; elsewhere cascade routing has ex-ante evidence only.", ""]
    return "\n".join(out)


def issue27_targets(results: list[dict]) -> list[str]:
    """The closing check of issue 27's targets, from the measured rows (met or not, with the numbers)."""
    by = {r["dataset"]: r for r in results}
    lines = ["## Issue 27 targets", ""]

    def row(res, name):
        return next((r for r in res["rows"] if r["policy"] == name), None)

    zero = by.get("zeroeval_gsm_13models")
    for name in ("cascade-routing", "cascade-routing (sets look-ahead)"):
        r = None if zero is None else row(zero, name)
        b = None if r is None else r.get("budget_rule")
        if b is not None:
            ci = b["quality_minus_best_ci"]
            met = ci[1] is not None and ci[1] >= 0 and b["cost_ratio_to_best"] <= REFERENCE_BUDGET
            lines.append(f"- zeroeval, {name}: point chosen on validation for a budget of {REFERENCE_BUDGET}x "
                         f"{zero['best_single']}'s validation cost, on test: Δq {b['quality_minus_best']:+.4f} "
                         f"[{_f(ci[0], '+.4f')}, {_f(ci[1], '+.4f')}] at {b['cost_ratio_to_best']:.2f}x "
                         f"[{_x(b['cost_ratio_ci'][0])}, {_x(b['cost_ratio_ci'][1])}] its cost — "
                         f"**{'met' if met else 'not met'}**.")
    sets = None if zero is None else zero["comparisons"].get("sets look-ahead vs cascade agreement-escalation")
    if sets is not None:
        lines.append(f"- zeroeval, cascade routing with the sets look-ahead vs agreement-escalation on AIQ "
                     f"{sets['aiq_difference']:+.4f} [{_f(sets['ci'][0], '+.4f')}, {_f(sets['ci'][1], '+.4f')}]; "
                     f"test-hull cost to match {zero['best_single']}: "
                     f"{_reach_cell(row(zero, 'cascade-routing (sets look-ahead)'))} against "
                     f"{_reach_cell(row(zero, sets['against']))}.")
    if zero is not None:
        t = row(zero, "cascade-routing")["target_rule"] or {}
        ci = t.get("quality_minus_best_ci", [None, None])
        met = "unreachable_on_validation" not in t and ci[1] is not None and ci[1] >= 0 \
            and t["cost_ratio_to_best"] <= 0.35
        lines.append(f"- zeroeval: validation-chosen point (quality-target rule) vs {zero['best_single']}: "
                     + (t.get("unreachable_on_validation") or
                        f"Δq {t['quality_minus_best']:+.4f} [{_f(ci[0], '+.4f')}, {_f(ci[1], '+.4f')}] at "
                        f"{t['cost_ratio_to_best']:.2f}x its cost")
                     + f" — **{'met' if met else 'not met'}** (needs the interval to include or exceed 0 at <= 0.35x).")
        rule = zero["comparisons"].get("vs agreement-escalation")
        if rule is not None:
            cr, ae = row(zero, "cascade-routing"), row(zero, rule["against"])
            lines.append(f"- zeroeval: cascade routing vs agreement-escalation on AIQ {rule['aiq_difference']:+.4f} "
                         f"[{_f(rule['ci'][0], '+.4f')}, {_f(rule['ci'][1], '+.4f')}] "
                         f"(**{'higher' if rule['wins'] else 'not higher'}**); test-hull cost to match "
                         f"{zero['best_single']}: {_reach_cell(cr)} against {_reach_cell(ae)}.")
    for res in results:
        comp = res["comparisons"].get("vs one-slice gate")
        if comp is not None:
            lines.append(f"- {res['dataset']}: cascade routing with the gate by {res.get('evidence_gate_by')} "
                         f"({', '.join(k for k, v in (res.get('evidence_gate') or {}).items() if v.get('uses_evidence')) or 'no slice'} "
                         f"with evidence) vs the one-slice gate on AIQ {comp['aiq_difference']:+.4f} "
                         f"[{_f(comp['ci'][0], '+.4f')}, {_f(comp['ci'][1], '+.4f')}].")
    below = [f"{res['dataset']}/{s['slice']}" for res in results for s in res.get("slices", [])
             if s["vs_ex_ante_twin"]["ci"][1] is not None and s["vs_ex_ante_twin"]["ci"][1] < 0]
    lines.append(f"- slices where cascade routing is below its ex-ante twin with the paired interval entirely below 0: "
                 f"**{', '.join(below) or 'none'}**.")
    ge = [res["dataset"] for res in results if res["comparisons"].get("vs best router", {}).get("aiq_difference", -1)
          >= -1e-12]
    lines.append(f"- cascade routing >= the best router on AIQ on **{len(ge)} of {len(results)}** logs "
                 f"({', '.join(ge) or 'none'}; target: at least 4 of 5).")
    gsm = by.get("routellm_gsm8k")
    if gsm is not None:
        comp = gsm["comparisons"]["vs best router"]
        lines.append(f"- routellm gsm8k: {comp['aiq_difference']:+.4f} [{_f(comp['ci'][0], '+.4f')}, "
                     f"{_f(comp['ci'][1], '+.4f')}] over the best router ({comp['against']}); target >= +0.04: "
                     f"**{'met' if comp['aiq_difference'] >= 0.04 else 'not met'}**.")
    return lines + [""]


def _pooled(res: dict) -> str:
    p = res.get("evidence_gate_pooled")
    return "" if not p else (f"; pooled {p['gain']:+.4f} ± {p['gain_se']:.4f} → "
                             f"{'evidence' if p['uses_evidence'] else 'ex ante'}")


def _gate_by(res: dict) -> str:
    """What the evidence gate sliced by (results from before the field: one slice or benchmarks)."""
    return res.get("evidence_gate_by") or ("all" if list(res.get("evidence_gate") or {}) == ["all"] else "benchmark")


def _gate_of(gate: dict, by: str, row: dict) -> dict | None:
    """The gate's validation entry that decided a per-slice table row (None: no single one did)."""
    if list(gate) == ["all"]:  # one slice decided every row
        return gate["all"]
    if row["slice"] == "(all)" or row.get("kind", "benchmark") != by:
        return None
    return gate.get(row["slice"], gate.get("rest"))


def _aiq_cell(r) -> str:
    if r["aiq"] is None:
        return "outside the range"
    return f"{r['aiq']:.4f} [{_f(r['aiq_ci'][0])}, {_f(r['aiq_ci'][1])}]"


def _point(ch) -> str:
    return "—" if ch is None else f"{ch['quality']:.4f} at {ch['cost_ratio_to_best']:.2f}x"


def _x(x, none: str = "—") -> str:
    return none if x is None else f"{x:.2f}x"


def _half_cell(r) -> str:
    if r is None:
        return "—"
    lo, hi = r["hull_quality_at_half_cost_ci"]
    return f"{_f(r['hull_quality_at_half_cost'])} [{_f(lo)}, {_f(hi)}]"


def _reach_cell(r) -> str:
    lo, hi = r["hull_cost_to_best_quality_ratio_ci"]
    return f"{_x(r['hull_cost_to_best_quality_ratio'], 'never')} [{_x(lo, 'never')}, {_x(hi, 'never')}]"


def _target_cells(t) -> list[str]:
    """q, cost x, Δq, meets - of the quality-target rule's test point."""
    if t is None:
        return ["—"] * 4
    if "unreachable_on_validation" in t:
        return [t["unreachable_on_validation"], "—", "—", "no"]
    return [f"{t['quality']:.4f} [{_f(t['quality_ci'][0])}, {_f(t['quality_ci'][1])}]",
            f"{t['cost_ratio_to_best']:.2f}x [{_x(t['cost_ratio_ci'][0])}, {_x(t['cost_ratio_ci'][1])}]",
            f"{t['quality_minus_best']:+.4f} [{_f(t['quality_minus_best_ci'][0], '+.4f')}, "
            f"{_f(t['quality_minus_best_ci'][1], '+.4f')}]",
            "**yes**" if t["meets_half_cost_target"] else "no"]


def _f(x, spec: str = ".4f") -> str:
    return "—" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--encoder", default=None, help="encoder spec (default: the library default, static)")
    parser.add_argument("--scorer-encoder", default=None,
                        help="answer scorer encoder spec (default: the scorer's default, minilm)")
    parser.add_argument("--lookaheads", default=None,
                        help="cascade routing's candidate look-aheads, comma-separated, chosen on validation "
                             "(default: the library default)")
    parser.add_argument("--sets-row", action="store_true",
                        help="add cascade routing with the sets look-ahead alone (set actions) as a row")
    parser.add_argument("--gate-baseline", action="store_true",
                        help="add cascade routing with the one-slice, any-gain evidence gate as a row (ONE_SLICE_GATE)")
    parser.add_argument("--out", default=str(HERE / "results" / "cascades"))
    parser.add_argument("--render", action="store_true", help="only rewrite <out>.md from <out>.json")
    args = parser.parse_args()
    if args.render:
        import json

        from routecast.atomic import write_text

        stored = json.loads(Path(args.out + ".json").read_text())
        write_text(args.out + ".md", markdown(stored["datasets"], stored.get("run", "")))
        return

    from routecast.atomic import write_json, write_text

    results = []
    run = (f"cascade routing's look-aheads {args.lookaheads or 'the library default'} (chosen on validation)"
           + ("; plus the row `cascade-routing (sets look-ahead)`: the same with the `sets` look-ahead alone (set "
              "actions, routecast.cascade.set_actions), declared before the run" if args.sets_row else "")
           + ("; plus the row `cascade-routing (one-slice gate)`: the same with the evidence gate as before cluster "
              "slices and the noise rule (one slice unless benchmarks split, evidence wherever its validation gain "
              "is above 0)" if args.gate_baseline else "") + ".")
    for label in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        res = run_dataset(label, args.n_boot, encoder=args.encoder, scorer_encoder=args.scorer_encoder,
                          lookaheads=tuple(args.lookaheads.split(",")) if args.lookaheads else None,
                          sets_row=args.sets_row, gate_baseline=args.gate_baseline)
        results.append(res)
        comp = {k: f"{v['aiq_difference']:+.4f} {v['ci']}" for k, v in res["comparisons"].items()}
        print(f"{label}: {comp} reaches@50%: {res['cascade_routing_reaches_best_at_half_cost_val_chosen']} "
              f"({res['seconds']:.0f}s)", flush=True)
        # written after every dataset, so a long run keeps what it finished
        write_json(args.out + ".json", {"split": "prepare(): grouped seeded, val 0.1 / test 0.2, seed 0",
                                        "encoder": args.encoder or "static",
                                        "scorer_encoder": results[0]["scorer_encoder"],
                                        "lookaheads": args.lookaheads or "library default", "run": run,
                                        "prices_usd_per_mtok": PRICES, "datasets": results})
        write_text(args.out + ".md", markdown(results, run))
    print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
