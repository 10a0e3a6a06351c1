"""Shard senders of ``collect --engine ray`` that fail on purpose, for the retry and resume tests.

In a module (not a test file) so the tests can ship it to Ray workers by value
(``ray.cloudpickle.register_pickle_by_value``).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from routecast.data.ray_collect import ShardSender


def _first(marker: Path) -> bool:
    """True exactly once across processes and retries (the marker file says it already happened)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


class CrashOnceShardSender(ShardSender):
    """The first attempt to get here kills its own worker process (as an OOM kill or a lost node
    would) once its journal holds ``after`` answers; Ray restarts the task, which must resume."""

    def __init__(self, marker: str, after: int = 5):
        self.marker, self.after = marker, after

    def send(self, shard, todo, done, journal, failures):
        if _first(Path(self.marker)):
            def watch():
                while True:
                    if journal.exists() and journal.read_bytes().count(b"\n") >= self.after:
                        os._exit(1)
                    time.sleep(0.002)

            threading.Thread(target=watch, daemon=True).start()
        return super().send(shard, todo, done, journal, failures)


class FailAfterShardSender(ShardSender):
    """Every attempt of shard 1 sends its first ``after`` cells, then raises: an application error,
    which Ray does not retry, so the run must fail with nothing written and resume later."""

    def __init__(self, after: int = 4):
        self.after = after

    def send(self, shard, todo, done, journal, failures):
        if shard.index != 0:
            return super().send(shard, todo, done, journal, failures)
        super().send(shard, todo[:self.after], done, journal, failures)
        raise ValueError("injected failure after the first cells")
