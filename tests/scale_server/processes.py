"""Real ``routecast serve`` processes and a real ``redis-server`` on free loopback ports, for the
scale-out tests. Every process is started by the test, bounded in time and stopped by its pid."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests._support.fake_backend import free_port

MATH = "Solve for x: 3x + 4 = 10"  # routed to 'large' (expected cost 0.01) at lam=0
CHAT = {"model": "router", "messages": [{"role": "user", "content": MATH}]}
ROUTECAST = str(Path(sys.executable).with_name("routecast"))
REDIS_SERVER = shutil.which("redis-server")
#: why the Redis tests cannot run here (None: they can); CI installs both (.ci/run, the test extra)
REDIS_MISSING = ("redis-server is not installed (apt-get install redis-server; .ci/run installs it)"
                 if REDIS_SERVER is None else None if importlib.util.find_spec("redis") else
                 "the redis client is not installed (pip install 'routecast[redis]')")


class ServeProcess:
    """``routecast serve CKPT --port P ARGS`` in its own process group; ``TMPDIR`` is the test's, so
    the server's temporary folder (metrics, limits) can be inspected."""

    def __init__(self, checkpoint, args: list[str], tmp: Path, *, workers: int = 1, start_timeout_s: float = 60):
        self.port = free_port()
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.workers = workers
        self.log_path = self.tmp / f"serve-{self.port}.log"
        env = {**os.environ, "TMPDIR": str(self.tmp)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        command = [ROUTECAST, "serve", str(checkpoint), "--port", str(self.port)]
        if workers != 1:
            command += ["--workers", str(workers)]
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command + args, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        self._wait_started(start_timeout_s)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_started(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}:\n{self.log()}")
            if self.log().count("Application startup complete") >= self.workers:
                try:
                    if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"serve did not start in {timeout_s} s:\n{self.log()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()
        return self.process.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class RedisServer:
    """A throw-away ``redis-server`` on 127.0.0.1 (no persistence); restartable on the same port."""

    def __init__(self, tmp: Path, port: int | None = None):
        self.port = port or free_port()
        self.tmp = Path(tmp)
        self.process = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def worker_request_counts(tmp: Path, endpoint: str, status: str | None = None) -> dict[int, float]:
    """Requests to ``endpoint`` (answered with ``status``, None: any) counted by each worker pid,
    read from the multiprocess metric files of the server whose TMPDIR is ``tmp``."""
    from prometheus_client.multiprocess import MultiProcessCollector

    counts: dict[int, float] = {}
    for path in Path(tmp).glob("routecast-serve-*/metrics/counter_*.db"):
        pid = int(path.stem.split("_")[-1])
        for metric in MultiProcessCollector.merge([str(path)], accumulate=False):
            for sample in metric.samples:
                if sample.name == "routecast_requests_total" and sample.labels.get("endpoint") == endpoint \
                        and status in (None, sample.labels.get("status")):
                    counts[pid] = counts.get(pid, 0.0) + sample.value
    return counts


def metric_total(text: str, name: str, **labels) -> float:
    """Sum of the samples of ``name`` in a Prometheus text page whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def hammer_route(url: str, seconds: float, threads: int) -> tuple[list[int], float]:
    """POST /v1/route from ``threads`` threads for ``seconds``, a new connection per request (so the
    kernel spreads them over the workers); the statuses and the seconds from first to last.
    Offered load must exceed twice what the limit admits, else per-worker limits would pass too."""
    statuses: list[int] = []
    lock = threading.Lock()
    start = time.monotonic()

    def loop(thread: int):
        i = 0
        with httpx.Client(timeout=10, headers={"connection": "close"}) as client:
            while time.monotonic() - start < seconds:
                status = client.post(url + "/v1/route", json={"prompt": f"hello {thread} {i}"}).status_code
                with lock:
                    statuses.append(status)
                i += 1

    workers = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=seconds + 60)
    return statuses, time.monotonic() - start
