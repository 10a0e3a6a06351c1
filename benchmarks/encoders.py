"""Benchmark: speed and fidelity of every encoder on real prompts.

For each encoder (minilm, onnx, onnx int8, static, hashing): load time, single-prompt encode
latency p50/p99 over 200 llmrouter_9models prompts (one ``encode([p])`` call each, after warm-up),
batch throughput (prompts/s, 500 prompts, batch 32), and fidelity to MiniLM: mean per-prompt cosine
(only where the vector spaces are the same) and the correlation of pairwise cosine similarities
over the 200 prompts (any encoder: does it keep MiniLM's notion of "similar prompts"?).
Writes benchmarks/results/encoders.{json,md}.

    nice -n 5 .venv/bin/python benchmarks/encoders.py [--encoders minilm,onnx,...]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from routecast.atomic import write_json, write_text
from routecast.router.encoders import get_encoder

HERE = Path(__file__).resolve().parent
DATA = [HERE.parent.parent / "shared" / "data" / "llmrouter_9models" / "data.parquet",
        Path("/work/shared/data/llmrouter_9models/data.parquet")]
DEFAULT_ENCODERS = "minilm,onnx,onnx:quantize=int8,static,hashing:dim=512"


def load_prompts(n: int, seed: int = 0) -> list[str]:
    import pandas as pd

    path = next(p for p in DATA if p.is_file())
    frame = pd.read_parquet(path, columns=["prompt_id", "prompt"]).drop_duplicates("prompt")
    return frame.sample(n, random_state=seed)["prompt"].astype(str).tolist()


def bench(spec: str, single: list[str], batch: list[str], batch_size: int) -> tuple[dict, np.ndarray]:
    start = time.perf_counter()
    encoder = get_encoder(spec)
    encoder.encode(["warm-up"])
    load_s = time.perf_counter() - start
    latencies = []
    for prompt in single:
        t0 = time.perf_counter()
        encoder.encode([prompt])
        latencies.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    encoder.encode(batch, batch_size=batch_size)
    throughput = len(batch) / (time.perf_counter() - t0)
    vectors = encoder.encode(single)
    row = {"encoder": spec, "name": encoder.name, "dim": encoder.dim, "load_s": round(load_s, 2),
           "single_p50_ms": round(float(np.percentile(latencies, 50)), 3),
           "single_p99_ms": round(float(np.percentile(latencies, 99)), 3),
           "batch_prompts_per_s": round(throughput, 1)}
    return row, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default=DEFAULT_ENCODERS)
    parser.add_argument("--single", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    prompts = load_prompts(args.single + args.batch)
    single, batch = prompts[: args.single], prompts[args.single:]
    rows, vectors = [], {}
    for spec in args.encoders.split(","):
        row, vecs = bench(spec, single, batch, args.batch_size)
        rows.append(row)
        vectors[spec] = vecs
        print(row, flush=True)
    ref = vectors.get("minilm")
    if ref is not None:
        iu = np.triu_indices(len(single), 1)
        ref_sims = (ref @ ref.T)[iu]
        for row in rows:
            vecs = vectors[row["encoder"]]
            row["cosine_vs_minilm"] = (round(float(np.mean(np.sum(vecs * ref, axis=1))), 5)
                                       if vecs.shape == ref.shape else None)
            row["pairwise_sim_corr_vs_minilm"] = round(float(np.corrcoef((vecs @ vecs.T)[iu], ref_sims)[0, 1]), 4)
    result = {"n_single": len(single), "n_batch": len(batch), "batch_size": args.batch_size,
              "cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2), "encoders": rows}
    out = HERE / "results"
    write_json(out / "encoders.json", result)
    lines = ["# Encoders", "",
             f"llmrouter_9models prompts; single-prompt latency over {len(single)} prompts, throughput over "
             f"{len(batch)} prompts at batch {args.batch_size}; {os.cpu_count()} CPU cores "
             f"(1-min load average {result['load_average_1m']} at the end: the machine was shared).", "",
             "| encoder | dim | load (s) | single p50 (ms) | single p99 (ms) | batch prompts/s | cosine vs MiniLM | pairwise-sim corr vs MiniLM |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        cos = row.get("cosine_vs_minilm")
        lines.append(f"| `{row['encoder']}` | {row['dim']} | {row['load_s']} | {row['single_p50_ms']} | "
                     f"{row['single_p99_ms']} | {row['batch_prompts_per_s']} | {'n/a' if cos is None else cos} | "
                     f"{row.get('pairwise_sim_corr_vs_minilm', 'n/a')} |")
    write_text(out / "encoders.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
