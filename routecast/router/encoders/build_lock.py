"""An inter-process lock around one-time builds (static distillation, ONNX export) in the cache dir.

Why: several processes (optuna workers, a CLI run next to a server) may ask for ``static`` or
``onnx`` at once; without a lock each would spend tens of seconds building the same files. The
result would still be correct (builds are atomic renames), so where ``fcntl`` is missing the lock
silently degrades to no lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def build_lock(target: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``<target>.lock`` (an empty marker file next to ``target``)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.parent / f".{target.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
