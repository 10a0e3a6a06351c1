"""Does a routing-trained static table close the gap to MiniLM? knn, linear and mlp with (a) the
distilled ``static`` encoder, (b) the routing-trained static encoder, (c) MiniLM, on the same splits.

    nice -n 10 .venv/bin/python benchmarks/trained_static.py [--datasets a,b] [--limit 8000] [--n-boot 1000]

Protocol (issue 13 item 2c), identical on every dataset:

* llmrouter_9models and routerdc_7models, their logged splits, at most ``--limit`` prompts (seeded
  subset; routerdc_7models at most 3,000, see ``MAX_PROMPTS``), as benchmarks/plateau.py; the split
  does not depend on the encoder (checked).
* The table is trained on the TRAIN split only (its early stopping on an inner share of train);
  the encoder configurations in ``ENCODER_GRID`` are compared by the mean validation AIQ of the
  three routers trained on them, and the best one is kept. Each router's hyperparameters are
  chosen on the validation split (``ROUTER_GRID``), per encoder. Nothing is chosen on test.
* Test: AIQ of every (router, encoder) on one cost range, and paired bootstrap 95% intervals (the
  same resamples for all curves, ``aiq_difference``) of trained-static minus MiniLM and
  trained-static minus static; "within 1%" means AIQ(trained) >= 0.99 * AIQ(MiniLM).
* Speed: for llmrouter_9models, each router is exported and loaded back with ``routecast.load``
  and timed with benchmarks/latency.py's own ``speed`` (single-prompt ``route([p])`` p50/p99 on
  held-out prompts in a seeded order, batch throughput).

MiniLM embeddings come from the on-disk embedding cache after the first run. Writes
benchmarks/results/trained_static.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

DATASETS = {
    "llmrouter_9models": ("llmrouter_9models", {"use_logged_split": True}),
    "routerdc_7models": (str(SHARED / "routerdc_7models" / "data.parquet"), {"use_logged_split": True}),
}
#: per-dataset cap below --limit: MiniLM embedded ~6-10 prompts/s on the shared 2-core box during the
#: run (79/s when idle), so routerdc_7models is a seeded 3,000-prompt subset (its logged split kept)
MAX_PROMPTS = {"routerdc_7models": 3000}
ROUTERS = ("knn", "linear", "mlp")
#: linear's alpha spans 0.1..1000: on the old 1..100 grid the distilled table chose 1 and the trained one 100,
#: both at an edge (a chosen edge means the best value may lie outside the grid)
ROUTER_GRID = {"knn": [{"k": 10}, {"k": 30}, {"k": 100}],
               "linear": [{"alpha": 0.1}, {"alpha": 1.0}, {"alpha": 10.0}, {"alpha": 100.0}, {"alpha": 1000.0}],
               "mlp": [{}]}
QUICK_GRID = {"knn": [{"k": 30}], "linear": [{"alpha": 10.0}], "mlp": [{"max_epochs": 5}]}
#: trainer configurations compared on validation (StaticEncoderTrainer keyword arguments): the previous
#: default (learned token weights on the 256-d distilled table) and the same on the 384-d distilled table
#: (MiniLM's own width: a linear read-out of a sum of token vectors is limited by its dimension); the
#: 384-d base won the mean validation AIQ on both datasets in a validation-only sweep of heads (linear,
#: mlp, joint), losses, epochs, weight decay and full tables (notes/reports/trained_static.md)
ENCODER_GRID = [{"table": "weights", "max_epochs": 10, "patience": 2},
                {"base": "static:dim=384", "table": "weights", "max_epochs": 10, "patience": 2}]
QUICK_ENCODER_GRID = [{"head": "linear", "max_epochs": 3}]
TIMING_DATASET = "llmrouter_9models"


def fit_best(name: str, grid: list[dict], prepared, emb: dict) -> tuple:
    """The router of ``grid`` with the best validation AIQ: (router, params, val AIQ, tried)."""
    from routecast.evaluation.evaluate import evaluate, sweep_router
    from routecast.router.pipeline import fit_router

    best, tried = None, []
    for params in grid:
        router, fit_s = fit_router(name, dict(params), prepared)
        curve = sweep_router(router, prepared.val, embeddings=emb["val"])
        score = evaluate({"x": curve}, prepared.val, n_boot=0).routers["x"].aiq
        tried.append({"params": params, "val_aiq": score, "fit_seconds": round(fit_s, 1)})
        if best is None or score > best[2]:
            best = (router, params, score)
    return (*best, tried)


def routers_on(prepared, grid: dict) -> dict:
    emb = {split: prepared.embeddings(split) for split in ("train", "val", "test")}
    return {name: fit_best(name, grid[name], prepared, emb) for name in ROUTERS}, emb


def run_dataset(label: str, *, limit: int, n_boot: int, seed: int, quick: bool, single: int, batch: int,
                tmp: Path, encoder_grid: list[dict] | None = None,
                speed_encoders: tuple[str, ...] = ("static", "trained-static")) -> dict:
    import numpy as np

    from routecast.router.encoders.trained_static import StaticEncoderTrainer, split_fingerprint
    from routecast.evaluation.evaluate import aiq_difference, evaluate, sweep_router
    from routecast.router.pipeline import prepare

    source, kwargs = DATASETS[label]
    limit = min(limit, MAX_PROMPTS.get(label, limit))
    grid = QUICK_GRID if quick else ROUTER_GRID
    start = time.perf_counter()
    prepared = {"static": prepare(source, encoder="static", seed=seed, limit=limit, **kwargs)}
    fingerprint = split_fingerprint(prepared["static"].train)

    # (b) routing-trained tables, trained on train only, one per configuration; chosen on validation
    candidates = []
    for i, params in enumerate(encoder_grid or (QUICK_ENCODER_GRID if quick else ENCODER_GRID)):
        t0 = time.perf_counter()
        trainer = StaticEncoderTrainer(seed=seed, **params).fit(prepared["static"].train)
        train_s = time.perf_counter() - t0
        enc = trainer.save(tmp / f"{label}-trained-{i}", extra={"train_fingerprint": fingerprint})
        prep = prepare(source, encoder=enc.spec, seed=seed, limit=limit, **kwargs)
        fitted, _ = routers_on(prep, grid)
        mean_val = float(np.mean([fitted[r][2] for r in ROUTERS]))
        candidates.append({"params": params, "spec": enc.spec, "prepared": prep, "fitted": fitted,
                           "mean_val_aiq": mean_val, "train_seconds": round(train_s, 1), "epochs": trainer.epochs_,
                           "best_epoch": trainer.best_epoch_, "initial_val_loss": trainer.initial_val_loss_,
                           "best_val_loss": trainer.best_val_loss_})
        print(f"  {label} trained-static {params}: {trainer.epochs_} epochs in {train_s:.0f}s, inner val loss "
              f"{trainer.initial_val_loss_:.4f} -> {trainer.best_val_loss_:.4f}; mean router val AIQ {mean_val:.4f}",
              flush=True)
    chosen = max(candidates, key=lambda c: c["mean_val_aiq"])
    prepared["trained-static"] = chosen["prepared"]
    prepared["minilm"] = prepare(source, encoder="minilm", seed=seed, limit=limit, **kwargs)
    for enc_label, prep in prepared.items():
        if split_fingerprint(prep.train) != fingerprint or list(prep.test.prompts) != list(prepared["static"].test.prompts):
            raise SystemExit(f"{label}: the {enc_label} split differs from the static one")

    fitted = {"trained-static": chosen["fitted"]}
    for enc_label in ("static", "minilm"):
        t0 = time.perf_counter()
        fitted[enc_label], _ = routers_on(prepared[enc_label], grid)
        print(f"  {label} {enc_label}: routers fitted ({time.perf_counter() - t0:.0f}s)", flush=True)

    test = prepared["static"].test
    curves = {}
    for enc_label, by_router in fitted.items():
        X = prepared[enc_label].embeddings("test")
        for name, (router, *_rest) in by_router.items():
            curves[f"{name}/{enc_label}"] = sweep_router(router, test, embeddings=X, label=f"{name}/{enc_label}")
    result = evaluate(curves, test, n_boot=n_boot, seed=seed)
    rows = []
    for name in ROUTERS:
        aiq = {e: result.routers[f"{name}/{e}"].aiq for e in fitted}
        ci = {e: list(result.routers[f"{name}/{e}"].aiq_ci) for e in fitted}
        vs_minilm = aiq_difference(result, f"{name}/trained-static", f"{name}/minilm")
        vs_static = aiq_difference(result, f"{name}/trained-static", f"{name}/static")
        rows.append({"router": name, "aiq": aiq, "aiq_ci": ci,
                     "params": {e: fitted[e][name][1] for e in fitted},
                     "val_aiq": {e: fitted[e][name][2] for e in fitted},
                     "trained_minus_minilm": {"diff": vs_minilm[0], "ci": list(vs_minilm[1])},
                     "trained_minus_static": {"diff": vs_static[0], "ci": list(vs_static[1])},
                     "relative_to_minilm": aiq["trained-static"] / aiq["minilm"] - 1,
                     "static_relative_to_minilm": aiq["static"] / aiq["minilm"] - 1,
                     "within_1pct_of_minilm": bool(aiq["trained-static"] >= 0.99 * aiq["minilm"])})
        print(f"  {label} {name}: AIQ static {aiq['static']:.4f} trained {aiq['trained-static']:.4f} minilm "
              f"{aiq['minilm']:.4f}; trained-minilm {vs_minilm[0]:+.4f} [{vs_minilm[1][0]:+.4f}, "
              f"{vs_minilm[1][1]:+.4f}]", flush=True)

    speed_rows = []
    if label == TIMING_DATASET:
        from latency import speed

        order = np.random.default_rng(seed).permutation(test.n_prompts)
        prompts = [str(test.prompts[i]) for i in order]
        for enc_label in speed_encoders:
            slow = enc_label == "minilm"
            for name in ROUTERS:
                timing = speed(fitted[enc_label][name][0], prompts, 60 if slow else single, 256 if slow else batch, tmp)
                speed_rows.append({"encoder": enc_label, "router": name, **timing})
                print(f"  speed {enc_label} {name}: route p50 {timing['route_p50_ms']} ms p99 "
                      f"{timing['route_p99_ms']} ms, batch {timing['batch_prompts_per_s']}/s", flush=True)
    return {
        "label": label, "source": source, "limit": limit, "settings": prepared["static"].settings,
        "n_train": _n(prepared["static"].train), "n_val": _n(prepared["static"].val), "n_test": test.n_prompts,
        "models": list(test.models), "cost_unit": result.cost_unit, "cost_range": list(result.cost_range),
        "zero_router_aiq": result.zero_router_aiq, "n_boot": n_boot,
        "encoder_candidates": [{k: v for k, v in c.items() if k not in ("prepared", "fitted")}
                               | {"router_val_aiq": {r: c["fitted"][r][2] for r in ROUTERS}} for c in candidates],
        "chosen_encoder": chosen["params"], "rows": rows, "speed": speed_rows,
        "seconds": round(time.perf_counter() - start, 1),
    }


def _n(log) -> int:
    return int(log.n_prompts)


def _ci(ci) -> str:
    return f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"


def markdown(payload: dict) -> str:
    meta = payload["meta"]
    lines = ["# The routing-trained static encoder vs distilled static and MiniLM", "",
             f"{meta['machine']}; load average {meta['load_average_1m_start']} at the start, "
             f"{meta['load_average_1m_end']} at the end; seed {meta['seed']}; "
             + ", ".join(f"{d['label']}: {d['n_train'] + d['n_val'] + d['n_test']} prompts" for d in payload["datasets"])
             + " (seeded subsets), logged splits. The table is trained on the train split only (early stopping "
             "on an inner 10% of train); its configuration and every router's hyperparameters are chosen on the "
             "validation split; test AIQ over the single models' [cheapest, dearest] mean cost. Intervals: 95% "
             "percentile bootstrap over test prompts, paired (the same resamples for every curve). "
             "Within 1%: AIQ(trained-static) >= 0.99 x AIQ(MiniLM).", "",
             "| dataset | router | AIQ static | AIQ trained-static | AIQ MiniLM | trained − MiniLM [95% CI] | "
             "trained vs MiniLM | static vs MiniLM | trained − static [95% CI] | within 1% of MiniLM |",
             "|---|---|---:|---:|---:|---|---:|---:|---|---|"]
    for d in payload["datasets"]:
        for r in d["rows"]:
            a = r["aiq"]
            lines.append(f"| {d['label']} | {r['router']} | {a['static']:.4f} | {a['trained-static']:.4f} | "
                         f"{a['minilm']:.4f} | {r['trained_minus_minilm']['diff']:+.4f} {_ci(r['trained_minus_minilm']['ci'])} | "
                         f"{r['relative_to_minilm']:+.2%} | {r['static_relative_to_minilm']:+.2%} | "
                         f"{r['trained_minus_static']['diff']:+.4f} {_ci(r['trained_minus_static']['ci'])} | "
                         f"{'yes' if r['within_1pct_of_minilm'] else 'no'} |")
    lines.append("")
    for d in payload["datasets"]:
        lines += [f"## {d['label']}", "",
                  f"{d['n_train']} train / {d['n_val']} val / {d['n_test']} test prompts, {len(d['models'])} models; "
                  f"cost unit {d['cost_unit']}; zero router AIQ {d['zero_router_aiq']:.4f}; {d['seconds']:.0f} s.", "",
                  "Encoder configurations (trained on train, compared by mean validation AIQ of knn/linear/mlp):", "",
                  "| configuration | epochs (best) | inner val loss: distilled -> trained | train s | val AIQ knn | "
                  "val AIQ linear | val AIQ mlp | mean | chosen |", "|---|---:|---|---:|---:|---:|---:|---:|---|"]
        for c in d["encoder_candidates"]:
            v = c["router_val_aiq"]
            lines.append(f"| `{json.dumps(c['params'], sort_keys=True)}` | {c['epochs']} ({c['best_epoch']}) | "
                         f"{c['initial_val_loss']:.4f} -> {c['best_val_loss']:.4f} | {c['train_seconds']:.0f} | "
                         f"{v['knn']:.4f} | {v['linear']:.4f} | {v['mlp']:.4f} | {c['mean_val_aiq']:.4f} | "
                         f"{'yes' if c['params'] == d['chosen_encoder'] else ''} |")
        lines += ["", "| router | encoder | chosen params | val AIQ | test AIQ [95% CI] |", "|---|---|---|---:|---|"]
        for r in d["rows"]:
            for e in ("static", "trained-static", "minilm"):
                lines.append(f"| {r['router']} | {e} | `{json.dumps(r['params'][e], sort_keys=True)}` | "
                             f"{r['val_aiq'][e]:.4f} | {r['aiq'][e]:.4f} [{r['aiq_ci'][e][0]:.4f}, {r['aiq_ci'][e][1]:.4f}] |")
        lines.append("")
        if d["speed"]:
            lines += ["Speed (routers trained above, exported, loaded with `routecast.load`; benchmarks/latency.py's "
                      "`speed`: single `route([prompt])` on held-out prompts in a seeded order, 300 for the static "
                      "encoders and 60 for MiniLM; batch `route_batch` with batch 1024; MiniLM's rows are in "
                      "benchmarks/results/latency.md when it is not timed here):", "",
                      "| encoder | router | route p50 ms | route p99 ms | encoder p50 ms | batch prompts/s | p50 <= 0.5 ms |",
                      "|---|---|---:|---:|---:|---:|---|"]
            for s in d["speed"]:
                lines.append(f"| {s['encoder']} | {s['router']} | {s['route_p50_ms']} | {s['route_p99_ms']} | "
                             f"{s['encoder_p50_ms']} | {s['batch_prompts_per_s']} | "
                             f"{'yes' if s['route_p50_ms'] <= 0.5 else 'no'} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--limit", type=int, default=8000)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--single", type=int, default=300)
    parser.add_argument("--batch", type=int, default=20000)
    parser.add_argument("--quick", action="store_true", help="one short configuration each (smoke run)")
    parser.add_argument("--speed-encoders", default="static,trained-static",
                        help="encoders whose routers are timed (add minilm: slow; latency.md has its figures)")
    parser.add_argument("--encoder-grid", default="", help="JSON list of StaticEncoderTrainer keyword arguments "
                        "compared on validation (default: ENCODER_GRID)")
    parser.add_argument("--out", default=str(HERE / "results" / "trained_static"))
    parser.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json")
    args = parser.parse_args()
    from routecast.atomic import write_json, write_text

    if args.markdown_only:
        payload = json.loads(Path(args.out + ".json").read_text())
        write_text(args.out + ".md", markdown(payload))
        return
    labels = [d.strip() for d in args.datasets.split(",") if d.strip()]
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
            "load_average_1m_start": round(os.getloadavg()[0], 2), "seed": args.seed, "limit": args.limit,
            "quick": args.quick, "encoder_grid": args.encoder_grid or None}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label in labels:
            print(f"{label} ...", flush=True)
            results.append(run_dataset(label, limit=args.limit, n_boot=args.n_boot, seed=args.seed, quick=args.quick,
                                       single=args.single, batch=args.batch, tmp=Path(tmp),
                                       encoder_grid=json.loads(args.encoder_grid) if args.encoder_grid else None,
                                       speed_encoders=tuple(e for e in args.speed_encoders.split(",") if e)))
            meta["load_average_1m_end"] = round(os.getloadavg()[0], 2)
            payload = {"meta": meta, "datasets": results}
            write_json(args.out + ".json", payload)
            write_text(args.out + ".md", markdown(payload))
    print(markdown(payload))


if __name__ == "__main__":
    main()
