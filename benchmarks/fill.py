"""Benchmark: ``collect --fill`` (value of information) against random cells of the same spend.

Issue 23, part 4. A complete outcome log is split by prompt (60/15/25, seed 0; a seeded subset of
``--max-prompts`` prompts per log keeps a run to a few minutes). Its train split becomes a traffic
log: one model per prompt, drawn uniformly (benchmarks/sparse_logs.py's ``uniform`` policy). The
budget is 10 % of what the whole missing train matrix costs (its true per-cell costs). Then

* ``voi``: :func:`routecast.training.fill.choose_cells` picks cells under that budget (estimated
  cost per call: each model's mean logged cost in the traffic log; groups: the benchmark column,
  else k-means clusters of the static encoder), and their scores are read from the complete log
  (what the fake endpoints of the tests would answer; the tests send through the real collector);
* ``random``: uniformly random missing cells until the realised (true) spend of ``voi``, for
  ``--seeds`` seeds.

Each router family is trained on the sparse log, on each filled log and on the complete train
matrix, and measured on the COMPLETE test matrix (AIQ over the single models' cost range).

Gain over the prior = AIQ(router) - AIQ(global prior), where the global prior is the
``cluster-prior`` with k = 1 fitted on the complete train matrix: every prompt gets each model's
mean quality, i.e. the best single model at each budget (routing that ignores the prompt). Share =
gain(voi) / gain(complete) (target >= 80 %). VOI minus random: AIQ(voi) - mean over seeds of
AIQ(random), with a paired 95 % percentile bootstrap over test prompts (the same resample for
every policy; target: interval above 0).

    nice -n 5 .venv/bin/python benchmarks/fill.py [--datasets ...] [--max-prompts 2000] [--seeds 5]
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
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from sparse_logs import fit, load, logging_policy, sparsify  # noqa: E402 - the benchmark next door

DATASETS = "llmrouter_9models,routerdc_7models,zeroeval_gsm_13models"
FAMILIES = ("linear", "cluster-prior", "task-prior")
SHARE = 0.10


def with_cells(sparse, full, cells):
    """``sparse`` with the scores of ``cells`` ((i, j) pairs) read from ``full``."""
    from routecast.data.outcome_log import OutcomeLog

    scores = sparse.scores.copy()
    if cells:
        i, j = np.array(cells).T
        scores[i, j] = full.scores[i, j]
    return OutcomeLog(sparse.prompt_ids, sparse.prompts, sparse.models, scores, sparse.costs, None, sparse.meta,
                      sparse.source + " (filled)")


def random_cells(missing: np.ndarray, true_cost: np.ndarray, spend: float, rng) -> list[tuple[int, int]]:
    """Uniformly random missing cells, in a random order, while the true spend stays <= ``spend``."""
    idx = np.argwhere(missing)
    idx = idx[rng.permutation(len(idx))]
    costs = true_cost[idx[:, 0], idx[:, 1]]
    keep = np.cumsum(costs) <= spend
    return [tuple(map(int, c)) for c in idx[keep]]


def per_prompt(router, test, X):
    """(L, n) cost and quality of every test prompt at every operating point."""
    from routecast.evaluation.measure import sweep_router

    return sweep_router(router, test, embeddings=X, diagnostics=False).per_prompt()


def aiq_of(pp, rows, c_range) -> float:
    from routecast.evaluation.metrics import aiq

    cost, quality = pp
    return float(aiq(cost[:, rows].mean(axis=1), quality[:, rows].mean(axis=1), *c_range))


def run_dataset(name: str, args) -> dict:
    from routecast.data import split_log
    from routecast.evaluation.curves import realised_costs
    from routecast.router.embedding_cache import embed
    from routecast.router.encoders import get_encoder
    from routecast.training.fill import choose_cells, model_costs, prompt_groups

    t0 = time.perf_counter()
    log = load(name).complete()
    if np.isnan(log.costs).any():
        log = log.with_costs(realised_costs(log)[0])
    if args.max_prompts and log.n_prompts > args.max_prompts:
        log = log.subset(np.sort(np.random.default_rng(0).choice(log.n_prompts, args.max_prompts, replace=False)))
    splits = split_log(log, val=0.15, test=0.25, seed=0)
    train, test = splits.train, splits.test
    enc = get_encoder(args.encoder)
    X = {s: embed(enc, list(getattr(splits, s).prompts)) for s in ("train", "test")}
    singles = test.costs.mean(axis=0)
    c_range = (float(singles.min()), float(singles.max()))
    best = int(np.argmax(train.scores.mean(axis=0)))
    sparse = sparsify(train, logging_policy(train, "uniform", best, np.random.default_rng(1)), "estimated")
    missing = np.isnan(sparse.scores)
    budget = SHARE * float(train.costs[missing].sum())
    groups, _, by = prompt_groups(sparse, embeddings=X["train"], seed=0)
    voi, estimated, _ = choose_cells(sparse, budget, model_costs(sparse), groups, candidates=missing, seed=0)
    spend = float(sum(train.costs[i, j] for i, j in voi))
    fills = {"voi": voi}
    for s in range(args.seeds):
        fills[f"random-{s}"] = random_cells(missing, train.costs, spend, np.random.default_rng(100 + s))
    logs = {"complete": train, "sparse": sparse, **{k: with_cells(sparse, train, c) for k, c in fills.items()}}

    from routecast.router.cluster_prior import ClusterPriorRouter

    prior = per_prompt(ClusterPriorRouter(k=1, shrinkage=0.0).fit(train, X["train"]), test, X["test"])
    boot = np.random.default_rng(7).integers(0, test.n_prompts, (args.n_boot, test.n_prompts))
    every = np.arange(test.n_prompts)
    out = {"dataset": name, "prompts": {"train": train.n_prompts, "test": test.n_prompts}, "models": list(log.models),
           "groups": by, "budget": budget, "missing_cells": int(missing.sum()),
           "missing_cost": float(train.costs[missing].sum()), "voi_cells": len(voi), "voi_estimated_cost": estimated,
           "voi_true_cost": spend, "random_cells": [len(fills[f"random-{s}"]) for s in range(args.seeds)],
           "prior_aiq": aiq_of(prior, every, c_range), "families": {}}
    for family in FAMILIES:
        pp = {k: per_prompt(fit(family, lg, X["train"], args.encoder), test, X["test"]) for k, lg in logs.items()}
        aiqs = {k: aiq_of(v, every, c_range) for k, v in pp.items()}
        randoms = [k for k in pp if k.startswith("random")]
        diff_boot = np.array([aiq_of(pp["voi"], rows, c_range) - np.mean([aiq_of(pp[r], rows, c_range)
                                                                           for r in randoms]) for rows in boot])
        gain = {k: v - out["prior_aiq"] for k, v in aiqs.items()}
        random_mean = float(np.mean([aiqs[r] for r in randoms]))
        row = {"aiq": aiqs, "gain_over_prior": gain, "random_mean_aiq": random_mean,
               "share_voi": gain["voi"] / gain["complete"] if gain["complete"] > 0 else None,
               "share_random": (random_mean - out["prior_aiq"]) / gain["complete"] if gain["complete"] > 0 else None,
               "share_sparse": gain["sparse"] / gain["complete"] if gain["complete"] > 0 else None,
               "voi_minus_random": aiqs["voi"] - random_mean,
               "voi_minus_random_ci": [float(np.quantile(diff_boot, 0.025)), float(np.quantile(diff_boot, 0.975))]}
        out["families"][family] = row
        print(f"{name} {family}: complete {aiqs['complete']:.4f} sparse {aiqs['sparse']:.4f} voi {aiqs['voi']:.4f} "
              f"random {random_mean:.4f} prior {out['prior_aiq']:.4f}; voi-random {row['voi_minus_random']:+.4f} "
              f"[{row['voi_minus_random_ci'][0]:+.4f}, {row['voi_minus_random_ci'][1]:+.4f}]", flush=True)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _pct(x) -> str:
    return "–" if x is None else f"{x:.0%}"


def markdown(results: list[dict], args) -> str:
    lines = ["# Filling a traffic log where it matters (benchmarks/fill.py, issue 23 part 4)", "",
             f"Encoder `{args.encoder}`; seeded subset of at most {args.max_prompts} prompts per log, split 60/15/25 "
             "(seed 0; validation unused); train split logged one model per prompt (uniform); budget = 10 % of "
             "the true cost of every missing train cell. VOI cells vs uniformly random cells of the same true "
             f"spend ({args.seeds} seeds). AIQ on the COMPLETE test matrix over the single models' cost range. "
             "Gain over the prior = AIQ - AIQ of the global prior (cluster-prior k=1 on the complete train "
             "matrix: the best single model at each budget). Share = gain / gain of the same family trained "
             f"on the complete train matrix. VOI - random: paired 95 % bootstrap over test prompts ({args.n_boot}).",
             "", "| dataset | groups | budget USD (VOI est. / true) | cells VOI / random | family | AIQ complete "
             "| sparse | VOI | random (mean) | prior | share sparse | share VOI (target >= 80 %) | share random "
             "| VOI - random [95 % CI] |", "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for res in results:
        head = (f"| {res['dataset']} | {res['groups']} | {res['budget']:.4g} ({res['voi_estimated_cost']:.4g} / "
                f"{res['voi_true_cost']:.4g}) | {res['voi_cells']} / {round(float(np.mean(res['random_cells'])))} |")
        for family, r in res["families"].items():
            a = r["aiq"]
            lo, hi = r["voi_minus_random_ci"]
            lines.append(f"{head} {family} | {a['complete']:.4f} | {a['sparse']:.4f} | {a['voi']:.4f} | "
                         f"{r['random_mean_aiq']:.4f} | {res['prior_aiq']:.4f} | {_pct(r['share_sparse'])} | "
                         f"{_pct(r['share_voi'])} | {_pct(r['share_random'])} | {r['voi_minus_random']:+.4f} "
                         f"[{lo:+.4f}, {hi:+.4f}] |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=DATASETS)
    parser.add_argument("--max-prompts", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--encoder", default="static")
    parser.add_argument("--out", default=str(HERE / "results" / "fill"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from routecast.atomic import write_json, write_text

    start = time.perf_counter()
    results = [run_dataset(name.strip(), args) for name in args.datasets.split(",") if name.strip()]
    summary = {"benchmark": "fill", "issue": 23, "encoder": args.encoder, "max_prompts": args.max_prompts,
               "seeds": args.seeds, "n_boot": args.n_boot, "python": platform.python_version(),
               "seconds": round(time.perf_counter() - start, 1), "results": results,
               "targets": {res["dataset"]: {f: {"share_voi_at_least_80pct": (r["share_voi"] or 0) >= 0.8,
                                                "voi_minus_random_ci_above_0": r["voi_minus_random_ci"][0] > 0}
                                            for f, r in res["families"].items()} for res in results}}
    write_json(args.out + ".json", summary)
    write_text(args.out + ".md", markdown(results, args))
    print(f"wrote {args.out}.json and .md ({summary['seconds']} s)")


if __name__ == "__main__":
    main()
