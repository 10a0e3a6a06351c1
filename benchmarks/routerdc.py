"""Does RouterDC's dual contrastive loss help ``finetuned-encoder``? masked vs routerdc vs
masked+routerdc on one real dataset, with paired bootstrap intervals.

    nice -n 10 .venv/bin/python benchmarks/routerdc.py [--data llmrouter_9models] [--limit 3000]
        [--epochs 1] [--max-seq-length 64] [--n-boot 1000] [--quick]

Protocol: a seeded subset of ``--limit`` prompts, seeded 70/10/20 split (``prepare``). The three
objectives are trained on train with the same seed and hyperparameters (MiniLM, RouterDC's
defaults top_k = last_k = 3, 5 clusters, temperature 1, sample_weight 1; nothing is tuned), and
the priors (``cluster-prior``, ``task-prior`` and its logged-task form, on the ``static``
encoder) are fitted beside them. Choices use the validation split only: the objective to
recommend is the one with the best validation AIQ, the better prior the one with the best
validation AIQ (``routecast.evaluation.priors.choose_prior``). Test: AIQ over the single
models' [cheapest, dearest] mean cost with a 95% percentile bootstrap interval, and paired
differences (``aiq_difference``: the same resamples for both policies) of each RouterDC variant
against ``masked`` and of every variant against the better prior.

Writes benchmarks/results/routerdc.json and routerdc.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

OBJECTIVES = ("masked", "routerdc", "masked+routerdc")


def run(args) -> dict:
    from routecast.evaluation.evaluate import aiq_difference, evaluate, single_model_curves, sweep_router
    from routecast.evaluation.priors import PRIOR_ROUTERS, choose_prior, score_prior, validation_aiq
    from routecast.router.pipeline import fit_router, prepare, split_embeddings

    start = time.perf_counter()
    prepared = prepare(args.data, encoder="static", limit=args.limit, seed=args.seed)
    base = {"base_model": "tiny" if args.quick else "minilm", "max_epochs": args.epochs,
            "max_seq_length": args.max_seq_length, "seed": args.seed}
    curves, val_aiq, variants = {}, {}, {}
    for objective in OBJECTIVES:
        t0 = time.perf_counter()
        router, fit_s = fit_router("finetuned-encoder", {**base, "objective": objective}, prepared)
        val_aiq[objective] = validation_aiq(router, prepared.val)
        curves[objective] = sweep_router(router, prepared.test, label=objective)
        variants[objective] = {"fit_seconds": round(fit_s, 1), "epochs": router.epochs_,
                               "best_val_loss": router.best_val_loss_,
                               "train_loss_history": router.train_loss_history_,
                               "val_aiq": val_aiq[objective]}
        print(f"  {objective}: val AIQ {val_aiq[objective]:.4f}, fit {fit_s:.0f}s "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)
    prior_val = {}
    for name in PRIOR_ROUTERS:
        try:
            router, _ = fit_router(name, {}, prepared)
        except Exception as exc:  # noqa: BLE001 - e.g. no task column: listed, not hidden
            print(f"  {name}: not run ({exc})", flush=True)
            continue
        test_X = split_embeddings(router, prepared, "test")
        curves[name] = sweep_router(router, prepared.test, embeddings=test_X, label=name)
        extra, scores = score_prior(name, router, prepared.val, prepared.test, test_embeddings=test_X,
                                    val_embeddings=split_embeddings(router, prepared, "val"))
        curves.update(extra)
        prior_val.update(scores)
    curves.update(single_model_curves(prepared.test))
    result = evaluate(curves, prepared.test, n_boot=args.n_boot, seed=args.seed, prior_val_aiq=prior_val)
    best_prior = choose_prior(prior_val)
    chosen = max(OBJECTIVES, key=lambda o: val_aiq[o])

    def diff(a, b):
        value, ci = aiq_difference(result, a, b)
        return {"gain": value, "ci": list(ci), "excludes_zero": bool(ci[0] > 0 or ci[1] < 0)}

    for objective in OBJECTIVES:
        s = result.routers[objective]
        variants[objective].update(test_aiq=s.aiq, test_aiq_ci=list(s.aiq_ci),
                                   quality_at_best_cost=s.quality_at_best_cost,
                                   vs_masked=None if objective == "masked" else diff(objective, "masked"),
                                   vs_better_prior=None if best_prior is None else diff(objective, best_prior))
    priors = {label: {"val_aiq": prior_val.get(label), "test_aiq": result.routers[label].aiq,
                      "test_aiq_ci": list(result.routers[label].aiq_ci)}
              for label in prior_val if label in result.routers}
    return {"data": args.data, "settings": prepared.settings, "params": base,
            "n_train": prepared.train.n_prompts, "n_val": prepared.val.n_prompts, "n_test": prepared.test.n_prompts,
            "models": list(prepared.log.models), "cost_unit": result.cost_unit, "cost_range": list(result.cost_range),
            "best_single_model": result.best_single_model, "zero_router_aiq": result.zero_router_aiq,
            "n_boot": args.n_boot, "chosen_by_validation": chosen, "better_prior": best_prior,
            "variants": variants, "priors": priors, "seconds": round(time.perf_counter() - start, 1)}


def _ci(d) -> str:
    return "—" if d is None else f"{d['gain']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}]"


def markdown(r: dict) -> str:
    p = r["params"]
    lines = [f"# RouterDC's dual contrastive loss in `finetuned-encoder` ({r['data']})", "",
             f"{r['n_train']} train / {r['n_val']} val / {r['n_test']} test prompts (seeded subset and split), "
             f"{len(r['models'])} models, base model `{p['base_model']}`, {p['max_epochs']} epoch(s), "
             f"max_seq_length {p['max_seq_length']}, RouterDC defaults (top_k = last_k = 3, 5 clusters, "
             f"temperature 1, sample_weight 1), nothing tuned. AIQ over the test split's single-model cost range "
             f"{r['cost_range'][0]:.4g} – {r['cost_range'][1]:.4g} ({r['cost_unit']}); 95% percentile bootstrap "
             f"intervals over test prompts ({r['n_boot']} resamples), differences paired. {r['seconds']:.0f} s.", "",
             f"Chosen on validation: objective **{r['chosen_by_validation']}** (best validation AIQ); better prior "
             f"**{r['better_prior']}** (best validation AIQ).", "",
             "| objective | val AIQ | test AIQ [95% CI] | vs masked [95% CI] | vs better prior [95% CI] | "
             "fit s | epochs |", "|---|---|---|---|---|---|---|"]
    for name, v in r["variants"].items():
        lines.append(f"| {name} | {v['val_aiq']:.4f} | {v['test_aiq']:.4f} [{v['test_aiq_ci'][0]:.4f}, "
                     f"{v['test_aiq_ci'][1]:.4f}] | {_ci(v['vs_masked'])} | {_ci(v['vs_better_prior'])} | "
                     f"{v['fit_seconds']:.0f} | {v['epochs']} |")
    lines += ["", "| prior | val AIQ | test AIQ [95% CI] |", "|---|---|---|"]
    for name, v in r["priors"].items():
        lines.append(f"| {name} | {v['val_aiq']:.4f} | {v['test_aiq']:.4f} [{v['test_aiq_ci'][0]:.4f}, "
                     f"{v['test_aiq_ci'][1]:.4f}] |")
    lines += ["", f"Zero router {r['zero_router_aiq']:.4f}; best single model `{r['best_single_model']}`.",
              "`routerdc` predicts quality as a per-model logistic calibration of its similarity "
              "(fitted on the held-out 10% of train); `masked+routerdc` keeps the quality head and adds the "
              "dual contrastive terms as auxiliary losses on the encoder.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="llmrouter_9models")
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="the random tiny BERT (smoke run)")
    parser.add_argument("--out", default=str(HERE / "results" / "routerdc"))
    args = parser.parse_args()
    from routecast.atomic import write_json, write_text
    from routecast.jsonable import to_jsonable

    result = run(args)
    write_json(args.out + ".json", to_jsonable(result))
    write_text(args.out + ".md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
