"""Does learned routing beat a lookup table? The best learned ex-ante router against the better of
the two priors (``cluster-prior``, ``task-prior``), with a paired bootstrap 95% interval.

    .venv/bin/python benchmarks/plateau.py [--datasets a,b] [--limit N] [--n-boot 1000] [--quick]

Protocol (issue 13), identical on every dataset:

* llmrouter_9models and routerdc_7models use their logged splits (a validation share is carved
  out of the logged train split; routerdc's ``ood`` benchmarks go to test), routellm_strong_weak
  a seeded 70/10/20 split; every prompt of the log (``--limit N``: a seeded subset); the ``static`` encoder.
* Every router family is tuned on a small grid on the **validation** split (AIQ); the best
  learned router is the family with the best validation AIQ, the better prior the prior with the
  best validation AIQ. Nothing is chosen on test.
* Priors: ``cluster-prior`` (k and shrinkage picked inside fit on a share of train),
  ``task-prior`` given each prompt's logged benchmark/task (the "dataset oracle"; the column is
  chosen on validation) and ``task-prior (classifier)``, which finds the task from the embedding.
  ``prior-residual (task given)`` is the one learned router also given the logged task (the same
  information as the dataset oracle, plus a residual from the embedding).
* Test: AIQ over the single models' [cheapest, dearest] mean cost on the test split
  (``routecast.evaluation.evaluate``), the gain of the best learned router over the better
  prior with a paired bootstrap interval (same resamples, ``aiq_difference``), per-benchmark AIQ,
  and per-model predictability inside each benchmark: AUC of predicted quality against success
  (score >= 0.5; ``score > 0`` where the log marks scores as probability-if-correct) and Brier.

Writes benchmarks/results/plateau.json and plateau.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

#: dataset label -> (source, prepare() keyword arguments, note)
DATASETS = {
    "llmrouter_9models": ("llmrouter_9models", {"use_logged_split": True}, "logged split; USD costs"),
    "routerdc_7models": (str(SHARED / "routerdc_7models" / "data.parquet"), {"use_logged_split": True},
                         "logged split (ood benchmarks in test); no costs: relative cost axis"),
    "routellm_strong_weak": ("routellm_strong_weak", {}, "seeded 70/10/20 split; USD costs"),
}

#: learned ex-ante routers and the validation grid each is tuned on (small: the machine is shared;
#: mlp and irt run their defaults, early-stopped on a share of train)
LEARNED = {
    "knn": [{"k": 10}, {"k": 30}, {"k": 100}],
    "linear": [{"alpha": 1.0}, {"alpha": 10.0}, {"alpha": 100.0}],
    "mlp": [{"max_epochs": 30}],
    "irt": [{"max_epochs": 30}],
    "prior-residual": [{"prior": "cluster-prior", "residual": "knn"}, {"prior": "task-prior", "residual": "knn"},
                       {"prior": "task-prior", "residual": "linear"},
                       {"prior": "task-prior", "residual": "linear", "scope": "group", "alpha": 10.0, "blend": 0.5},
                       {"prior": "cluster-prior", "residual": "linear", "scope": "group", "alpha": 10.0,
                        "blend": 0.5}],
    # the same information as the task prior it is compared with (each prompt's logged benchmark)
    # plus a residual learned from the embedding: the gain it shows is per-prompt signal only
    "prior-residual (task given)": [{"prior": "task-prior", "residual": "knn"},
                                    {"prior": "task-prior", "residual": "linear"}] + [
        {"prior": "task-prior", "residual": "linear", "scope": "group", "alpha": alpha, "blend": blend}
        for alpha in (10.0, 100.0) for blend in (0.5, 1.0)],
}
QUICK = {"knn": [{"k": 30}], "linear": [{"alpha": 10.0}], "mlp": [{"max_epochs": 5}],
         "irt": [{"max_epochs": 5}], "prior-residual": [{"prior": "task-prior", "residual": "knn"}],
         "prior-residual (task given)": [{"prior": "task-prior", "residual": "knn"}]}
#: labels routed with each prompt's logged task (``predict_quality_for_tasks``) -> the router they run
GIVEN_TASK = {"prior-residual (task given)": "prior-residual"}
PRIOR_LABELS = ("cluster-prior", "task-prior", "task-prior (classifier)")


def known_task(router, log):
    """A fitted task prior (or prior-residual) predicting from each prompt's logged task (what
    routing with metadata does) instead of its embedding: the library's wrapper, which
    ``routecast evaluate`` uses for its ``task-prior (logged task)`` row."""
    from routecast.evaluation.priors import LoggedTaskQuality

    return LoggedTaskQuality(router, log, label=router.name)


def successes(log):
    """(n, m) bool: the outcome counts as a success (see the module docstring)."""
    import numpy as np

    threshold = np.full(log.n_prompts, 0.5)
    if "score_kind" in log.meta.columns:
        threshold[(log.meta["score_kind"] == "mc_prob_if_correct").to_numpy()] = 1e-9
    return log.scores >= threshold[:, None]


def predictability(log, quality, column: str | None) -> list[dict]:
    """Per benchmark and model: AUC of predicted quality vs success, and Brier, on ``log``."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    if column is None:
        return []
    success = successes(log)
    values = log.meta[column].astype(str).to_numpy()
    rows = []
    for value in sorted(set(values)):
        rows_b = np.flatnonzero(values == value)
        entry = {"benchmark": value, "n_prompts": int(rows_b.size), "models": {}}
        for j, model in enumerate(log.models):
            y, p = success[rows_b, j], quality[rows_b, j]
            auc = float(roc_auc_score(y, p)) if 0 < y.sum() < y.size else None
            brier = float(np.mean((p - log.scores[rows_b, j]) ** 2))
            entry["models"][model] = {"auc": auc, "brier": brier, "success_rate": float(y.mean())}
        rows.append(entry)
    return rows


def run_dataset(label: str, *, encoder: str, limit: int, n_boot: int, seed: int, quick: bool) -> dict:
    import numpy as np

    from routecast.evaluation.evaluate import aiq_difference, evaluate, sweep_router
    from routecast.evaluation.priors import choose_prior, validation_aiq
    from routecast.router.pipeline import fit_router, prepare

    source, kwargs, note = DATASETS[label]
    start = time.perf_counter()
    prepared = prepare(source, encoder=encoder, seed=seed, limit=limit, **kwargs)
    for split in ("train", "val", "test"):
        if not prepared.split(split).complete_rows().all():
            raise SystemExit(f"{label}: the {split} split has unlogged scores; this benchmark needs complete logs")
    emb = {split: prepared.embeddings(split) for split in ("train", "val", "test")}
    embed_seconds = time.perf_counter() - start

    def val_aiq(router, wrapper=None):
        return validation_aiq(wrapper or router, prepared.val, embeddings=emb["val"])

    chosen: dict[str, tuple] = {}  # label -> (router, params, val AIQ, grid results, test wrapper or None)
    grid = QUICK if quick else LEARNED
    # the task column (benchmark, or routellm's finer MMLU-subject `task`) is chosen on validation
    # once, by the task prior below; prior-residual's task prior uses the same column
    columns = [c for c in ("benchmark", "task") if c in prepared.log.meta.columns]
    best_task = None
    for column in columns:
        task, _ = fit_router("task-prior", {"column": column}, prepared)
        score = val_aiq(task, known_task(task, prepared.val))
        print(f"  {label} task-prior column={column}: val AIQ {score:.4f}", flush=True)
        if best_task is None or score > best_task[2]:
            best_task = (task, {"column": column}, score, [], "known")
    for name, configs in grid.items():
        tried = []
        mode = "known" if name in GIVEN_TASK else None
        if best_task is None:  # no task column: the task-prior variants cannot run
            configs = [c for c in configs if c.get("prior") != "task-prior"]
        else:
            configs = [{**c, "column": best_task[1]["column"]} if c.get("prior") == "task-prior" else c
                       for c in configs]
        for params in configs:
            t0 = time.perf_counter()
            router, fit_s = fit_router(GIVEN_TASK.get(name, name), dict(params), prepared)
            score = val_aiq(router, known_task(router, prepared.val) if mode else None)
            tried.append({"params": params, "val_aiq": score, "fit_seconds": round(fit_s, 1)})
            print(f"  {label} {name} {params}: val AIQ {score:.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)
            if name not in chosen or score > chosen[name][2]:
                chosen[name] = (router, params, score, tried, mode)
        chosen[name] = chosen[name][:3] + (tried, mode)

    # priors
    cluster, _ = fit_router("cluster-prior", {"seed": seed}, prepared)
    chosen["cluster-prior"] = (cluster, {"k": cluster.k_, "shrinkage": cluster.shrinkage_}, val_aiq(cluster), [], None)
    if best_task is not None:
        chosen["task-prior"] = best_task
        task = best_task[0]
        chosen["task-prior (classifier)"] = (task, best_task[1], val_aiq(task), [], None)

    learned = [n for n in grid]
    priors = [p for p in PRIOR_LABELS if p in chosen]
    best_router = max(learned, key=lambda n: chosen[n][2])
    best_prior = choose_prior({p: chosen[p][2] for p in priors})  # the library's rule: validation AIQ

    # test: every chosen policy, single models and the oracle on the same prompts and cost range
    curves, test_quality = {}, {}
    for lbl, (router, params, _, _, mode) in chosen.items():
        wrapper = known_task(router, prepared.test) if mode == "known" else None
        curves[lbl] = sweep_router(wrapper or router, prepared.test, embeddings=emb["test"], label=lbl)
        test_quality[lbl] = (wrapper or router).predict_quality(list(prepared.test.prompts), embeddings=emb["test"])
    oracle, _ = fit_router("oracle", {}, prepared)
    curves["oracle"] = sweep_router(oracle, prepared.test, label="oracle")
    result = evaluate(curves, prepared.test, n_boot=n_boot, seed=seed)
    gain, gain_ci = aiq_difference(result, best_router, best_prior)
    versus = {p: dict(zip(("gain", "ci"), aiq_difference(result, best_router, p))) for p in priors}

    column = next((c for c in ("benchmark", "task") if c in prepared.test.meta.columns), None)
    predict = {lbl: predictability(prepared.test, test_quality[lbl], column) for lbl in (best_router, best_prior)}
    per_benchmark = [{"benchmark": row["benchmark"], "n_prompts": row["n_prompts"],
                      "router_aiq": row["policies"][best_router]["aiq"],
                      "prior_aiq": row["policies"][best_prior]["aiq"],
                      "router_q_at_best_cost": row["policies"][best_router]["quality_at_best_cost"],
                      "prior_q_at_best_cost": row["policies"][best_prior]["quality_at_best_cost"]}
                     for row in result.per_benchmark]
    policies = {}
    for lbl, (_, params, v, tried, _) in chosen.items():
        s = result.routers[lbl]
        policies[lbl] = {"params": params, "val_aiq": v, "test_aiq": s.aiq, "test_aiq_ci": list(s.aiq_ci),
                         "quality_at_best_cost": s.quality_at_best_cost, "cost_ratio_to_best": s.cost_ratio_to_best,
                         "grid": tried}
        if lbl != best_prior:
            g, ci = aiq_difference(result, lbl, best_prior)
            policies[lbl]["gain_over_best_prior"] = {"gain": g, "ci": list(ci)}
    return {
        "label": label, "note": note, "source": source, "settings": prepared.settings,
        "n_train": prepared.train.n_prompts, "n_val": prepared.val.n_prompts, "n_test": prepared.test.n_prompts,
        "models": list(prepared.log.models), "cost_unit": result.cost_unit, "cost_range": list(result.cost_range),
        "best_single_model": result.best_single_model, "zero_router_aiq": result.zero_router_aiq,
        "oracle_aiq": result.routers["oracle"].aiq, "n_boot": n_boot,
        "best_router": best_router, "best_prior": best_prior,
        "gain": gain, "gain_ci": list(gain_ci), "excludes_zero": bool(gain_ci[0] > 0 or gain_ci[1] < 0),
        "gain_vs_each_prior": {p: {"gain": g["gain"], "ci": list(g["ci"])} for p, g in versus.items()},
        "policies": policies, "per_benchmark": per_benchmark, "predictability": predict,
        "embed_seconds": round(embed_seconds, 1), "seconds": round(time.perf_counter() - start, 1),
    }


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _f(value, spec=".4f") -> str:
    return "—" if value is None else format(value, spec)


def markdown(results: list[dict], encoder: str) -> str:
    lines = [f"# Plateau: the best learned router vs the better prior (encoder `{encoder}`)", "",
             "Everything is chosen on the validation split (router family and hyperparameters by AIQ, the "
             "better prior by AIQ); test numbers are reported once. AIQ over the single models' "
             "[cheapest, dearest] mean cost on the test split; intervals are 95% percentile bootstrap over "
             "test prompts, paired (the same resamples for every policy). `task-prior` is given each test "
             "prompt's logged benchmark (the dataset oracle); `task-prior (classifier)` finds it from the "
             "embedding.", "",
             "| dataset | best learned (val) | its test AIQ | better prior (val) | its test AIQ | gain [95% CI] "
             "| interval excludes 0 | zero router | oracle |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        pol = r["policies"]
        br, bp = r["best_router"], r["best_prior"]
        lines.append(f"| {r['label']} | {br} | {pol[br]['test_aiq']:.4f} | {bp} | {pol[bp]['test_aiq']:.4f} | "
                     f"{r['gain']:+.4f} [{r['gain_ci'][0]:+.4f}, {r['gain_ci'][1]:+.4f}] | "
                     f"{'yes' if r['excludes_zero'] else 'no'} | {r['zero_router_aiq']:.4f} | {r['oracle_aiq']:.4f} |")
    lines.append("")
    for r in results:
        pol = r["policies"]
        lines += [f"## {r['label']}", "",
                  f"{r['note']}. {r['n_train']} train / {r['n_val']} val / {r['n_test']} test prompts, "
                  f"{len(r['models'])} models; cost unit: {r['cost_unit']}; AIQ cost range "
                  f"{r['cost_range'][0]:.4g} – {r['cost_range'][1]:.4g}; best single model `{r['best_single_model']}`; "
                  f"{r['seconds']:.0f} s.", "",
                  "| policy | chosen params | val AIQ | test AIQ [95% CI] | quality at best model's cost | "
                  f"gain over {r['best_prior']} [95% CI] |", "|---|---|---|---|---|---|"]
        for lbl, p in sorted(pol.items(), key=lambda kv: -kv[1]["val_aiq"]):
            g = p.get("gain_over_best_prior")
            gain = "(reference)" if g is None else f"{g['gain']:+.4f} [{g['ci'][0]:+.4f}, {g['ci'][1]:+.4f}]"
            params = json.dumps(p["params"], sort_keys=True)
            lines.append(f"| {lbl}{' **(best learned)**' if lbl == r['best_router'] else ''} | `{params}` | "
                         f"{p['val_aiq']:.4f} | {p['test_aiq']:.4f} [{p['test_aiq_ci'][0]:.4f}, "
                         f"{p['test_aiq_ci'][1]:.4f}] | {_f(p['quality_at_best_cost'])} | {gain} |")
        lines += ["", f"Gain of {r['best_router']} over each prior: " + "; ".join(
            f"{p}: {g['gain']:+.4f} [{g['ci'][0]:+.4f}, {g['ci'][1]:+.4f}]" for p, g in r["gain_vs_each_prior"].items()), ""]
        if r["per_benchmark"]:
            br, bp = r["best_router"], r["best_prior"]
            pr, pp = r["predictability"][br], r["predictability"][bp]
            lines += [f"Per benchmark (test): AIQ on the dataset's cost range, and predictability: mean over models "
                      f"of the within-benchmark AUC of predicted quality vs success (0.5 = no per-prompt signal; a "
                      f"task prior given this same column is 0.5 by construction, one on a finer column such "
                      f"as routellm's MMLU subjects is not) and mean Brier.", "",
                      f"| benchmark | n | AIQ {br} | AIQ {bp} | mean AUC {br} | mean AUC {bp} | Brier {br} | "
                      f"Brier {bp} | most predictable model ({br}, AUC) |", "|---|---|---|---|---|---|---|---|---|"]
            for row, a, b in zip(r["per_benchmark"], pr, pp):
                aucs = {m: v["auc"] for m, v in a["models"].items() if v["auc"] is not None}
                top = max(aucs, key=aucs.get) if aucs else None
                lines.append(
                    f"| {row['benchmark']} | {row['n_prompts']} | {_f(row['router_aiq'])} | {_f(row['prior_aiq'])} | "
                    f"{_f(_mean(v['auc'] for v in a['models'].values()), '.3f')} | "
                    f"{_f(_mean(v['auc'] for v in b['models'].values()), '.3f')} | "
                    f"{_f(_mean(v['brier'] for v in a['models'].values()))} | "
                    f"{_f(_mean(v['brier'] for v in b['models'].values()))} | "
                    f"{'—' if top is None else f'{top.split(chr(47))[-1]} {aucs[top]:.3f}'} |")
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="static")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--limit", type=int, default=0,
                        help="seeded subset of at most this many prompts (0: every prompt of the log)")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="one short config per router (smoke run)")
    parser.add_argument("--out", default=str(HERE / "results" / "plateau"))
    parser.add_argument("--merge", default="", help="comma-separated result .json files (e.g. one per dataset, "
                        "run in parallel): write them as one --out")
    args = parser.parse_args()
    from routecast.atomic import write_json, write_text

    if args.merge:
        parts = [json.loads(Path(p).read_text()) for p in args.merge.split(",") if p.strip()]
        settings = {(p["encoder"], p["limit"], p["seed"], p["quick"]) for p in parts}
        if len(settings) != 1:
            parser.error(f"the files were run with different settings: {sorted(settings)}")
        payload = {**{k: parts[0][k] for k in ("encoder", "limit", "seed", "quick")},
                   "datasets": [d for p in parts for d in p["datasets"]]}
        write_json(args.out + ".json", payload)
        write_text(args.out + ".md", markdown(payload["datasets"], payload["encoder"]))
        return
    labels = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in labels if d not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(DATASETS)}")
    results = []
    for label in labels:
        print(f"{label} ...", flush=True)
        results.append(run_dataset(label, encoder=args.encoder, limit=args.limit or None, n_boot=args.n_boot,
                                   seed=args.seed, quick=args.quick))
        r = results[-1]
        print(f"{label}: {r['best_router']} vs {r['best_prior']}: gain {r['gain']:+.4f} "
              f"[{r['gain_ci'][0]:+.4f}, {r['gain_ci'][1]:+.4f}] ({r['seconds']:.0f}s)", flush=True)
        payload = {"encoder": args.encoder, "limit": args.limit, "seed": args.seed, "quick": args.quick,
                   "datasets": results}
        write_json(args.out + ".json", payload)
        write_text(args.out + ".md", markdown(results, args.encoder))


if __name__ == "__main__":
    main()
