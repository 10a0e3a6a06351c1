"""A real server started as a subprocess on 127.0.0.1 (``routecast serve``, ``mlflow ui``), bounded in time.

:func:`server_process` starts the command in its own session, waits until ``GET {base}/health``
answers 200 (failing the test with the server's output if it exits or the wait runs out) and, on
exit, stops the whole session it leads (mlflow ui runs uvicorn and a job runner as children).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator, Sequence

import pytest


@contextmanager
def server_process(command: Sequence[str], base_url: str, *, startup_timeout: float, env: dict | None = None,
                   cwd=None) -> Iterator[subprocess.Popen]:
    import httpx

    proc = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{command[0]} exited with {proc.returncode}: {proc.stdout.read()[-2000:]!r}")
            try:
                if httpx.get(f"{base_url}/health", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{' '.join(map(str, command[:2]))} did not answer /health within {startup_timeout:.0f} s")
            time.sleep(0.5)
        yield proc
    finally:
        _stop_session(proc)
        proc.stdout.close()


def _stop_session(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
