"""Benchmark: ``collect --fill`` (value of information) against random cells of the same spend.

Issue 23, part 4. A complete outcome log is split by prompt (60/15/25, seed 0; a seeded subset of
``--max-prompts`` prompts per log keeps a run to a few minutes). Its train split becomes a traffic
log: one model per prompt, drawn uniformly (benchmarks/sparse_logs.py's ``uniform`` policy). The
budget is 10 % of what the whole missing train matrix costs (its true per-cell costs). Then

* ``voi_prompt``: :func:`routecast.training.fill.choose_cells_by_prompt` (per-prompt value: ridge
  belief over the static embedding) and ``voi_group``: :func:`routecast.training.fill.choose_cells`
  (per-group value; groups: the benchmark column, else k-means clusters of the static encoder) pick
  cells under that budget (estimated cost per call: each model's mean logged cost in the traffic
  log), and their scores are read from the complete log (what the fake endpoints of the tests
  would answer; the tests send through the real collector);
* ``rnd_prompt`` / ``rnd_group``: uniformly random missing cells until the realised (true) spend
  of the matching VOI fill, for ``--seeds`` seeds,

for ``--draws`` seeded draws of the traffic log.

Each router family is trained on the sparse log, on each filled log and on the complete train
matrix, and measured on the COMPLETE test matrix (AIQ over the single models' cost range).

Gain over the prior = AIQ(router) - AIQ(global prior), where the global prior is the
``cluster-prior`` with k = 1 fitted on the complete train matrix: every prompt gets each model's
mean quality, i.e. the best single model at each budget (routing that ignores the prompt). Share =
gain(voi) / gain(complete) (target >= 80 %). VOI minus random, per value: AIQ(voi) - mean over
seeds of AIQ(random), averaged over draws, with a paired 95 % percentile bootstrap over test prompts (the
same resample for every policy; target: interval above 0).

    nice -n 5 .venv/bin/python benchmarks/fill.py [--datasets ...] [--max-prompts 3000] [--draws 3] [--seeds 3]
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
#: the two values of a cell (routecast.training.fill.VALUES), each against its own random fill
VALUES = ("prompt", "group")
SHARE = 0.10
#: a complete-matrix gain over the prior below this AIQ is no gain to take a share of
MIN_GAIN = 0.002


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
    from routecast.training.fill import choose_cells, choose_cells_by_prompt, model_costs, prompt_groups

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
    from routecast.router.cluster_prior import ClusterPriorRouter

    prior = per_prompt(ClusterPriorRouter(k=1, shrinkage=0.0).fit(train, X["train"]), test, X["test"])
    boot = np.random.default_rng(7).integers(0, test.n_prompts, (args.n_boot, test.n_prompts))
    every = np.arange(test.n_prompts)
    out = {"dataset": name, "prompts": {"train": train.n_prompts, "test": test.n_prompts}, "models": list(log.models),
           "prior_aiq": aiq_of(prior, every, c_range), "draws": [], "families": {}}
    logs = {"complete": train}
    for draw in range(args.draws):
        sparse = sparsify(train, logging_policy(train, "uniform", best, np.random.default_rng(1 + draw)), "estimated")
        missing = np.isnan(sparse.scores)
        budget = SHARE * float(train.costs[missing].sum())
        groups, _, by = prompt_groups(sparse, embeddings=X["train"], seed=0)
        cost = model_costs(sparse)
        t1 = time.perf_counter()
        chosen = {"group": choose_cells(sparse, budget, cost, groups, candidates=missing, seed=0)}
        t2 = time.perf_counter()
        chosen["prompt"] = choose_cells_by_prompt(sparse, budget, cost, X["train"], candidates=missing, seed=0)
        seconds = {"group": t2 - t1, "prompt": time.perf_counter() - t2}
        logs[f"sparse/{draw}"] = sparse
        info = {"budget": budget, "missing_cells": int(missing.sum()), "missing_cost": float(train.costs[missing].sum())}
        for value, (voi, estimated, _) in chosen.items():
            spend = float(sum(train.costs[i, j] for i, j in voi))
            fills = {f"voi_{value}": voi}
            for s in range(args.seeds):
                fills[f"rnd_{value}-{s}"] = random_cells(missing, train.costs, spend, np.random.default_rng(100 + s))
            logs.update({f"{k}/{draw}": with_cells(sparse, train, c) for k, c in fills.items()})
            info[value] = {"voi_cells": len(voi), "voi_estimated_cost": estimated, "voi_true_cost": spend,
                           "seconds": round(seconds[value], 1),
                           "cells_per_model": np.bincount([j for _, j in voi], minlength=train.n_models).tolist(),
                           "random_cells": [len(fills[f"rnd_{value}-{s}"]) for s in range(args.seeds)]}
        out["groups"] = by
        out["draws"].append(info)
    for family in FAMILIES:
        pp = {k: per_prompt(fit(family, lg, X["train"], args.encoder), test, X["test"]) for k, lg in logs.items()}

        def mean_aiq(kind: str, rows) -> float:
            """Mean over draws (and random seeds) of the AIQ of ``kind`` on test prompts ``rows``."""
            return float(np.mean([aiq_of(v, rows, c_range) for k, v in pp.items() if k.split("/")[0].startswith(kind)]))

        kinds = ("complete", "sparse") + tuple(f"{p}_{v}" for v in VALUES for p in ("voi", "rnd"))
        aiqs = {k: mean_aiq(k, every) for k in kinds}
        gain = {k: v - out["prior_aiq"] for k, v in aiqs.items()}
        share = {k: (gain[k] / gain["complete"] if gain["complete"] > MIN_GAIN else None) for k in kinds[1:]}
        row = {"aiq": aiqs, "gain_over_prior": gain, "share": share}
        for v in VALUES:
            diff_boot = np.array([mean_aiq(f"voi_{v}", rows) - mean_aiq(f"rnd_{v}", rows) for rows in boot])
            row[v] = {"voi_minus_random": aiqs[f"voi_{v}"] - aiqs[f"rnd_{v}"],
                      "voi_minus_random_ci": [float(np.quantile(diff_boot, 0.025)),
                                              float(np.quantile(diff_boot, 0.975))],
                      "per_draw_voi_minus_random": [
                          aiq_of(pp[f"voi_{v}/{d}"], every, c_range) - float(np.mean(
                              [aiq_of(pp[f"rnd_{v}-{s}/{d}"], every, c_range) for s in range(args.seeds)]))
                          for d in range(args.draws)]}
            print(f"{name} {family} value={v}: complete {aiqs['complete']:.4f} sparse {aiqs['sparse']:.4f} voi "
                  f"{aiqs[f'voi_{v}']:.4f} random {aiqs[f'rnd_{v}']:.4f} prior {out['prior_aiq']:.4f}; voi-random "
                  f"{row[v]['voi_minus_random']:+.4f} [{row[v]['voi_minus_random_ci'][0]:+.4f}, "
                  f"{row[v]['voi_minus_random_ci'][1]:+.4f}]", flush=True)
        out["families"][family] = row
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _pct(x) -> str:
    return "–" if x is None else f"{x:.0%}"


def markdown(results: list[dict], args) -> str:
    lines = ["# Filling a traffic log where it matters (benchmarks/fill.py, issue 23 part 4)", "",
             f"Encoder `{args.encoder}`; seeded subset of at most {args.max_prompts or 'all'} prompts per log, split "
             "60/15/25 (seed 0; validation unused). The train split is logged one model per prompt (uniform), "
             f"{args.draws} seeded draws; budget = 10 % of the true cost of every missing train cell. VOI cells "
             "by value `prompt` (`routecast.training.fill.choose_cells_by_prompt`: Bayesian ridge belief over the "
             "embedding, expected integrated decision improvement over the traffic) and by value `group` "
             "(`choose_cells`: knowledge gradient per benchmark or cluster), each vs uniformly random cells of its "
             f"own true spend ({args.seeds} seeds per draw); scores read from the complete log. AIQ on the COMPLETE test matrix over the single "
             "models' cost range, averaged over draws (and seeds). Gain over the prior = AIQ - AIQ of the global "
             "prior (cluster-prior k=1 on the complete train matrix: the best single model at each budget, no "
             "routing). Share = gain / gain of the same family trained on the complete train matrix (undefined, "
             f"–, when that gain is below {MIN_GAIN} AIQ: nothing to share). VOI - random: paired 95 % percentile "
             "bootstrap over test prompts "
             f"({args.n_boot} resamples; draws and seeds averaged inside each resample).", ""]
    for res in results:
        d0 = res["draws"]
        lines += [f"## {res['dataset']}", "",
                  f"prompts {res['prompts']}; groups: {res['groups']}; budget "
                  f"{np.mean([d['budget'] for d in d0]):.4g} USD; "
                  f"{np.mean([d['missing_cells'] for d in d0]):.0f} missing cells; prior AIQ {res['prior_aiq']:.4f}.",
                  ""]
        for v in VALUES:
            lines.append(f"- value `{v}`: cells bought VOI {np.mean([d[v]['voi_cells'] for d in d0]):.0f}, random "
                         f"{np.mean([np.mean(d[v]['random_cells']) for d in d0]):.0f}; estimated cost "
                         f"{np.mean([d[v]['voi_estimated_cost'] for d in d0]):.4g}, true "
                         f"{np.mean([d[v]['voi_true_cost'] for d in d0]):.4g} USD; choice took "
                         f"{np.mean([d[v]['seconds'] for d in d0]):.1f} s; VOI cells per model (draw 0) "
                         f"{d0[0][v]['cells_per_model']}")
        lines += ["", "| family | value | AIQ complete | sparse | VOI | random | share sparse | share VOI (target >= 80 %) | "
                  "share random | VOI - random [95 % CI] (target > 0) | per draw |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for family, r in res["families"].items():
            a, sh = r["aiq"], r["share"]
            for v in VALUES:
                lo, hi = r[v]["voi_minus_random_ci"]
                lines.append(f"| {family} | {v} | {a['complete']:.4f} | {a['sparse']:.4f} | {a[f'voi_{v}']:.4f} | "
                             f"{a[f'rnd_{v}']:.4f} | {_pct(sh['sparse'])} | {_pct(sh[f'voi_{v}'])} | "
                             f"{_pct(sh[f'rnd_{v}'])} | {r[v]['voi_minus_random']:+.4f} [{lo:+.4f}, {hi:+.4f}] | "
                             + ", ".join(f"{x:+.4f}" for x in r[v]["per_draw_voi_minus_random"]) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=DATASETS)
    parser.add_argument("--max-prompts", type=int, default=3000, help="seeded subset of each log (0: all)")
    parser.add_argument("--seeds", type=int, default=3, help="random fills per draw")
    parser.add_argument("--draws", type=int, default=3, help="seeded draws of the traffic log")
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--encoder", default="static")
    parser.add_argument("--out", default=str(HERE / "results" / "fill"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from routecast.atomic import write_json, write_text

    start = time.perf_counter()
    results = [run_dataset(name.strip(), args) for name in args.datasets.split(",") if name.strip()]
    summary = {"benchmark": "fill", "issue": 23, "encoder": args.encoder, "max_prompts": args.max_prompts,
               "seeds": args.seeds, "draws": args.draws, "n_boot": args.n_boot, "python": platform.python_version(),
               "seconds": round(time.perf_counter() - start, 1), "results": results,
               "targets": {res["dataset"]: {f"{f}/{v}": {
                   "share_voi_at_least_80pct": r["share"][f"voi_{v}"] is not None and r["share"][f"voi_{v}"] >= 0.8,
                   "voi_minus_random_ci_above_0": r[v]["voi_minus_random_ci"][0] > 0}
                   for f, r in res["families"].items() for v in VALUES} for res in results}}
    write_json(args.out + ".json", summary)
    write_text(args.out + ".md", markdown(results, args))
    print(f"wrote {args.out}.json and .md ({summary['seconds']} s)")


if __name__ == "__main__":
    main()
