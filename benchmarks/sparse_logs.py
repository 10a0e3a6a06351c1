"""Benchmark: routers from traffic logs (one model per request) against routers from the full matrix.

Issue 23. A complete outcome log (every model on every prompt) is turned into simulated traffic:
every train, validation and test prompt keeps the score of ONE model, drawn by a logging policy

* (a) ``uniform``: each model with probability 1/m;
* (b) ``skewed``: 70 % to the best single model of the train split, the rest uniform over the others;
* (c) ``per-benchmark``: deterministic, one model per benchmark (round robin over sorted benchmarks).

Routers are fitted on the sparse train split (logged cells only, each weighed by its logged
propensity) over ``--aiq-draws`` seeded logging draws (mean reported) and, for comparison, on the
complete train split; both are measured on the COMPLETE test matrix (AIQ over the single models'
cost range). Target under (a): the best sparse-trained router's AIQ within 0.01 of the same router
trained on the complete matrix.

Then, per seeded re-draw of the logging, each of ``COVERAGE_ROUTERS`` (linear, task-prior) is
trained on the sparse train split,
calibrated on the sparse validation split (its doubly robust estimate,
:mod:`routecast.router.estimated_split`) for a budget of half the best single model's cost, and
its quality at that budget is estimated from the sparse test split alone (DR with its 95 % interval,
:func:`routecast.router.estimated_split.policy_interval`: bootstrap over prompts of the
pseudo-outcomes, widened to the logging draw's own variance). Coverage = share of re-draws whose interval holds the router's quality at
the same lam on the complete test matrix. Target: >= 90 % of 50 re-draws under (a) and (b).
Both ways a traffic log gives propensities are run on the same draws: ``logged`` (the simulated
log carries each choice's probability, as a ``propensity`` field) and ``estimated`` (per benchmark,
from the split itself: the log carries none).

    nice -n 5 .venv/bin/python benchmarks/sparse_logs.py [--datasets llmrouter_9models] [--draws 50]
        [--routers linear,knn,task-prior,prior-residual,mf,mlp,irt] [--policies uniform]

``--routers`` bounds the time: each router is fitted 1 + len(policies) x ``--aiq-draws`` times; mlp
and irt cost about 45 s a fit on llmrouter_9models (3,587 train prompts, 2 shared cores), the
others under 8 s (the JSON's ``fit_seconds``). ``--coverage-routers ''`` skips the coverage re-draws.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
SHARED = Path("/work/shared/data")
POLICIES = ("uniform", "skewed", "per-benchmark")
#: the routers whose sparse-trained AIQ is compared with their complete-trained AIQ; mf, mlp and irt
#: share information across models (a cell of one model teaches about the others), the principled
#: answer to a log where each model sees 1/m of the cells
ROUTERS = ("linear", "knn", "task-prior", "prior-residual", "mf", "mlp", "irt")
#: the routers whose calibrated quality is estimated (DR) on every re-draw
COVERAGE_ROUTERS = ("linear", "task-prior")
#: propensities as a real traffic log may give them: logged (a `propensity` field) or estimated
PROPENSITIES = ("logged", "estimated")


def load(name: str):
    from routecast.data import load_log

    path = SHARED / name / "data.parquet"
    return load_log(name if not path.exists() and name == "llmrouter_9models" else str(path))


def logging_policy(split, policy: str, best: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(n,) the model logged for each prompt of ``split`` and (n,) the probability it was chosen."""
    n, m = split.scores.shape
    if policy == "uniform":
        return rng.integers(0, m, n), np.full(n, 1.0 / m)
    if policy == "skewed":
        p = np.full(m, 0.3 / (m - 1))
        p[best] = 0.7
        chosen = rng.choice(m, size=n, p=p)
        return chosen, p[chosen]
    groups = split.meta["benchmark"].astype(str).to_numpy() if "benchmark" in split.meta.columns else np.zeros(n)
    names = sorted(set(groups))
    return np.array([names.index(g) % m for g in groups]), np.ones(n)


def sparsify(split, drawn, propensities: str = "estimated"):
    """``split`` with only the drawn cell of each prompt logged (and its propensity, if logged)."""
    from routecast.data.outcome_log import OutcomeLog

    chosen, p = drawn
    rows = np.arange(split.n_prompts)
    scores = np.full_like(split.scores, np.nan)
    scores[rows, chosen] = split.scores[rows, chosen]
    meta = split.meta.assign(propensity=p) if propensities == "logged" else split.meta
    return OutcomeLog(split.prompt_ids, split.prompts, split.models, scores, split.costs, None, meta,
                      split.source + " (simulated traffic)")


def fit(name, log, X, encoder):
    from routecast.core.registry import make_router

    router = make_router(name, encoder=encoder) if "encoder" in make_router(name).param_names() else make_router(name)
    return router.fit(log, X)


def aiq_on(router, test, X, c_range) -> float:
    from routecast.evaluation.measure import sweep_router
    from routecast.evaluation.metrics import aiq

    curve = sweep_router(router, test, embeddings=X, diagnostics=False)
    return float(aiq(curve.cost, curve.quality, *c_range))


def coverage(splits, X, test, policy, kind, best, budget, draws, encoder, router_name="linear",
             estimator="dr") -> dict:
    """Re-draw the logging ``draws`` times: train, calibrate and estimate from the sparse log alone."""
    from routecast.evaluation.measure import sweep_router
    from routecast.router.estimated_split import estimated_split, policy_interval

    covered, details = 0, []
    t0 = time.perf_counter()
    for draw in range(draws):
        rng = np.random.default_rng(1000 + draw)
        train, val, tst = (sparsify(s, logging_policy(s, policy, best, rng), kind)
                           for s in (splits.train, splits.val, splits.test))
        router = fit(router_name, train, X["train"], encoder)
        val_est, _ = estimated_split(val, train, estimator=estimator)
        router.calibrate(val_est, embeddings=X["val"])
        lam = float(router.operating_curve().lams[router.operating_curve().index_for(budget=budget)])
        test_est, info = estimated_split(tst, train, estimator=estimator)
        est_curve = sweep_router(router, test_est, embeddings=X["test"], lams=[lam], diagnostics=False)
        true_curve = sweep_router(router, test, embeddings=X["test"], lams=[lam], diagnostics=False)
        estimate, (lo, hi) = policy_interval(tst, train, est_curve.choices[0], estimator=estimator, seed=draw)
        truth = float(true_curve.quality[0])
        covered += lo <= truth <= hi
        details.append({"draw": draw, "estimate": estimate, "ci": [lo, hi], "true": truth,
                        "cost_true": float(true_curve.cost[0]), "propensities": info["propensities"],
                        "positivity_fails": len(info["positivity_fails"])})
    return {"draws": draws, "covered": int(covered), "share": covered / max(draws, 1),
            "mean_abs_error": float(np.mean([abs(d["estimate"] - d["true"]) for d in details])),
            "mean_error": float(np.mean([d["estimate"] - d["true"] for d in details])),
            "mean_ci_width": float(np.mean([d["ci"][1] - d["ci"][0] for d in details])),
            "seconds": round(time.perf_counter() - t0, 1), "draws_detail": details}


def run_dataset(name: str, draws: int, encoder: str, max_prompts: int | None, aiq_draws: int = 3,
                coverage_routers: tuple[str, ...] = COVERAGE_ROUTERS, routers: tuple[str, ...] = ROUTERS,
                policies: tuple[str, ...] = POLICIES) -> dict:
    from routecast.data import split_log
    from routecast.router.embedding_cache import embed
    from routecast.router.encoders import get_encoder

    from routecast.evaluation.curves import realised_costs

    log = load(name).complete()
    if np.isnan(log.costs).any():  # a log without costs: the relative scale evaluation uses (0 = weakest)
        log = log.with_costs(realised_costs(log)[0])
    if max_prompts and log.n_prompts > max_prompts:
        log = log.subset(np.sort(np.random.default_rng(0).choice(log.n_prompts, max_prompts, replace=False)))
    splits = split_log(log, val=0.15, test=0.25, seed=0)
    enc = get_encoder(encoder)
    X = {s: embed(enc, list(getattr(splits, s).prompts)) for s in ("train", "val", "test")}
    test = splits.test
    singles_cost = test.costs.mean(axis=0)
    c_range = (float(singles_cost.min()), float(singles_cost.max()))
    best = int(np.argmax(splits.train.scores.mean(axis=0)))
    budget = 0.5 * float(test.costs[:, best].mean())
    out = {"dataset": name, "prompts": {s: getattr(splits, s).n_prompts for s in ("train", "val", "test")},
           "models": list(log.models), "best_single_train": log.models[best], "cost_range": list(c_range),
           "budget": budget, "aiq": {}, "coverage": {}, "fit_seconds": {}}

    complete_aiq = {}
    for r in routers:
        t0 = time.perf_counter()
        complete_aiq[r] = aiq_on(fit(r, splits.train, X["train"], encoder), test, X["test"], c_range)
        out["fit_seconds"][r] = round(time.perf_counter() - t0, 1)  # cost of one fit + sweep, complete train
    for policy in policies:
        # several seeded logging draws: one draw's AIQ moves by about 0.01 with the draw alone
        sparse_trains = [sparsify(splits.train, logging_policy(splits.train, policy, best, np.random.default_rng(1 + d)),
                                  "logged") for d in range(aiq_draws)]
        rows = {}
        for r in routers:
            try:
                values = [aiq_on(fit(r, sparse_train, X["train"], encoder), test, X["test"], c_range)
                          for sparse_train in sparse_trains]
            except Exception as exc:  # a router that cannot learn from this shape of log: say so
                rows[r] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                continue
            value = float(np.mean(values))
            rows[r] = {"complete": complete_aiq[r], "sparse": value, "diff": value - complete_aiq[r],
                       "sparse_draws": values, "sparse_sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}
        fine = {r: v for r, v in rows.items() if "sparse" in v}
        top = max(fine, key=lambda r: fine[r]["sparse"])
        out["aiq"][policy] = {"routers": rows, "best_sparse_router": top, "best_diff": fine[top]["diff"]}

        out["coverage"][policy] = {r: {kind: coverage(splits, X, test, policy, kind, best, budget, draws, encoder, r)
                                       for kind in PROPENSITIES} for r in coverage_routers}
        print(f"{name} {policy}: best sparse {top} diff {fine[top]['diff']:+.4f}; "
              + ", ".join(f"{r} {v['diff']:+.4f}" for r, v in fine.items()) + "; coverage "
              + ", ".join(f"{r}/{k} {v['covered']}/{draws}" for r, kinds in out["coverage"][policy].items()
                          for k, v in kinds.items()), flush=True)
    return out


def markdown(results: list[dict], args) -> str:
    lines = ["# Routers from traffic logs (benchmarks/sparse_logs.py, issue 23)", "",
             f"Encoder `{args.encoder}`; split 60/15/25 by prompt (seed 0)"
             + (f", a seeded subset of {args.max_prompts} prompts per log" if args.max_prompts else "")
             + f"; {args.draws} seeded re-draws of the logging per policy for coverage, with propensities logged "
             "and estimated per benchmark. AIQ over the single models' cost range on the COMPLETE test matrix. "
             "Coverage: the DR estimate (outcome model cross-fitted on train and the split's other folds, "
             "empirical-Bayes shrunk) with its 95 % interval (bootstrap over prompts of the pseudo-outcomes, "
             "widened to the logging draw's own variance: `routecast.router.estimated_split.policy_interval`).", ""]
    for res in results:
        lines += [f"## {res['dataset']}", "",
                  f"prompts {res['prompts']}; best single model (train) {res['best_single_train']}; "
                  f"calibration budget {res['budget']:.6g} USD/query (half its cost); seconds per fit + sweep "
                  f"on the complete train split: {res.get('fit_seconds', {})}.", "",
                  f"| logging policy | router | AIQ trained on complete train | AIQ trained on sparse train "
                  f"(mean of {args.aiq_draws} logging draws) | sd over draws | diff |",
                  "|---|---|---:|---:|---:|---:|"]
        for policy, block in res["aiq"].items():
            for r, v in block["routers"].items():
                if "error" in v:
                    lines.append(f"| {policy} | {r} | – | cannot train: {v['error']} | – | – |")
                else:
                    mark = " **(best sparse)**" if r == block["best_sparse_router"] else ""
                    lines.append(f"| {policy} | {r}{mark} | {v['complete']:.4f} | {v['sparse']:.4f} | "
                                 f"{v.get('sparse_sd', 0.0):.4f} | {v['diff']:+.4f} |")
        if not res["coverage"] or not any(res["coverage"].values()):
            lines.append("")
            continue
        lines += ["", "| logging policy | router | propensities | DR 95% interval covers the complete-matrix quality | "
                  "mean error | mean abs error | mean interval width | draw 0: estimate [95% CI] vs true |",
                  "|---|---|---|---:|---:|---:|---:|---|"]
        for policy, routers in res["coverage"].items():
            for r, kinds in routers.items():
                for kind, cov in kinds.items():
                    d = cov["draws_detail"][0] if cov["draws_detail"] else None
                    ex = f"{d['estimate']:.4f} [{d['ci'][0]:.4f}, {d['ci'][1]:.4f}] vs {d['true']:.4f}" if d else "–"
                    lines.append(f"| {policy} | {r} | {kind} | {cov['covered']}/{cov['draws']} ({cov['share']:.0%}) | "
                                 f"{cov['mean_error']:+.4f} | {cov['mean_abs_error']:.4f} | "
                                 f"{cov['mean_ci_width']:.4f} | {ex} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="llmrouter_9models")
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--encoder", default="static")
    parser.add_argument("--max-prompts", type=int, default=None, help="seeded subset of each log (time)")
    parser.add_argument("--aiq-draws", type=int, default=3, help="seeded logging draws the sparse AIQ is averaged over")
    parser.add_argument("--coverage-routers", default=",".join(COVERAGE_ROUTERS),
                        help="routers whose calibrated quality's DR interval is checked on every re-draw")
    parser.add_argument("--routers", default=",".join(ROUTERS),
                        help="routers whose sparse-trained AIQ is compared with their complete-trained AIQ")
    parser.add_argument("--policies", default=",".join(POLICIES), help="logging policies (comma-separated)")
    parser.add_argument("--out", default=str(HERE / "results" / "sparse_logs"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from routecast.atomic import write_json, write_text

    start = time.perf_counter()
    coverage_routers, routers, policies = (tuple(r.strip() for r in value.split(",") if r.strip())
                                           for value in (args.coverage_routers, args.routers, args.policies))
    results = [run_dataset(name.strip(), args.draws, args.encoder, args.max_prompts, args.aiq_draws, coverage_routers,
                           routers, policies)
               for name in args.datasets.split(",") if name.strip()]
    summary = {"benchmark": "sparse_logs", "issue": 23, "encoder": args.encoder, "draws": args.draws,
               "aiq_draws": args.aiq_draws, "estimator": "dr",
               "max_prompts": args.max_prompts, "python": platform.python_version(),
               "seconds": round(time.perf_counter() - start, 1), "results": results,
               "targets": {res["dataset"]: {
                   "aiq_within_0.01_under_uniform": (abs(res["aiq"]["uniform"]["best_diff"]) <= 0.01
                                                     if "uniform" in res["aiq"] else None),
                   "coverage_at_least_90pct": {f"{p}/{r}/{k}": res["coverage"][p][r][k]["share"] >= 0.9
                                               for p in ("uniform", "skewed") if p in res["coverage"]
                                               for r in res["coverage"][p] for k in PROPENSITIES}}
                   for res in results}}
    write_json(args.out + ".json", summary)
    write_text(args.out + ".md", markdown(results, args))
    print(f"wrote {args.out}.json and .md ({summary['seconds']} s)")


if __name__ == "__main__":
    main()
