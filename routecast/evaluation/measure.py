"""Measuring a policy's curve on held-out outcomes: the one function calibration, evaluation,
tuning and ``routecast calibrate``'s test-split check all call.

Why one function: a calibrated budget is only worth what its measurement is worth. When
calibration, evaluation and the check on the test split each swept and priced the choices in
their own way, a lam calibrated on validation could mean something else on test. Here a policy
predicts quality once per complete prompt (the kernel's rule for unlogged cells: prompts missing
a score are dropped and counted), decides with the kernel's rule
(:func:`routecast.core.policy.sweep`) on the costs it expects, and every choice is priced and
scored by what that call really cost and scored in the log
(:func:`routecast.evaluation.curves.realised_costs`). Pairwise logs (judged pairs, no score
cells) are measured by :func:`routecast.evaluation.pairwise.pairwise_curve` under the same
decisions.

:func:`upper_spend` turns a measured curve into a conservative one: budgets are then met by the
upper end of a bootstrap interval of the spend, so a budget holds on unseen prompts too.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from routecast.core.curve import USD, Curve
from routecast.core.policy import EVALUATION_POINTS, pair_share_curve, strong_weak, sweep
from routecast.errors import RoutingError
from routecast.evaluation.curves import realised_costs
from routecast.evaluation.metrics import bootstrap_cis
from routecast.evaluation.predictability import predictability

__all__ = ["complete_log", "sweep_router", "upper_spend", "SPEND_LEVEL", "SPEND_DRAWS"]

#: one-sided level of the conservative spend (the budget holds with this probability over prompts)
SPEND_LEVEL = 0.95
#: bootstrap draws of the conservative spend
SPEND_DRAWS = 200


def complete_log(log):
    """``(log restricted to its complete rows, (n,) bool mask)``; a log without one is refused."""
    mask = log.complete_rows()
    if not mask.any():
        raise RoutingError(f"no prompt of {log.source} has a score for every model "
                           f"({', '.join(log.models)}); cannot evaluate routing on it")
    return (log if mask.all() else log.subset(mask)), mask


def sweep_router(router, test_log, *, embeddings: np.ndarray | None = None,
                 lams: np.ndarray | None = None, n_points: int = EVALUATION_POINTS,
                 costs: np.ndarray | None = None, strong: int | None = None,
                 label: str | None = None, meta: Mapping[str, Any] | None = None,
                 diagnostics: bool = True) -> Curve:
    """Route every complete prompt of ``test_log`` at every lam and record realised outcomes.

    Quality is predicted once (``embeddings`` of all of ``test_log``'s prompts may be passed to
    skip encoding). The lams are ``lams``, else :func:`routecast.core.policy.lam_grid` with
    ``n_points``. Decisions use the router's expected per-model costs from training (or
    ``costs``, a per-model price table); a model whose expected cost is unknown takes its mean
    realised cost on the test log. The realised cost of a choice is the logged cost of that call
    (missing cells filled as :func:`~routecast.evaluation.curves.realised_costs` says and counted
    in ``Curve.n_cost_imputed``); the realised quality is the logged score. Strong-call shares
    count ``strong`` (default: the best single model of the measured prompts,
    :func:`routecast.core.policy.strong_weak`). ``diagnostics`` adds what reports show
    (predictability, RouteLLM's share axis on two-model logs); calibration skips them.
    """
    if tuple(test_log.models) != tuple(router.models_):
        missing = [m for m in router.models_ if m not in test_log.models]
        if missing:
            raise RoutingError(f"router was trained on model(s) {', '.join(missing)} "
                               f"that the test log {test_log.source} lacks")
        test_log = test_log.select_models(router.models_)
    log, mask = complete_log(test_log)
    expected = np.asarray(router.costs_ if costs is None else costs, dtype=np.float64).reshape(-1)
    unit_costs, n_imputed, unit = realised_costs(log, expected)
    # decide on the costs the router expects (known before seeing the test log); only a model
    # without any expected cost falls back to its mean cost here
    observed = unit_costs.mean(axis=0)
    decision_costs = np.where(np.isfinite(expected), expected, observed) if unit == USD else observed
    if embeddings is not None:
        embeddings = np.asarray(embeddings)
        if len(embeddings) != test_log.n_prompts:
            raise RoutingError(f"got {len(embeddings)} embeddings for {test_log.n_prompts} test prompts")
        embeddings = embeddings[mask]
    start = time.perf_counter()
    quality = router.predict_quality(list(log.prompts), embeddings=embeddings)
    predict_seconds = time.perf_counter() - start
    grid, choices = sweep(quality, decision_costs, lams, n_points=n_points)
    pair = strong_weak(unit_costs.mean(axis=0), log.scores.mean(axis=0))
    strong = pair.strong if strong is None else int(strong)
    info = {"strong_index": strong, "n_dropped": int((~mask).sum()),
            # batch prediction time (embeddings excluded when given): not single-query latency
            "batch_predict_us_per_query": 1e6 * predict_seconds / max(log.n_prompts, 1)}
    if diagnostics:
        column = next((c for c in ("benchmark", "task") if c in log.meta.columns), None)
        groups = None if column is None else log.meta[column].astype(str).to_numpy()
        info["predictability"] = predictability(quality, log.scores, log.models, groups)
    info.update(meta or {})
    curve = Curve.from_choices(grid, choices, unit_costs, log.scores.copy(), strong=strong,
                               label=label or router.name or type(router).__name__, models=log.models,
                               n_dropped=int((~mask).sum()), family=getattr(router, "family", ""),
                               prompt_index=np.flatnonzero(mask), cost_unit=unit, n_cost_imputed=n_imputed,
                               meta=info)
    if diagnostics and log.n_models == 2:  # RouteLLM's share axis: the margin threshold swept over every value
        curve.pair_shares = (pair.strong, *pair_share_curve(quality, log.scores, pair.strong, pair.weak))
    return curve


def upper_spend(curve: Curve, *, level: float = SPEND_LEVEL, n_boot: int = SPEND_DRAWS,
                seed: int = 0) -> Curve:
    """``curve`` with budgets met by the upper end of a bootstrap interval of its spend.

    The mean spend on the calibration prompts is itself an estimate: on unseen prompts the same
    lam spends more about half the time. Resampling the prompts (``n_boot`` draws, percentile
    bootstrap) gives, per lam, the spend exceeded with probability ``1 - level``; a budget met by
    that value holds on new prompts with probability about ``level``, at some quality.
    """
    if not 0.5 <= level < 1.0:
        raise RoutingError(f"the spend level must be in [0.5, 1), got {level}")
    per_prompt_cost, _ = curve.per_prompt()
    # percentile interval with alpha = 2 (1 - level): its upper end is the one-sided level quantile
    intervals = bootstrap_cis(lambda idx: dict(enumerate(per_prompt_cost[:, idx].mean(axis=1))),
                              per_prompt_cost.shape[1], n_boot=n_boot, seed=seed, alpha=2 * (1 - level))
    upper = np.array([max(intervals[i][1], curve.cost[i]) for i in range(curve.n_points)])
    return curve.with_upper_spend(upper, {"level": level, "draws": n_boot, "seed": seed,
                                          "method": "percentile bootstrap over prompts"})
