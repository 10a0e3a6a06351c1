"""Benchmark: how fast ``routecast collect`` fills an outcome log from OpenAI-compatible endpoints.

Two fake endpoints (tests/_support/fake_openai.py, in a process of their own, 127.0.0.1 only): ``slow``
answers after ``--delay`` seconds, ``flaky`` answers a third of the cells 429 then 500 before
answering (so those cells take three attempts, with backoff). ``collect`` sends ``--prompts``
prompts to both with ``--concurrency`` requests in flight in all (each endpoint allows as many),
official ``openai`` async client, journal fsync'd per cell. Reported: wall time, cells/s, the
retries the backends counted, and a rerun that finds everything in the journal (resume cost).

Writes benchmarks/results/collect.{json,md}. The machine has 2 shared cores: numbers are indicative.

    nice -n 5 .venv/bin/python benchmarks/collect.py [--prompts 1000] [--concurrency 32] [--delay 0.02]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from routecast.atomic import write_json, write_text

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FAKE = HERE.parent / "tests" / "_support" / "fake_openai.py"


def run(prompts: int, concurrency: int, delay: float, backoff: float) -> dict:
    import openai  # noqa: F401 - imported before the clock starts (a few seconds on a busy machine)

    from routecast.data.collect import collect

    server = subprocess.Popen([sys.executable, str(FAKE), f"slow:{delay}", "flaky"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        urls = json.loads(server.stdout.readline())
        endpoints = {name: {"base_url": url, "concurrency": concurrency} for name, url in urls.items()}
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            prompt_file = tmp / "prompts.jsonl"
            prompt_file.write_text("".join(json.dumps({"prompt": f"benchmark question {i}: what is {i} + {i}?"}) + "\n"
                                           for i in range(prompts)), encoding="utf-8")
            out = tmp / "collected.jsonl"
            prices = {"slow": [1.0, 2.0], "flaky": [0.1, 0.2]}
            start = time.perf_counter()
            first = collect(prompt_file, endpoints, out, prices=prices, concurrency=concurrency, backoff=backoff,
                            progress=False)
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            again = collect(prompt_file, endpoints, out, prices=prices, concurrency=concurrency, progress=False)
            resume_seconds = time.perf_counter() - start
            rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    finally:
        stats_line, _ = server.communicate(input="", timeout=60)
    statuses = json.loads(stats_line.strip().splitlines()[-1])
    cells = len({(r["prompt_id"], r["model"]) for r in rows})
    latencies = sorted(r["latency_s"] for r in rows)
    return {
        "prompts": prompts, "models": 2, "cells": cells, "concurrency": concurrency, "slow_delay_s": delay,
        "backoff_s": backoff, "seconds": round(seconds, 3), "cells_per_s": round(cells / seconds, 1),
        "sent_cells": first.sent_cells, "rerun_sent_cells": again.sent_cells,
        "rerun_seconds": round(resume_seconds, 3), "backend_statuses": statuses,
        "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "latency_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2),
        "every_cell_once": cells == len(rows) == 2 * prompts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds the slow endpoint waits per answer")
    parser.add_argument("--backoff", type=float, default=0.05, help="first retry delay in seconds")
    args = parser.parse_args()
    result = run(args.prompts, args.concurrency, args.delay, args.backoff)
    import os

    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                         "load_average_1min_after": round(os.getloadavg()[0], 1)}
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "collect.json", result)
    s = result["backend_statuses"]
    md = [
        "# collect benchmark",
        "",
        f"`routecast collect` of {result['prompts']:,} prompts x 2 fake OpenAI-compatible endpoints on 127.0.0.1 "
        f"(`slow`: {result['slow_delay_s'] * 1000:.0f} ms per answer; `flaky`: a third of the cells 429 then 500, "
        f"first backoff {result['backoff_s'] * 1000:.0f} ms), {result['concurrency']} requests in flight, official "
        "openai async client, journal fsync'd per cell (group commit). 2 CPU cores shared with other work "
        f"(1-minute load average {result['machine']['load_average_1min_after']} after the run): indicative.",
        "",
        "| cells | concurrency | seconds | cells/s | p50 call ms | p99 call ms | 429s | 500s | rerun sent | rerun s | every cell once |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {result['cells']:,} | {result['concurrency']} | {result['seconds']:.2f} | {result['cells_per_s']:,.1f} | "
        f"{result['latency_p50_ms']:.1f} | {result['latency_p99_ms']:.1f} | {s['flaky'].get('429', 0)} | "
        f"{s['flaky'].get('500', 0)} | {result['rerun_sent_cells']} | {result['rerun_seconds']:.2f} | "
        f"{'yes' if result['every_cell_once'] else 'NO'} |",
        "",
        "Reproduce: `nice -n 5 .venv/bin/python benchmarks/collect.py`",
        "",
    ]
    write_text(RESULTS / "collect.md", "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
