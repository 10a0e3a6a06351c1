"""``routecast evaluate --off-policy LOG``: candidate routers judged on logged traffic.

The decision log of a deployed router, with its feedback, is turned into a bandit outcome log
(:func:`routecast.data.decision_log.outcome_log_from_decisions`). Each candidate - a checkpoint
folder, or a registered router name fitted on ``data``'s train split - routes the logged prompts
at its default operating point (or ``lam``), and :func:`routecast.evaluation.off_policy.off_policy_estimates`
estimates its quality and cost with IPS, SNIPS and doubly robust estimators (the candidate's own
predicted qualities are DR's reward model), each with a 95 % bootstrap interval. The logging
policy's own realised mean is the reference row.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from routecast.errors import ConfigError, DataError


def _candidate(spec: str, data: str | None, encoder: str | None, seed: int):
    """A fitted router from a checkpoint path or a registry name (fitted on ``data``'s train split)."""
    from routecast.core.checkpoint import load_checkpoint
    from routecast.router.pipeline import fit_router, prepare

    if Path(spec).is_dir():
        return load_checkpoint(spec)
    if data is None:
        raise ConfigError(f"router {spec!r} is a name, not a checkpoint folder: give data to fit it on")
    kwargs = {"seed": seed} if encoder is None else {"seed": seed, "encoder": encoder}
    router, _ = fit_router(spec, None, prepare(data, **kwargs))
    return router


def evaluate_off_policy(decision_log: str | os.PathLike, routers: Sequence[str], *, data: str | None = None,
                        encoder: str | None = None, lam: float | None = None, n_boot: int = 500,
                        seed: int = 0) -> dict[str, Any]:
    """Estimate each candidate's mean quality and cost on the logged, feedback-scored traffic."""
    from routecast.data.decision_log import outcome_log_from_decisions
    from routecast.evaluation.off_policy import off_policy_estimates

    bandit = outcome_log_from_decisions(decision_log)
    if "propensity" not in bandit.meta.columns or bandit.meta["propensity"].isna().any():
        raise DataError("the decision log has no propensities: off-policy evaluation needs them",
                        path=str(decision_log), column="propensity")
    models = list(bandit.models)
    logged = np.array([models.index(m) for m in bandit.meta["chosen"]])
    rows = np.arange(bandit.n_prompts)
    score = bandit.scores[rows, logged]
    cost = bandit.costs[rows, logged]
    if np.isnan(cost).any():
        raise DataError("some logged decisions have neither a realised nor an expected cost",
                        path=str(decision_log), column="realised_cost")
    out: dict[str, Any] = {"decision_log": str(decision_log), "n_requests": bandit.n_prompts,
                           "models": models, "logged_policy": {"quality": float(score.mean()),
                                                               "cost": float(cost.mean())},
                           "candidates": {}}
    for spec in routers:
        if spec == SHADOW:
            out["candidates"][spec] = _shadow_estimate(bandit, models, logged, score, cost, n_boot, seed)
            continue
        router = _candidate(spec, data, encoder, seed)
        if tuple(router.models_) != tuple(models):
            missing = sorted(set(models) - set(router.models_))
            if missing:
                raise ConfigError(f"router {spec!r} cannot route to {', '.join(missing)}, which the log used")
            router_cols = [list(router.models_).index(m) for m in models]
        else:
            router_cols = list(range(len(models)))
        quality = router.predict_quality(list(bandit.prompts))[:, router_cols]
        costs = np.asarray(router.costs_, dtype=np.float64)[router_cols]
        decision = router.route_from_quality(quality, lam=lam) if lam is not None else \
            router.route_from_quality(quality)
        cost_model = np.broadcast_to(np.nan_to_num(costs, nan=float(np.nanmean(cost))), quality.shape)
        est = off_policy_estimates(decision.choice, logged, bandit.meta["propensity"].to_numpy(dtype=float),
                                   score, cost, reward_model=quality, cost_model=cost_model,
                                   n_models=len(models), n_boot=n_boot, seed=seed)
        out["candidates"][spec] = {"lam": decision.lam, "operating_point": decision.operating_point,
                                   **est.to_dict()}
    return out


#: the candidate name that means "the shadow checkpoint's logged decisions" (``serve --shadow``)
SHADOW = "shadow"


def _shadow_estimate(bandit, models, logged, score, cost, n_boot: int, seed: int) -> dict[str, Any]:
    """The shadow checkpoint judged on the same requests by its logged choices (no re-routing)."""
    from routecast.evaluation.off_policy import off_policy_estimates

    column = bandit.meta.get("shadow_chosen")
    if column is None or column.isna().any():
        raise DataError("not every scored decision has a shadow decision (serve --shadow CKPT logs them)",
                        path=bandit.source, column="shadow_chosen")
    unknown = sorted(set(column) - set(models))
    if unknown:
        raise DataError(f"the shadow chose {', '.join(unknown)}, which the live router cannot route to",
                        path=bandit.source, column="shadow_chosen")
    target = np.array([models.index(m) for m in column])
    est = off_policy_estimates(target, logged, bandit.meta["propensity"].to_numpy(dtype=float), score, cost,
                               n_models=len(models), n_boot=n_boot, seed=seed)
    return {"lam": None, "operating_point": None, **est.to_dict()}


def off_policy_markdown(result: dict[str, Any]) -> str:
    """One row per candidate and estimator: quality and cost with their intervals."""
    lines = [f"{result['n_requests']} logged requests with feedback; logging policy: quality "
             f"{result['logged_policy']['quality']:.4f}, cost {result['logged_policy']['cost']:.6g}.", "",
             "| router | estimator | quality [95% CI] | cost [95% CI] | agrees with log |",
             "|---|---|---|---|---:|"]
    for name, est in result["candidates"].items():
        for e in ("ips", "snips", "dr"):
            q, (qlo, qhi) = est["quality"][e], est["quality_ci"][e]
            c, (clo, chi) = est["cost"][e], est["cost_ci"][e]
            lines.append(f"| {name} | {e.upper()} | {q:.4f} [{qlo:.4f}, {qhi:.4f}] | {c:.6g} [{clo:.6g}, {chi:.6g}] | "
                         f"{est['match_rate']:.1%} |")
    return "\n".join(lines)
