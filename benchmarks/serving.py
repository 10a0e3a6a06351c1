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

* authentication cost: requests/s of the same server with and without ``--api-keys`` (rounds
  interleaved, medians compared; the target is within 10%);
* fair share: small one-prompt ``/v1/route`` requests (key A, 8 in flight) alone, then while a
  heavy client (key B) keeps 8 requests of 256 prompts (~1 MB bodies) in flight; the target is
  the small requests' p99 under the heavy client at most 3x their p99 alone.

* a two-check cascade (``--only-cascade-checks``, its own results file): a cascade-routing
  checkpoint with the ``sets`` look-ahead whose plan calls two cheap models together, then stops
  when they agree or calls the strong model, served against a fake OpenAI-compatible backend that
  answers after a fixed delay; the latency p50 of the server sending the pair in parallel (as it
  does) against the same calls made one after another.

Writes benchmarks/results/serving.{json,md} (the two-check cascade: serving_cascade_checks.{json,md}).
The machine has 2 shared cores: numbers are indicative.

    nice -n 5 .venv/bin/python benchmarks/serving.py [--no-minilm] [--http-requests 5000] [--only-server-limits]
    nice -n 5 .venv/bin/python benchmarks/serving.py --only-cascade-checks [--delay-ms 200]
"""

from __future__ import annotations

import argparse
import json
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
    from routecast.core.checkpoint import save_checkpoint
    from routecast.core.registry import make_router

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


class _Server:
    """``routecast serve CKPT --port P [flags]`` in a subprocess, up once /health answers."""

    def __init__(self, ckpt: Path, flags: list[str]):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "routecast.cli", "serve", str(ckpt), "--port", str(self.port), *flags]

    def __enter__(self):
        import httpx

        self.process = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.__exit__()
                raise RuntimeError("routecast serve did not come up")
            time.sleep(0.2)

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def bench_http(ckpt: Path, prompts: list[str], n_requests: int, concurrency: int, *,
               micro_batch: bool = True) -> dict:
    """``routecast serve`` in a subprocess; ``POST /v1/route`` one prompt per request, driven by the
    lean loopback client in benchmarks/http_load.py (its CPU is shared with the server)."""
    import httpx

    sys.path.insert(0, str(HERE))
    from http_load import run_load

    with _Server(ckpt, [] if micro_batch else ["--no-micro-batch"]) as server:
        port, url = server.port, server.url
        payloads = [{"prompt": p} for p in prompts]
        run_load("127.0.0.1", port, "/v1/route", payloads, n_requests=200, concurrency=4, warmup=0)
        before = httpx.get(url + "/metrics").text  # batch sizes of the measured phase only
        stats = run_load("127.0.0.1", port, "/v1/route", payloads, n_requests=n_requests,
                         concurrency=concurrency, warmup=0)
        metrics = httpx.get(url + "/metrics").text
    count = _metric(metrics, "routecast_route_batch_prompts_count") - _metric(before, "routecast_route_batch_prompts_count")
    total = _metric(metrics, "routecast_route_batch_prompts_sum") - _metric(before, "routecast_route_batch_prompts_sum")
    return {"http_micro_batch": micro_batch, "http_requests": n_requests, "http_concurrency": concurrency,
            "http_ok": stats["ok"], "http_requests_per_s": stats["requests_per_s"],
            "http_p50_ms": stats["p50_ms"], "http_p99_ms": stats["p99_ms"],
            "http_mean_batch_prompts": round(total / count, 2) if count else None}


KEY_A, KEY_B = "bench-key-a-0123456789abcdef", "bench-key-b-0123456789abcdef"


def bench_auth(ckpt: Path, prompts: list[str], n_requests: int, concurrency: int, rounds: int = 3) -> dict:
    """requests/s with and without client authentication, rounds interleaved (the machine is shared)."""
    sys.path.insert(0, str(HERE))
    from http_load import run_load

    payloads = [{"prompt": p} for p in prompts]
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys.txt"
        keys.write_text(f"{KEY_A}\n{KEY_B}\n")
        runs: dict[str, list[float]] = {"off": [], "on": []}
        p99: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(rounds):
            for mode in ("off", "on"):
                flags = ["--api-keys", str(keys)] if mode == "on" else []
                headers = {"authorization": f"Bearer {KEY_A}"} if mode == "on" else None
                with _Server(ckpt, flags) as server:
                    run_load("127.0.0.1", server.port, "/v1/route", payloads, n_requests=300, concurrency=4,
                             warmup=0, headers=headers)
                    stats = run_load("127.0.0.1", server.port, "/v1/route", payloads, n_requests=n_requests,
                                     concurrency=concurrency, warmup=0, headers=headers)
                if stats["ok"] != n_requests:
                    raise RuntimeError(f"auth {mode}: {stats['statuses']} {stats['first_error']}")
                runs[mode].append(stats["requests_per_s"])
                p99[mode].append(stats["p99_ms"])
    off, on = float(np.median(runs["off"])), float(np.median(runs["on"]))
    return {"identify_us": _identify_cost_us(), "requests": n_requests, "concurrency": concurrency, "rounds": rounds,
            "rps_without_auth": runs["off"], "rps_with_auth": runs["on"],
            "p99_ms_without_auth": p99["off"], "p99_ms_with_auth": p99["on"],
            "median_rps_without_auth": round(off, 1), "median_rps_with_auth": round(on, 1),
            "auth_over_no_auth": round(on / off, 3)}


def _identify_cost_us() -> float:
    """In-process cost of checking one key (SHA-256 + constant-time compare against 2 digests), microseconds."""
    from routecast.serving.guard.auth import ApiKeys

    keys = ApiKeys.from_entries([("a", KEY_A), ("b", KEY_B)])
    token = f"{KEY_B}".encode()
    start = time.perf_counter()
    for _ in range(20_000):
        keys.identify(token)
    return round((time.perf_counter() - start) / 20_000 * 1e6, 2)


def bench_fair_share(ckpt: Path, prompts: list[str], n_requests: int, rounds: int = 2) -> dict:
    """Small requests' latency alone and under a heavy client (8 x 256 long prompts, ~1 MB bodies)."""
    sys.path.insert(0, str(HERE))
    from http_load import run_load, run_mixed

    light = [{"prompt": p} for p in prompts]
    long_prompt = ("Please summarise the following quarterly report in detail. " + "lorem ipsum dolor " * 216)[:3900]
    heavy = {"prompts": [f"{i} {long_prompt}" for i in range(256)]}
    body_bytes = len(json.dumps(heavy).encode())
    auth_a, auth_b = {"authorization": f"Bearer {KEY_A}"}, {"authorization": f"Bearer {KEY_B}"}
    out = {"light_requests": n_requests, "light_concurrency": 8, "heavy_concurrency": 8, "heavy_prompts": 256,
           "heavy_body_bytes": body_bytes, "alone": [], "under_heavy": []}
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys.txt"
        keys.write_text(f"{KEY_A}\n{KEY_B}\n")
        with _Server(ckpt, ["--api-keys", str(keys), "--max-body-bytes", str(body_bytes + 1000)]) as server:
            run_load("127.0.0.1", server.port, "/v1/route", light, n_requests=300, concurrency=4, warmup=0,
                     headers=auth_a)
            for _ in range(rounds):
                alone = run_load("127.0.0.1", server.port, "/v1/route", light, n_requests=n_requests,
                                 concurrency=8, warmup=50, headers=auth_a)
                mixed, heavy_stats = run_mixed("127.0.0.1", server.port, "/v1/route", light, heavy,
                                               n_requests=n_requests, concurrency=8, heavy_concurrency=8,
                                               light_headers=auth_a, heavy_headers=auth_b)
                out["alone"].append({k: alone[k] for k in ("p50_ms", "p99_ms", "requests_per_s", "ok")})
                out["under_heavy"].append({**{k: mixed[k] for k in ("p50_ms", "p99_ms", "requests_per_s", "ok")},
                                           "heavy_answered": heavy_stats["statuses"].get(200, 0),
                                           "heavy_statuses": heavy_stats["statuses"]})
    alone_p99 = float(np.median([r["p99_ms"] for r in out["alone"]]))
    mixed_p99 = float(np.median([r["p99_ms"] for r in out["under_heavy"]]))
    out.update({"median_p99_alone_ms": round(alone_p99, 2), "median_p99_under_heavy_ms": round(mixed_p99, 2),
                "p99_ratio": round(mixed_p99 / alone_p99, 2)})
    return out


def bench_cascade_checks(delay_s: float, n_requests: int) -> dict:
    """Latency of a two-check cascade served in parallel vs the same calls one after another.

    The cascade and lam are tests._support.set_plan's (A and B cheap, right 80 % of the time, C
    strong; only agreement tells a right cheap answer from a wrong one; the plan calls {A, B}
    together first on every benchmark prompt). The fake backend answers each call with the logged response after
    ``delay_s``. "Sequential" serves the same checkpoint with every planned set sent one model at
    a time (the same calls, the same answers; only the overlap differs).
    """
    import httpx

    sys.path.insert(0, str(HERE.parent))
    from routecast.serving.app import create_app
    from routecast.serving.cascade_runtime import CascadeRuntime, load_cascade
    from tests._support.fake_chat import FakeChat
    from tests._support.serving import ServerThread, backends_for
    from tests._support.set_plan import set_plan_cascade

    class OneAtATime(CascadeRuntime):
        def next_models(self, state):
            return super().next_models(state)[:1]

        def observe_and_next(self, state, answers):
            return super().observe_and_next(state, answers)[:1]

    cascade, test, lam = set_plan_cascade()
    rows = list(range(min(n_requests, test.n_prompts)))
    answers = {(test.prompts[i], m): test.responses[i, test.model_index(m)] for i in rows for m in cascade.pool_}
    out = {"delay_ms": delay_s * 1000, "requests": len(rows), "lam": lam, "pool": list(cascade.pool_),
           "unit_costs": [float(c) for c in cascade.costs_]}
    with tempfile.TemporaryDirectory() as tmp:
        path = cascade.save(Path(tmp) / "sets")
        fake = FakeChat(lambda text, model: answers[(text, model)])
        fake.delay = delay_s
        try:
            for mode, runtime_cls in (("parallel", CascadeRuntime), ("sequential", OneAtATime)):
                base = load_cascade(path)
                runtime = runtime_cls(base.cascade, path=path, manifest_sha256=base.manifest_sha256)
                app = create_app(runtime, backends=backends_for({m: fake.base_url for m in cascade.pool_}))
                latencies, calls = [], []
                with ServerThread(app) as server, httpx.Client(timeout=60) as client:
                    for i in [rows[0]] + rows:  # the first request warms up (encoders, connections)
                        body = {"model": "router", "messages": [{"role": "user", "content": test.prompts[i]}],
                                "routecast": {"lam": lam}}
                        t0 = time.perf_counter()
                        r = client.post(server.url + "/v1/chat/completions", json=body)
                        latencies.append((time.perf_counter() - t0) * 1000)
                        calls.append(r.headers["x-routecast-cascade-calls"].split(","))
                latencies, calls = latencies[1:], calls[1:]
                escalated = np.array(["C" in c for c in calls])
                out[mode] = {"p50_ms": _pct(latencies, 50), "p90_ms": _pct(latencies, 90),
                             "p50_ms_stopped_after_pair": _pct(np.array(latencies)[~escalated], 50)
                             if (~escalated).any() else None,
                             "p50_ms_escalated": _pct(np.array(latencies)[escalated], 50) if escalated.any() else None,
                             "mean_calls": round(float(np.mean([len(c) for c in calls])), 3),
                             "escalated_share": round(float(escalated.mean()), 3),
                             "first_two_calls_are_the_pair": bool(all(sorted(c[:2]) == ["A", "B"] for c in calls))}
                print({mode: out[mode]}, flush=True)
        finally:
            fake.stop()
    out["parallel_over_sequential_p50"] = round(out["parallel"]["p50_ms"] / out["sequential"]["p50_ms"], 3)
    return out


def cascade_checks_markdown(r: dict, meta: dict) -> str:
    rows = [f"| {mode} | {r[mode]['p50_ms']} | {r[mode]['p90_ms']} | {_fmt(r[mode]['p50_ms_stopped_after_pair'])} | "
            f"{_fmt(r[mode]['p50_ms_escalated'])} | {r[mode]['mean_calls']} | {r[mode]['escalated_share']} |"
            for mode in ("parallel", "sequential")]
    return "\n".join([
        "# Serving a two-check cascade: planned calls in parallel", "",
        f"`benchmarks/serving.py --only-cascade-checks`; {meta['machine']}; load average {meta['load_start']} -> "
        f"{meta['load_end']}. A cascade-routing checkpoint with the `sets` look-ahead "
        "(routecast.cascade.set_actions), trained on the constructed pool of the cascade tests (A, B cheap and right "
        "80 % of the time, C strong; only agreement is informative), at the first validation lam whose plan calls "
        f"{{A, B}} together first on every prompt (lam {r['lam']:.4g}): A and B in parallel, then stop when they "
        "agree or call C. `routecast` server in process (uvicorn on 127.0.0.1), one request at a time, "
        f"{r['requests']} prompts after one warm-up; a fake OpenAI-compatible backend answers every call with the "
        f"logged response after {r['delay_ms']:.0f} ms. *Sequential*: the same checkpoint and calls, every planned "
        "set sent one model at a time.", "",
        "| mode | p50 ms | p90 ms | p50 ms, stopped after the pair | p50 ms, escalated to C | mean calls | "
        "escalated share |", "|---|---:|---:|---:|---:|---:|---:|", *rows, "",
        f"Parallel p50 / sequential p50: **{r['parallel_over_sequential_p50']}x** (every request's first two calls "
        f"were the pair: {r['parallel']['first_two_calls_are_the_pair'] and r['sequential']['first_two_calls_are_the_pair']}).",
        ""])


def _fmt(x) -> str:
    return "—" if x is None else str(x)


def _metric(text: str, name: str) -> float:
    import re

    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def to_markdown(rows: list[dict], http_rows: list[dict], meta: dict) -> str:
    lines = ["# Serving benchmark", "",
             f"{meta['machine']}; 1-min load average {meta.get('rows_load_start', meta['load_start'])} at the start, "
             f"{meta.get('rows_load_end', meta['load_end'])} at the end. "
             f"Routers fitted on {meta['n_train']} llmrouter_9models prompts, exported and re-loaded with "
             "`routecast.load`. Single = one `route([prompt])` call (p50/p99 over held-out prompts); batch = "
             "`route` in chunks of 256. All rows of these first two tables measured in one run"
             + (f"; the authentication and fair-share sections in a later run (`--only-server-limits`, load "
                f"average {meta['load_start']} -> {meta['load_end']}: the 2 cores were shared with other work, so "
                "its absolute latencies are not comparable with the tables above)" if "rows_load_start" in meta
                else "") + ".", "",
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
    auth, fair = meta.get("auth"), meta.get("fair_share")
    if auth:
        lines += ["", "## Client authentication cost", "",
                  f"`routecast serve` (linear router, static encoder) without and with `--api-keys` (2 keys), "
                  f"`POST /v1/route` one prompt per request, {auth['requests']} requests, {auth['concurrency']} in "
                  f"flight, {auth['rounds']} rounds interleaved (off, on, off, on, ...).", "",
                  "| | requests/s per round | median requests/s | p99 ms per round |", "|---|---|---|---|",
                  f"| no keys | {auth['rps_without_auth']} | {auth['median_rps_without_auth']} | "
                  f"{auth['p99_ms_without_auth']} |",
                  f"| `--api-keys` | {auth['rps_with_auth']} | {auth['median_rps_with_auth']} | "
                  f"{auth['p99_ms_with_auth']} |", "",
                  f"With authentication: **{auth['auth_over_no_auth']:.3f}x** the median throughput without "
                  "(target: at least 0.9x). The rounds vary more between themselves than between the modes (the "
                  "2 cores are shared); in process, checking a key costs "
                  f"{auth.get('identify_us', '?')} µs (SHA-256 and constant-time compares), against about 2 ms "
                  "of CPU per request."]
    if fair:
        lines += ["", "## Fair share under a heavy client", "",
                  f"Key A sends one-prompt `/v1/route` requests, {fair['light_concurrency']} in flight, "
                  f"{fair['light_requests']} per round; key B keeps {fair['heavy_concurrency']} requests of "
                  f"{fair['heavy_prompts']} prompts (~3,900 characters each, {fair['heavy_body_bytes']:,} byte "
                  "bodies) in flight during the 'under heavy' rounds.", "",
                  "| round | alone p50 ms | alone p99 ms | under heavy p50 ms | under heavy p99 ms | heavy requests "
                  "answered meanwhile |", "|---|---|---|---|---|---|"]
        for i, (a, m) in enumerate(zip(fair["alone"], fair["under_heavy"]), 1):
            lines.append(f"| {i} | {a['p50_ms']} | {a['p99_ms']} | {m['p50_ms']} | {m['p99_ms']} | "
                         f"{m['heavy_answered']} |")
        lines += ["", f"Median p99 alone {fair['median_p99_alone_ms']} ms, under the heavy client "
                      f"{fair['median_p99_under_heavy_ms']} ms: **{fair['p99_ratio']}x** (target: at most 3x; "
                      "before the fair share: p99 31 ms -> 2,340 ms, 75x)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-minilm", action="store_true", help="skip the MiniLM rows")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--http-requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only-server-limits", action="store_true",
                        help="only the authentication and fair-share sections (keeps the other rows of serving.json)")
    parser.add_argument("--only-cascade-checks", action="store_true",
                        help="only the two-check cascade latency (writes serving_cascade_checks.{json,md})")
    parser.add_argument("--delay-ms", type=float, default=200.0, help="the fake backend's delay per call")
    parser.add_argument("--cascade-requests", type=int, default=40)
    args = parser.parse_args()

    load_start = round(os.getloadavg()[0], 2)
    if args.only_cascade_checks:
        checks = bench_cascade_checks(args.delay_ms / 1000.0, args.cascade_requests)
        meta = {"machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
                "load_start": load_start, "load_end": round(os.getloadavg()[0], 2)}
        RESULTS.mkdir(parents=True, exist_ok=True)
        write_json(RESULTS / "serving_cascade_checks.json", {"meta": meta, **checks})
        write_text(RESULTS / "serving_cascade_checks.md", cascade_checks_markdown(checks, meta))
        print(cascade_checks_markdown(checks, meta))
        return
    # (router, encoder, HTTP runs with micro-batching on/off)
    configs = [("linear", "static", (True, False)), ("knn", "static", (True,)),
               ("knn", "hashing:dim=512", (True,)), ("linear", "hashing:dim=512", ())]
    if not args.no_minilm:
        configs.append(("knn", "minilm", ()))
    rows, http_rows = [], []
    if args.only_server_limits:
        configs = []
        previous = json.loads((RESULTS / "serving.json").read_text()) if (RESULTS / "serving.json").exists() else {}
        rows, http_rows = previous.get("rows", []), previous.get("http", [])
        old_meta = previous.get("meta", {})
        rows_load = {"rows_load_start": old_meta.get("rows_load_start", old_meta.get("load_start")),
                     "rows_load_end": old_meta.get("rows_load_end", old_meta.get("load_end"))}
    with tempfile.TemporaryDirectory() as tmp:
        limits_ckpt = build_checkpoint("linear", "static", args.n_train, Path(tmp) / "limits")
        auth = bench_auth(limits_ckpt, eval_prompts(300), args.http_requests, args.concurrency)
        print({"auth": auth}, flush=True)
        fair = bench_fair_share(limits_ckpt, eval_prompts(300), 1500)
        print({"fair_share": fair}, flush=True)
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
            "n_train": args.n_train, "load_start": load_start, "load_end": round(os.getloadavg()[0], 2),
            "auth": auth, "fair_share": fair, **(rows_load if args.only_server_limits else {})}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "serving.json", {"meta": meta, "rows": rows, "http": http_rows, "auth": auth,
                                          "fair_share": fair})
    write_text(RESULTS / "serving.md", to_markdown(rows, http_rows, meta))
    print(to_markdown(rows, http_rows, meta))


if __name__ == "__main__":
    main()
