"""Benchmark: how fast a full ``route()`` is with each encoder, and what each encoder costs in quality.

For every encoder spec (transformer, ONNX float/int8, static, hashing, and truncation lengths):

* quality: on each of two shared datasets (seeded 70/10/20 split grouped by prompt, as the
  leaderboard), the routers are trained on train with that encoder, calibrated on validation and
  swept on test; AIQ (RouterBench) per router, and its gap to the best encoder for that router and
  dataset (the issue's target: within 2 %);
* speed: the llmrouter_9models router is exported and loaded back with ``routecast.load`` (what a
  service does); single-prompt ``route([p])`` p50/p99 over held-out prompts (after warm-up) and
  batch throughput of ``route_batch`` (prompts/s), all in this one process, one after another.

``trained-static`` is the routing-trained static encoder: ``prepare`` trains its table on each
dataset's train split (never val/test) before the routers are fitted on it.

Embeddings are cached on disk (ROUTECAST_CACHE_DIR or ~/.cache/routecast): a re-run spends its time
on training and timing only. Writes benchmarks/results/latency.{json,md}.

    .venv/bin/python benchmarks/latency.py [--encoders static,minilm] [--routers knn,linear]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

DEFAULT_ENCODERS = ("minilm,onnx,onnx:quantize=int8,static,hashing:dim=512,"
                    "minilm:max_chars=200,minilm:max_chars=500,onnx:quantize=int8,max_chars=500,"
                    "static:max_chars=500,trained-static")
#: label -> (source, prepare() keyword arguments)
DATASETS = {
    "llmrouter_9models": ("llmrouter_9models", {}),
    "routerdc_7models": (str(SHARED / "routerdc_7models" / "data.parquet"), {"limit": 6000}),
}
TIMING_DATASET = "llmrouter_9models"


def split_specs(text: str) -> list[str]:
    """Specs are separated by ';' or by ',' before a new encoder kind (options also use ',')."""
    from routecast.router.encoders import parse_spec

    if ";" in text:
        return [s.strip() for s in text.split(";") if s.strip()]
    specs: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if specs and "=" in part and ":" not in part:
            specs[-1] += "," + part
        elif part:
            specs.append(part)
    for spec in specs:
        parse_spec(spec)
    return specs


def _pct(values, q) -> float:
    return round(float(np.percentile(values, q)), 3)


def quality(spec: str, label: str, routers: list[str], seed: int, limit: int | None = None) -> tuple[dict, object]:
    from routecast.training.experiment import run_experiment
    from routecast.router.pipeline import prepare

    source, kwargs = DATASETS[label]
    if limit is not None:  # a smoke run: a smaller seeded subset (its AIQ is not the benchmark's)
        kwargs = {**kwargs, "limit": min(limit, kwargs.get("limit", limit))}
    prepared = prepare(source, encoder=spec, seed=seed, **kwargs)
    start = time.perf_counter()
    experiment = run_experiment(prepared, routers, n_boot=0, seed=seed, progress=False)
    by_label = {row["label"]: row for row in experiment.result.to_dict()["leaderboard"]}
    return ({"aiq": {r: round(by_label[r]["aiq"], 5) for r in routers},
             "zero_router_aiq": round(experiment.result.zero_router_aiq, 5),
             "embed_seconds": round(experiment.embed_seconds, 1),
             "seconds": round(time.perf_counter() - start, 1)}, experiment)


def agreement(reference, candidate) -> dict:
    """The same MiniLM-trained routers fed the candidate's embeddings instead of MiniLM's (only for
    encoders in MiniLM's vector space: ONNX float/int8, truncated MiniLM): mean/min cosine of the
    test-split embeddings and the share of identical decisions, averaged over the lam sweep."""
    from routecast.core.policy import lam_grid

    ref_X, cand_X = reference.prepared.embeddings("test"), candidate.prepared.embeddings("test")
    cosine = np.sum(ref_X * cand_X, axis=1)
    out = {"cosine_mean": round(float(cosine.mean()), 5), "cosine_min": round(float(cosine.min()), 5)}
    for name, run in reference.runs.items():
        router = run.router
        same = []
        for lam in lam_grid(np.asarray(router.costs_, dtype=np.float64), n_points=41):
            a = router.route(embeddings=ref_X, lam=float(lam)).choice
            b = router.route(embeddings=cand_X, lam=float(lam)).choice
            same.append(float(np.mean(a == b)))
        out[f"same_decisions_{name}"] = round(float(np.mean(same)), 5)
    return out


def speed(router, prompts: list[str], n_single: int, n_batch: int, tmp: Path) -> dict:
    import routecast
    from routecast.core.checkpoint import save_checkpoint

    path = save_checkpoint(router, tmp / f"ckpt-{time.perf_counter_ns()}")
    t0 = time.perf_counter()
    runtime = routecast.load(path)
    runtime.route(prompts[:8])  # warm-up: lazy model load, first-call allocations
    load_s = time.perf_counter() - t0
    single = prompts[:n_single]
    for prompt in single[:20]:
        runtime.route([prompt])
    total, enc = [], []
    for prompt in single:
        start = time.perf_counter()
        runtime.route([prompt])
        total.append((time.perf_counter() - start) * 1000)
        enc.append(runtime.last_timing.encode_seconds * 1000)
    batch = (prompts * (n_batch // max(len(prompts), 1) + 1))[:n_batch]
    start = time.perf_counter()
    runtime.route_batch(batch, batch_size=1024)
    wall = time.perf_counter() - start
    return {"load_s": round(load_s, 2), "n_single": len(single), "route_p50_ms": _pct(total, 50),
            "route_p99_ms": _pct(total, 99), "encoder_p50_ms": _pct(enc, 50), "n_batch": len(batch),
            "batch_prompts_per_s": round(len(batch) / wall, 1),
            "mean_prompt_chars": round(float(np.mean([len(p) for p in single])), 1)}


def markdown(result: dict) -> str:
    meta = result["meta"]
    labels = list(DATASETS)
    lines = ["# Routing latency and quality per encoder", "",
             f"{meta['machine']}; 1-min load average {meta['load_average_1m_start']} at the start, "
             f"{meta['load_average_1m_end']} at the end. Quality: AIQ on the test split of a seeded 70/10/20 "
             f"split ({', '.join(f'{k}: {v}' for k, v in meta['datasets'].items())}); gap = AIQ relative to the best "
             "encoder for the same router and dataset. Speed: the router trained on "
             f"{TIMING_DATASET}, exported and loaded with `routecast.load`; single = one `route([prompt])` "
             f"call on held-out prompts in random order ({meta.get('n_single_fast', 300)} for static/hashing, 60 for the transformers; mean {meta['mean_prompt_chars']} characters); batch = `route_batch` "
             "with batch 1024. All rows measured in this one run.", "",
             "| encoder | router | route p50 ms | route p99 ms | encoder p50 ms | batch prompts/s | "
             + " | ".join(f"AIQ {lab} | gap {lab}" for lab in labels)
             + " | cosine vs MiniLM | same decisions as MiniLM | meets targets |",
             "|---|---|---:|---:|---:|---:|" + "---:|---:|" * len(labels) + "---:|---:|---|"]
    for row in result["rows"]:
        cells = [f"`{row['encoder']}`", row["router"], row["route_p50_ms"], row["route_p99_ms"],
                 row["encoder_p50_ms"], row["batch_prompts_per_s"]]
        for lab in labels:
            cells += [f"{row['aiq'][lab]:.4f}", f"{row['gap'][lab]:+.2%}"]
        cos, same = row.get("cosine_vs_minilm"), row.get("same_decisions_vs_minilm")
        cells += ["—" if cos is None else f"{cos:.4f}", "—" if same is None else f"{same:.1%}", row["verdict"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "Zero router (best mix of single models) AIQ: "
              + ", ".join(f"{lab} {result['zero_router_aiq'][lab]:.4f}" for lab in labels) + ".",
              "", "Same decisions as MiniLM: the router trained on MiniLM embeddings routes the "
              f"{TIMING_DATASET} test split once with MiniLM's embeddings and once with this encoder's "
              "(same vector space only); share of identical choices averaged over 41 values of lam.",
              "", "Targets (issue 7): route p50 ≤ 1 ms, batch ≥ 5,000 prompts/s, AIQ within 2 % of the best "
              "encoder's on both datasets."]
    return "\n".join(lines) + "\n"


def verdict(row: dict) -> str:
    misses = []
    if row["route_p50_ms"] > 1.0:
        misses.append("p50 > 1 ms")
    if row["batch_prompts_per_s"] < 5000:
        misses.append("< 5,000/s")
    if any(g < -0.02 for g in row["gap"].values()):
        misses.append("AIQ gap > 2 %")
    return "yes" if not misses else "no: " + ", ".join(misses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", default=DEFAULT_ENCODERS,
                        help="encoder specs, comma separated (options attach to the spec before them) or ';'")
    parser.add_argument("--routers", default="knn,linear,mlp")
    parser.add_argument("--single", type=int, default=300)
    parser.add_argument("--batch", type=int, default=20000, help="prompts for the throughput run (fast encoders)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None,
                        help="prompts per dataset (seeded subset): a quick check that the run works, not the figures")
    parser.add_argument("--out", default=str(HERE / "results" / "latency"))
    parser.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json")
    args = parser.parse_args()

    from routecast.atomic import write_json, write_text

    if args.markdown_only:
        import json

        result = json.loads(Path(args.out + ".json").read_text())
        rows = result["rows"]
        result["meta"]["mean_prompt_chars"] = max(rows, key=lambda r: r["n_single"])["mean_prompt_chars"]
        write_text(args.out + ".md", markdown(result))
        return

    specs = split_specs(args.encoders)
    routers = [r.strip() for r in args.routers.split(",") if r.strip()]
    load_start = round(os.getloadavg()[0], 2)
    rows, zero = [], {}
    reference = None  # the MiniLM experiment on the timing dataset, when MiniLM is benchmarked first
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            per_data = {}
            for label in DATASETS:
                res, experiment = quality(spec, label, routers, args.seed, args.limit)
                per_data[label] = res
                zero[label] = res["zero_router_aiq"]
                print(f"{spec:<36} {label:<20} AIQ {res['aiq']}  (embed {res['embed_seconds']} s)", flush=True)
                if label == TIMING_DATASET:
                    timing_experiment = experiment
                    if spec == "minilm":
                        reference = experiment
            same_space = spec.split(":")[0] in ("minilm", "onnx") and reference is not None
            fidelity = agreement(reference, timing_experiment) if same_space else {}
            if fidelity:
                print(f"  vs MiniLM: {fidelity}", flush=True)
            test_prompts = [str(p) for p in timing_experiment.prepared.test.prompts]
            # a seeded random order: the split keeps benchmarks together, and the first prompts of
            # one benchmark are not typical (llmrouter_9models: mean 324 characters overall)
            order = np.random.default_rng(args.seed).permutation(len(test_prompts))
            prompts = [test_prompts[i] for i in order]
            slow = not spec.startswith(("static", "hashing", "trained-static"))
            for name in routers:
                router = timing_experiment.runs[name].router
                timing = speed(router, prompts, 60 if slow else args.single, 256 if slow else args.batch, Path(tmp))
                row = {"encoder": spec, "router": name, **timing,
                       "aiq": {lab: per_data[lab]["aiq"][name] for lab in DATASETS},
                       "embed_seconds": {lab: per_data[lab]["embed_seconds"] for lab in DATASETS},
                       "cosine_vs_minilm": fidelity.get("cosine_mean"),
                       "same_decisions_vs_minilm": fidelity.get(f"same_decisions_{name}")}
                rows.append(row)
                print(f"  {name:<8} route p50 {row['route_p50_ms']} ms p99 {row['route_p99_ms']} ms  "
                      f"batch {row['batch_prompts_per_s']}/s", flush=True)
    for row in rows:
        row["gap"] = {}
        for lab in DATASETS:
            best = max(r["aiq"][lab] for r in rows if r["router"] == row["router"])
            row["gap"][lab] = round(row["aiq"][lab] / best - 1, 5)
        row["verdict"] = verdict(row)
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
            "load_average_1m_start": load_start, "load_average_1m_end": round(os.getloadavg()[0], 2),
            "datasets": {lab: (f"{n} prompts (seeded subset)" if n is not None else "all prompts")
                         for lab, (_, kw) in DATASETS.items()
                         for n in [min(x for x in (kw.get("limit"), args.limit) if x is not None)
                                   if kw.get("limit") or args.limit else None]},
            "limit": args.limit, "n_single_fast": args.single,
            "mean_prompt_chars": max(rows, key=lambda r: r["n_single"])["mean_prompt_chars"] if rows else None,
            "seed": args.seed}
    result = {"meta": meta, "zero_router_aiq": zero, "rows": rows}
    write_json(args.out + ".json", result)
    write_text(args.out + ".md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
