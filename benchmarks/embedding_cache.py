"""Benchmark: the on-disk embedding cache makes re-embedding free.

Embeds 1,000 llmrouter_9models prompts with MiniLM into a fresh temporary cache directory, then
embeds them again (a new EmbeddingCache, so the second run really reads the shards from disk).
Target: second run < 5% of the first. Writes benchmarks/results/embedding_cache.{json,md}.

    nice -n 5 .venv/bin/python benchmarks/embedding_cache.py [--n 1000] [--encoder minilm]
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from routecast.atomic import write_json, write_text
from routecast.router.embedding_cache import EmbeddingCache, embed
from routecast.router.encoders import get_encoder

HERE = Path(__file__).resolve().parent
DATA = [HERE.parent.parent / "shared" / "data" / "llmrouter_9models" / "data.parquet",
        Path("/work/shared/data/llmrouter_9models/data.parquet")]


def load_prompts(n: int, seed: int = 0) -> list[str]:
    import pandas as pd

    path = next(p for p in DATA if p.is_file())
    frame = pd.read_parquet(path, columns=["prompt_id", "prompt"]).drop_duplicates("prompt_id")
    return frame.sample(n, random_state=seed)["prompt"].astype(str).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--encoder", default="minilm")
    args = parser.parse_args()

    prompts = load_prompts(args.n)
    encoder = get_encoder(args.encoder)
    encoder.encode(["warm-up: load the model outside the timed runs"])
    with tempfile.TemporaryDirectory(prefix="routecast-embcache-") as cache_dir:
        start = time.perf_counter()
        first = embed(encoder, prompts, cache_dir=cache_dir, show_progress=False)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        second = embed(encoder, prompts, cache_dir=cache_dir, show_progress=False)
        second_s = time.perf_counter() - start
        shards = EmbeddingCache(encoder, cache_dir).shard_paths()
        size = sum(p.stat().st_size for p in shards)
    assert np.array_equal(first, second), "cache returned different vectors"
    ratio = second_s / first_s
    result = {
        "encoder": encoder.spec, "encoder_name": encoder.name, "n_prompts": len(prompts),
        "n_unique": len(set(prompts)), "first_s": round(first_s, 3), "second_s": round(second_s, 4),
        "ratio": round(ratio, 5), "target_ratio": 0.05, "meets_target": ratio < 0.05,
        "first_prompts_per_s": round(len(prompts) / first_s, 1), "shards": len(shards), "cache_bytes": size,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    print(result)
    out = HERE / "results"
    write_json(out / "embedding_cache.json", result)
    write_text(out / "embedding_cache.md", "\n".join([
        "# Embedding cache", "",
        f"{result['n_prompts']} llmrouter_9models prompts, encoder `{encoder.spec}`, fresh temp cache dir; "
        "second run reads the shards back from disk (new EmbeddingCache).", "",
        "| first run (s) | second run (s) | second / first | target | prompts/s (first) | cache size |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {first_s:.2f} | {second_s:.4f} | {ratio:.2%} | < 5% | {result['first_prompts_per_s']} | {size / 1e6:.2f} MB |",
        "",
    ]))


if __name__ == "__main__":
    main()
