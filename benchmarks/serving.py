"""Benchmark: how fast an exported router routes, in process and over HTTP.

For each (router, encoder) pair: a router is fitted on llmrouter_9models training prompts, exported,
and loaded back with ``routecast.load`` (what a service does). Then:

* single-prompt ``route([p])`` latency p50/p99 (after warm-up), split into encoder and router-head
  time (``Runtime.last_timing``);
* batch throughput (prompts/s) of ``route_batch`` with batch 256, again split encoder / head;
* server requests/s: ``routecast serve`` in a subprocess on 127.0.0.1, ``POST /v1/route`` with one
  prompt per request, ``--concurrency`` requests in flight, ``--http-requests`` in all, driven by
  benchmarks/http_load.py; for the static encoder with micro-batching on and off (with MiniLM the
  server is bound by the encoder, which the in-process rows already show).

Writes benchmarks/results/serving.{json,md}. The machine has 2 shared cores: numbers are indicative.

    nice -n 5 .venv/bin/python benchmarks/serving.py [--no-minilm] [--http-requests 5000]
"""

from __future__ import annotations

import argparse
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


def bench_http(ckpt: Path, prompts: list[str], n_requests: int, concurrency: int, *,
               micro_batch: bool = True) -> dict:
    """``routecast serve`` in a subprocess; ``POST /v1/route`` one prompt per request, driven by the
    lean loopback client in benchmarks/http_load.py (its CPU is shared with the server)."""
    import httpx

    sys.path.insert(0, str(HERE))
    from http_load import run_load

    port = _free_port()
    cmd = [sys.executable, "-m", "routecast.cli", "serve", str(ckpt), "--port", str(port)]
    if not micro_batch:
        cmd.append("--no-micro-batch")
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        payloads = [{"prompt": p} for p in prompts]
        run_load("127.0.0.1", port, "/v1/route", payloads, n_requests=200, concurrency=4, warmup=0)
        before = httpx.get(url + "/metrics").text  # batch sizes of the measured phase only
        stats = run_load("127.0.0.1", port, "/v1/route", payloads, n_requests=n_requests,
                         concurrency=concurrency, warmup=0)
        metrics = httpx.get(url + "/metrics").text
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    count = _metric(metrics, "routecast_route_batch_prompts_count") - _metric(before, "routecast_route_batch_prompts_count")
    total = _metric(metrics, "routecast_route_batch_prompts_sum") - _metric(before, "routecast_route_batch_prompts_sum")
    return {"http_micro_batch": micro_batch, "http_requests": n_requests, "http_concurrency": concurrency,
            "http_ok": stats["ok"], "http_requests_per_s": stats["requests_per_s"],
            "http_p50_ms": stats["p50_ms"], "http_p99_ms": stats["p99_ms"],
            "http_mean_batch_prompts": round(total / count, 2) if count else None}


def _metric(text: str, name: str) -> float:
    import re

    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def to_markdown(rows: list[dict], http_rows: list[dict], meta: dict) -> str:
    lines = ["# Serving benchmark", "",
             f"{meta['machine']}; 1-min load average {meta['load_start']} at the start, {meta['load_end']} at the end. "
             f"Routers fitted on {meta['n_train']} llmrouter_9models prompts, exported and re-loaded with "
             "`routecast.load`. Single = one `route([prompt])` call (p50/p99 over held-out prompts); batch = "
             "`route` in chunks of 256. All rows measured in this one run.", "",
             "| router | encoder | single p50 ms | single p99 ms | encoder p50 ms | head p50 ms | batch prompts/s "
             "| batch encoder prompts/s | batch head prompts/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["router"], f"`{r['encoder']}`", r["single_p50_ms"], r["single_p99_ms"], r["encoder_p50_ms"],
                 r["head_p50_ms"], r["batch_prompts_per_s"], r["batch_encoder_prompts_per_s"],
                 r["batch_head_prompts_per_s"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if http_rows:
        lines += ["", "## HTTP: `routecast serve`, `POST /v1/route` with one prompt per request", "",
                  "Server in a subprocess on 127.0.0.1 (uvicorn, one worker); load from benchmarks/http_load.py "
                  "(asyncio, keep-alive connections) on the same 2 cores.", "",
                  "| router | encoder | micro-batching | requests | in flight | answered 200 | requests/s | p50 ms "
                  "| p99 ms | mean prompts per router call |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in http_rows:
            cells = [r["router"], f"`{r['encoder']}`", "on" if r["http_micro_batch"] else "off", r["http_requests"],
                     r["http_concurrency"], r["http_ok"], r["http_requests_per_s"], r["http_p50_ms"],
                     r["http_p99_ms"], r["http_mean_batch_prompts"]]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-minilm", action="store_true", help="skip the MiniLM rows")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--http-requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    load_start = round(os.getloadavg()[0], 2)
    # (router, encoder, HTTP runs with micro-batching on/off)
    configs = [("linear", "static", (True, False)), ("knn", "static", (True,)),
               ("knn", "hashing:dim=512", (True,)), ("linear", "hashing:dim=512", ())]
    if not args.no_minilm:
        configs.append(("knn", "minilm", ()))
    rows, http_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for router_type, encoder, http_modes in configs:
            fast = not encoder.startswith("minilm")
            n_train = args.n_train if fast else min(args.n_train, 1000)
            ckpt = build_checkpoint(router_type, encoder, n_train, Path(tmp) / f"{router_type}-{encoder[:7]}")
            single = eval_prompts(300 if fast else 60)
            batch = eval_prompts(4096 if fast else 256)
            row = {"router": router_type, "encoder": encoder, "n_train": n_train,
                   **bench_runtime(ckpt, single, batch)}
            rows.append(row)
            print(row, flush=True)
            for micro_batch in http_modes:
                http = {"router": router_type, "encoder": encoder,
                        **bench_http(ckpt, single, args.http_requests, args.concurrency, micro_batch=micro_batch)}
                http_rows.append(http)
                print(http, flush=True)
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
            "n_train": args.n_train, "load_start": load_start, "load_end": round(os.getloadavg()[0], 2)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "serving.json", {"meta": meta, "rows": rows, "http": http_rows})
    write_text(RESULTS / "serving.md", to_markdown(rows, http_rows, meta))
    print(to_markdown(rows, http_rows, meta))


if __name__ == "__main__":
    main()
