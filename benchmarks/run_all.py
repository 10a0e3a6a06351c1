"""Run every benchmark under benchmarks/, one after another (``make bench``).

Each benchmark writes its own JSON + Markdown under benchmarks/results/. They run sequentially
because several time things on a 2-core machine: running two at once would measure contention.
Embeddings are cached on disk, so a second ``make bench`` spends its time on training and timing.
Expect about an hour on a fresh cache (MiniLM and ONNX embed ~30k prompts), minutes after.

    .venv/bin/python benchmarks/run_all.py [--only latency,serving] [--skip leaderboard]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> extra arguments; order: cheap and foundational first
BENCHMARKS = {
    "embedding_cache": [],
    "encoders": [],
    "latency": [],
    "serving": [],
    "leaderboard": [],
    "cascades": [],
    "pairwise": [],
    "tune_mlp": [],
    "plateau": [],
    "trained_static": [],
    "routerdc": [],
    "collect": [],
    "feedback_loop": [],
    "mf_paths": [],
    "scaling": [],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--skip", default="", help="comma-separated benchmark names")
    args = parser.parse_args()
    only = {b for b in args.only.split(",") if b}
    skip = {b for b in args.skip.split(",") if b}
    unknown = (only | skip) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; known: {', '.join(BENCHMARKS)}")
    failed = []
    for name, extra in BENCHMARKS.items():
        if (only and name not in only) or name in skip:
            continue
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py"), *extra])
        print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"results in {HERE / 'results'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
