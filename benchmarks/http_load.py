"""A lean HTTP/1.1 load generator for loopback benchmarks (asyncio streams, keep-alive, no client library).

Why not httpx/openai: on a 2-core machine the load generator shares the CPU with the server, and a
full-featured async client spends ~0.5 ms of CPU per request, which would cap the measured
server throughput below what the server can do. This client writes a prebuilt request and reads
one ``Content-Length`` framed response per round trip, on ``concurrency`` persistent connections.

    from benchmarks.http_load import run_load
    stats = run_load("127.0.0.1", 8000, "/v1/route", bodies, n_requests=5000, concurrency=32)
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np


def _request(host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _drive(host: str, port: int, path: str, bodies: list[bytes], n_requests: int, concurrency: int,
                 warmup: int, timeout: float, headers: dict[str, str] | None = None) -> dict:
    requests = [_request(host, port, path, b, headers) for b in bodies]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = {"next": 0}
    first_error: list[str] = []

    async def worker(total: int, record: bool) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while counter["next"] < total:
                i = counter["next"]
                counter["next"] += 1
                start = time.perf_counter()
                writer.write(requests[i % len(requests)])
                status, body = await _read_response(reader)
                if record:
                    latencies.append(time.perf_counter() - start)
                    statuses[status] = statuses.get(status, 0) + 1
                    if status != 200 and not first_error:
                        first_error.append(body[:300].decode("utf-8", "replace"))
        finally:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(worker(warmup, False) for _ in range(min(concurrency, 4)))), timeout)
    counter["next"] = 0
    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker(n_requests, True) for _ in range(concurrency))), timeout)
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {"requests": n_requests, "concurrency": concurrency, "seconds": round(wall, 3),
            "requests_per_s": round(n_requests / wall, 1), "ok": statuses.get(200, 0), "statuses": statuses,
            "p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "first_error": first_error[0] if first_error else None}


def _runner():
    try:
        import uvloop

        return uvloop.run
    except ImportError:  # pragma: no cover - Windows
        return asyncio.run


def run_load(host: str, port: int, path: str, payloads: list[dict], *, n_requests: int, concurrency: int,
             warmup: int = 200, timeout: float = 300.0, headers: dict[str, str] | None = None) -> dict:
    """POST ``payloads`` (cycled) ``n_requests`` times with ``concurrency`` connections; latency and status counts."""
    bodies = [json.dumps(p).encode() for p in payloads]
    return _runner()(_drive(host, port, path, bodies, n_requests, concurrency, warmup, timeout, headers))


async def _mixed(host, port, path, light, heavy, n_requests, concurrency, heavy_concurrency, timeout,
                 light_headers, heavy_headers):
    stop = asyncio.Event()
    heavy_request = _request(host, port, path, heavy, heavy_headers)
    heavy_stats = {"requests": 0, "statuses": {}}

    async def heavy_worker():
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not stop.is_set():
                writer.write(heavy_request)
                status, _ = await _read_response(reader)
                heavy_stats["requests"] += 1
                heavy_stats["statuses"][status] = heavy_stats["statuses"].get(status, 0) + 1
        finally:
            writer.close()

    heavy_tasks = [asyncio.ensure_future(heavy_worker()) for _ in range(heavy_concurrency)]
    await asyncio.sleep(1.0)  # the heavy client is in full swing before the light one is measured
    try:
        light_stats = await _drive(host, port, path, light, n_requests, concurrency, 50, timeout, light_headers)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*heavy_tasks, return_exceptions=True), timeout)
    return light_stats, heavy_stats


def run_mixed(host: str, port: int, path: str, light_payloads: list[dict], heavy_payload: dict, *,
              n_requests: int, concurrency: int, heavy_concurrency: int, timeout: float = 600.0,
              light_headers: dict[str, str] | None = None, heavy_headers: dict[str, str] | None = None):
    """The light load of :func:`run_load` while ``heavy_concurrency`` connections keep POSTing
    ``heavy_payload``; returns (light stats, heavy request counts)."""
    light = [json.dumps(p).encode() for p in light_payloads]
    heavy = json.dumps(heavy_payload).encode()
    return _runner()(_mixed(host, port, path, light, heavy, n_requests, concurrency, heavy_concurrency, timeout,
                            light_headers, heavy_headers))
