"""Benchmark: how fast an exported router routes, in process and over HTTP.

For each (router, encoder) pair: a router is fitted on llmrouter_9models training prompts, exported,
and loaded back with ``routecast.load`` (what a service does). Then:

* single-prompt ``route([p])`` latency p50/p99 (after warm-up), split into encoder and router-head
  time (``Runtime.last_timing``);
* batch throughput (prompts/s) of ``route_batch`` with batch 256, again split encoder / head;
* server requests/s: ``routecast serve`` in a subprocess on 127.0.0.1, ``POST /v1/route`` with one
  prompt per request, CONCURRENCY requests in flight, N_HTTP requests in all (hashing only by
  default: with MiniLM the server is bound by the encoder, which the in-process rows already show).

Writes benchmarks/results/serving.{json,md}. The machine has 2 shared cores: numbers are indicative.

    nice -n 5 .venv/bin/python benchmarks/serving.py [--no-minilm] [--http-requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from routecast.atomic import write_json, write_text

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _pct(values, q) -> float:
    return round(float(np.percentile(values, q)), 3)


def build_checkpoint(router_type: str, encoder: str, n_train: int, out: Path) -> Path:
    from routecast.data import load_log
    from routecast.router.checkpoint import save_checkpoint
    from routecast.router.registry import make_router

    log = load_log("llmrouter_9models")
    idx = np.random.default_rng(0).choice(log.n_prompts, size=n_train, replace=False)
    router = make_router(router_type, encoder=encoder).fit(log.subset(np.sort(idx)))
    return save_checkpoint(router, out)


def eval_prompts(n: int) -> list[str]:
    from routecast.data import load_log

    log = load_log("llmrouter_9models")
    idx = np.random.default_rng(1).choice(log.n_prompts, size=n, replace=False)
    return [str(p) for p in log.prompts[idx]]


def bench_runtime(ckpt: Path, single: list[str], batch: list[str]) -> dict:
    import routecast

    t0 = time.perf_counter()
    runtime = routecast.load(ckpt)
    runtime.route(single[:4])  # warm-up (lazy vectorizer / model load)
    load_s = time.perf_counter() - t0
    total, enc, head = [], [], []
    for prompt in single:
        start = time.perf_counter()
        runtime.route([prompt])
        total.append((time.perf_counter() - start) * 1000)
        enc.append(runtime.last_timing.encode_seconds * 1000)
        head.append(runtime.last_timing.head_seconds * 1000)
    enc_s = head_s = 0.0
    start = time.perf_counter()
    for i in range(0, len(batch), 256):
        runtime.route(batch[i:i + 256])
        enc_s += runtime.last_timing.encode_seconds
        head_s += runtime.last_timing.head_seconds
    wall = time.perf_counter() - start
    return {"load_s": round(load_s, 2), "n_single": len(single),
            "single_p50_ms": _pct(total, 50), "single_p99_ms": _pct(total, 99),
            "encoder_p50_ms": _pct(enc, 50), "head_p50_ms": _pct(head, 50),
            "n_batch": len(batch), "batch_prompts_per_s": round(len(batch) / wall, 1),
            "batch_encoder_prompts_per_s": round(len(batch) / enc_s, 1) if enc_s else None,
            "batch_head_prompts_per_s": round(len(batch) / head_s, 1) if head_s else None}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_http(ckpt: Path, prompts: list[str], n_requests: int, concurrency: int) -> dict:
    import httpx

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "routecast.cli", "serve", str(ckpt), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("routecast serve did not come up")
            time.sleep(0.2)

        async def drive():
            latencies, statuses = [], []
            semaphore = asyncio.Semaphore(concurrency)
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
                async def one(i):
                    async with semaphore:
                        start = time.perf_counter()
                        r = await client.post("/v1/route", json={"prompt": prompts[i % len(prompts)]})
                        latencies.append((time.perf_counter() - start) * 1000)
                        statuses.append(r.status_code)

                for i in range(min(50, n_requests)):  # warm-up
                    await one(i)
                latencies.clear()
                statuses.clear()
                start = time.perf_counter()
                await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n_requests))), 120)
                return time.perf_counter() - start, latencies, statuses

        wall, latencies, statuses = asyncio.run(drive())
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    return {"http_requests": n_requests, "http_concurrency": concurrency,
            "http_ok": sum(s == 200 for s in statuses), "http_requests_per_s": round(n_requests / wall, 1),
            "http_p50_ms": _pct(latencies, 50), "http_p99_ms": _pct(latencies, 99)}


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = ["# Serving benchmark", "",
             f"{meta['machine']}; routers fitted on {meta['n_train']} llmrouter_9models prompts, exported and "
             "re-loaded with `routecast.load`. Single = one `route([prompt])` call (p50/p99 over "
             f"{meta['n_single']} prompts); batch = `route` in chunks of 256; HTTP = `routecast serve` subprocess, "
             "`POST /v1/route` one prompt per request.", "",
             "| router | encoder | single p50 ms | single p99 ms | encoder p50 ms | head p50 ms | batch prompts/s "
             "| batch encoder prompts/s | batch head prompts/s | HTTP req/s | HTTP p50 ms | HTTP p99 ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["router"], r["encoder"], r["single_p50_ms"], r["single_p99_ms"], r["encoder_p50_ms"],
                 r["head_p50_ms"], r["batch_prompts_per_s"], r["batch_encoder_prompts_per_s"],
                 r["batch_head_prompts_per_s"], r.get("http_requests_per_s", "-"), r.get("http_p50_ms", "-"),
                 r.get("http_p99_ms", "-")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if any("http_requests_per_s" in r for r in rows):
        r = next(r for r in rows if "http_requests_per_s" in r)
        lines += ["", f"HTTP: {r['http_requests']} requests, {r['http_concurrency']} in flight, "
                      f"{r['http_ok']} answered 200."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-minilm", action="store_true", help="skip the MiniLM rows")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--http-requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    configs = [("knn", "hashing:dim=512", True), ("linear", "hashing:dim=512", False)]
    if not args.no_minilm:
        configs.append(("knn", "minilm", False))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for router_type, encoder, http in configs:
            fast = encoder.startswith("hashing")
            n_train = args.n_train if fast else min(args.n_train, 1000)
            ckpt = build_checkpoint(router_type, encoder, n_train, Path(tmp) / f"{router_type}-{encoder[:7]}")
            single = eval_prompts(300 if fast else 60)
            batch = eval_prompts(4096 if fast else 256)
            row = {"router": router_type, "encoder": encoder, "n_train": n_train,
                   **bench_runtime(ckpt, single, batch)}
            if http:
                row.update(bench_http(ckpt, single, args.http_requests, args.concurrency))
            rows.append(row)
            print(row, flush=True)
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} cores (shared), Python {platform.python_version()}",
            "n_train": args.n_train, "n_single": 300}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "serving.json", {"meta": meta, "rows": rows})
    write_text(RESULTS / "serving.md", to_markdown(rows, meta))
    print(to_markdown(rows, meta))


if __name__ == "__main__":
    main()
