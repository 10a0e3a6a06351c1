"""Every router on every shared dataset: AIQ (+ APGR/CPT for two models), bootstrap intervals,
train seconds and route microseconds per query, with one encoder and cached embeddings.

    .venv/bin/python benchmarks/leaderboard.py [--encoder minilm] [--datasets a,b] [--routers x,y]

Writes benchmarks/results/leaderboard.json and leaderboard.md. Embeddings are cached on disk
(ROUTECAST_CACHE_DIR or ~/.cache/routecast), so a second run spends its time on training only.
Each dataset uses a seeded 70/10/20 split grouped by prompt text (logged splits are ignored:
llmrouter_9models has 114 questions in both of its logged splits).
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

ROUTERS = ["knn", "linear", "mlp", "mf", "sw-ranking", "exemplar", "best-single", "cheapest", "random", "oracle",
           "cluster-prior", "task-prior"]

#: dataset label -> (source, prepare() keyword arguments, note)
DATASETS = {
    "llmrouter_9models": ("llmrouter_9models", {}, "built-in; cost from list prices x estimated tokens"),
    "routellm_strong_weak": ("routellm_strong_weak", {}, "built-in; GPT-4 vs Mixtral, cost from documented prices"),
    "routellm_mmlu": ("routellm_strong_weak", {"benchmark": "mmlu"}, "MMLU part only (RouteLLM's MMLU setting)"),
    "routerdc_7models": (str(SHARED / "routerdc_7models" / "data.parquet"), {}, "no costs: relative cost axis"),
    "arena_bench_v1": (str(SHARED / "arena_bench_v1" / "data.parquet"), {}, "no costs: relative cost axis; 300 prompts"),
    "alpaca_eval_gpt4turbo_judge": (
        str(SHARED / "alpaca_eval_gpt4turbo_judge" / "data.parquet"),
        {"models": ["gpt4_1106_preview", "FuseChat-Llama-3.1-8B-Instruct", "claude-2.1", "gpt-3.5-turbo-1106",
                    "OpenHermes-2.5-Mistral-7B", "vicuna-13b-v1.5"]},
        "6 systems spanning quality; no costs: relative cost axis"),
    "routerarena_2models": (str(SHARED / "routerarena_2models" / "data.parquet"), {}, "logged USD costs"),
}


def run_dataset(label: str, encoder: str, routers: list[str], n_boot: int, seed: int,
                cascades: bool = True, cascade_kinds: tuple[str, ...] = ("ex-ante", "oracle-ensemble")) -> dict:
    import numpy as np

    from routecast.training.experiment import run_experiment
    from routecast.router.pipeline import Prepared, prepare

    source, kwargs, note = DATASETS[label]
    kwargs = dict(kwargs)
    benchmark = kwargs.pop("benchmark", None)
    models = kwargs.pop("models", None)
    if models is not None:
        from routecast.data import load_log

        available = set(load_log(source).models)
        models = [m for m in models if m in available]
    prepared = prepare(source, encoder=encoder, seed=seed, models=models)
    if benchmark is not None:
        def keep(log):
            return log.subset(np.asarray(log.meta["benchmark"] == benchmark))

        prepared = Prepared(keep(prepared.log), keep(prepared.train), keep(prepared.val), keep(prepared.test),
                            prepared.encoder, {**prepared.settings, "benchmark": benchmark})
    usable = []
    for name in routers:
        if name == "cheapest" and np.isnan(prepared.log.costs).all():
            continue  # no costs logged: 'cheapest' is undefined
        usable.append(name)
    start = time.perf_counter()
    extra = None
    if cascades:
        from routecast.cascade.suite import cascade_curves

        extra, skipped = cascade_curves(prepared, cascade_kinds)
    experiment = run_experiment(prepared, usable, n_boot=n_boot, seed=seed, progress=False, extra_curves=extra,
                                skip_failures=True, skipped=skipped if cascades else None)
    result = experiment.result.to_dict()
    result.pop("curves", None)
    return {"label": label, "note": note, "n_train": prepared.train.n_prompts, "n_test": prepared.test.n_prompts,
            "models": list(prepared.log.models), "seconds": round(time.perf_counter() - start, 1),
            "embed_seconds": round(experiment.embed_seconds, 1), "result": result}


def markdown(results: list[dict], encoder: str) -> str:
    lines = [f"# Leaderboard (encoder `{encoder}`, seeded 70/10/20 split, 95% bootstrap CI)", "",
             "AIQ is measured on a fixed cost range per dataset: the cheapest to the most expensive single "
             "model's mean cost on the test split (stated per dataset), so a router's AIQ does not depend on "
             "what else is compared. Single models are points; ensembles that call every model lie outside "
             "the range: both are listed by cost and quality, never ranked. \"vs prior\" is AIQ minus the "
             "better of the cluster and task priors (chosen by validation AIQ), with a paired bootstrap interval.", ""]
    for res in results:
        r = res["result"]
        two = r["strong_model"] is not None
        lo, hi = r["cost_range"]
        lines += [f"## {res['label']}", "",
                  f"{res['note']}. {res['n_train']} train / {res['n_test']} test prompts, "
                  f"{len(res['models'])} models; best single model `{r['best_single_model']}`; "
                  f"zero-router AIQ {r['zero_router_aiq']:.4f}; oracle quality {r['oracle_quality']:.4f}; "
                  f"cost unit: {r['cost_unit']}; AIQ cost range {lo:.4g} – {hi:.4g}."
                  + (f" Strong / weak: `{r['strong_model']}` / `{r['weak_model']}`." if two else ""), ""]
        lines += [f"Note: {note}." for note in r.get("notes", [])]
        if r.get("notes"):
            lines.append("")
        head = "| router | family | AIQ [95% CI] | vs prior [95% CI] | max quality | cost to match best | train s | route µs/q |"
        sep = "|---|---|---|---|---|---|---|---|"
        if two:
            head += " APGR | CPT(50%) |"
            sep += "---|---|"
        lines += [head, sep]
        for row in r["leaderboard"]:
            meta = row.get("meta") or {}
            ratio = row.get("cost_ratio_to_best")
            match = "never" if ratio is None else f"{ratio:.2f}x"
            gain, gci = row.get("gain_over_prior"), row.get("gain_over_prior_ci")
            vs_prior = "—" if gain is None else f"{gain:+.4f} [{gci[0]:+.4f}, {gci[1]:+.4f}]"
            cells = [row["label"], row["family"],  # noqa: E501
                     f"{row['aiq']:.4f} [{row['aiq_ci'][0]:.4f}, {row['aiq_ci'][1]:.4f}]", vs_prior,
                     f"{row['max_quality']:.4f}", match,
                     _fmt(meta.get("train_seconds"), ".2f"), _fmt(meta.get("route_us_per_query"), ".1f")]
            if two:
                cells += ["—" if row["apgr"] is None else f"{row['apgr']:.4f}",
                          "—" if row["cpt50"] is None else f"{row['cpt50']:.1%}"]
            lines.append("| " + " | ".join(cells) + " |")
        unranked = r.get("unranked") or []
        if unranked:
            lines += ["", "Not ranked (points, or outside the cost range):", "",
                      "| policy | family | status | min cost | max quality |", "|---|---|---|---|---|"]
            for row in unranked:
                lines.append(f"| {row['label']} | {row['family']} | {row['status']} | "
                             f"{_fmt(row['min_cost'], '.4g')} | {_fmt(row['max_quality'], '.4f')} |")
        lines.append("")
    return "\n".join(lines)


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--routers", default=",".join(ROUTERS))
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(HERE / "results" / "leaderboard"))
    parser.add_argument("--no-cascades", action="store_true", help="routers only")
    parser.add_argument("--cascade-kinds", default="ex-ante,oracle-ensemble",
                        help="cascade kinds to add (see routecast.cascade.kinds), or 'all'")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json")
    args = parser.parse_args()
    if args.markdown_only:
        from routecast.atomic import write_text

        saved = json.loads(Path(args.out + ".json").read_text())
        write_text(args.out + ".md", markdown(saved["datasets"], saved["encoder"]))
        return

    from routecast.atomic import write_json, write_text

    results = []
    for label in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        print(f"== {label}", flush=True)
        res = run_dataset(label, args.encoder, args.routers.split(","), args.n_boot, args.seed,
                          cascades=not args.no_cascades, cascade_kinds=tuple(args.cascade_kinds.split(",")))
        results.append(res)
        for row in res["result"]["leaderboard"]:
            print(f"  {row['label']:<28} AIQ {row['aiq']:.4f}  max q {row['max_quality']:.4f}", flush=True)
        write_json(args.out + ".json", {"encoder": args.encoder, "seed": args.seed, "datasets": results})
        write_text(args.out + ".md", markdown(results, args.encoder))
    print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
