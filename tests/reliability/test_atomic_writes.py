"""A writer killed half way leaves the old file or the new one, never a broken one.

A subprocess rewrites a target over and over (a large plain file, then a router checkpoint)
while the test SIGKILLs it at varying moments; after every kill the target must read back as
one complete version, and checkpoints must still pass their hash check.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

KILLS = 12

FILE_WRITER = textwrap.dedent("""
    import sys
    from routecast.atomic import write_bytes
    target = sys.argv[1]
    i = 0
    print("ready", flush=True)
    while True:
        # 8 MB of one repeated byte: a torn write would mix bytes or be short
        write_bytes(target, bytes([65 + i % 26]) * (8 * 1024 * 1024))
        i += 1
""")

CHECKPOINT_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from routecast.data.outcome_log import OutcomeLog
    from routecast.core.checkpoint import save_checkpoint
    from routecast.core.registry import make_router
    rng = np.random.default_rng(0)
    n = 400
    log = OutcomeLog([f"p{i}" for i in range(n)], [f"prompt number {i} about topic {i % 7}" for i in range(n)],
                     ["a", "b"], rng.random((n, 2)), np.tile([1.0, 2.0], (n, 1)))
    target = sys.argv[1]
    k = 1
    while True:
        router = make_router("knn", k=k, encoder="hashing:dim=4096").fit(log)
        save_checkpoint(router, target)
        if k == 1:
            print("ready", flush=True)  # one whole checkpoint exists; kills now hit rewrites
        k = k % 50 + 1
""")


def _kill_loop(script: str, target: Path, check, tmp_path: Path) -> int:
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            time.sleep(float(rng.uniform(0.05, 0.6)))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        if target.exists():
            check(target)
            checked += 1
    return checked


@pytest.mark.slow
def test_killed_file_writer_leaves_a_whole_file(tmp_path):
    target = tmp_path / "big.bin"

    def check(path: Path):
        data = path.read_bytes()
        assert len(data) == 8 * 1024 * 1024, f"torn file: {len(data)} bytes"
        assert data.count(data[:1]) == len(data), "file mixes two versions"

    assert _kill_loop(FILE_WRITER, target, check, tmp_path) >= KILLS - 2
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "big.bin"]
    # temp files of killed writers may remain (they never replace the target); they are hidden
    assert all(name.startswith(".") for name in leftovers), leftovers


@pytest.mark.slow
def test_killed_checkpoint_writer_leaves_a_loadable_checkpoint(tmp_path):
    from routecast.core.checkpoint import load_checkpoint

    target = tmp_path / "ckpt"
    seen_k = set()

    def check(path: Path):
        router = load_checkpoint(path)  # verifies every sha256 and the file list
        seen_k.add(router.k)

    checked = _kill_loop(CHECKPOINT_WRITER, target, check, tmp_path)
    assert checked == KILLS
    assert len(seen_k) >= 2, f"the kills never landed between two versions: {seen_k}"
