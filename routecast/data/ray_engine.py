"""The plumbing every ``--engine ray`` command shares: connect, read prompt shards, write the result whole.

Why Ray Data and not a home-made scheduler: users who outgrow one machine already run a Ray
cluster, and Ray Data gives what a data-parallel pass over millions of prompts needs: reading
Parquet/JSONL shards in parallel, actor pools whose actors load a checkpoint or encoder once
(``map_batches`` with a class), task retries when a worker dies, and sharded Parquet output.

What routecast adds around it:

* :func:`connect` never chooses a cluster for the user: an already initialised Ray is used as is
  (a test's ``ray.init(num_cpus=2)``), else ``ray.init(address)`` with the user's address (None:
  Ray's own default, ``$RAY_ADDRESS`` or a new local cluster). A ``host:port`` that does not
  answer is refused in seconds, before Ray's long connection retries; Ray not installed is one
  :class:`~routecast.errors.MissingExtraError` naming the extra.
* :func:`read_prompts` reads ``.parquet`` / ``.jsonl`` files or a folder of them; every row needs an
  ``id`` (rows are processed out of order) and a ``prompt`` string.
* :func:`write_complete` writes into ``OUT.partial-<uuid>/`` and renames it to ``OUT`` only once the
  row count matches the input and every id is unique, so a failed or half-written run never
  looks complete. Ray names output files by write task, and a retried task rewrites its own
  files, so a retry does not duplicate rows; the id check at the end proves it (and a duplicate,
  should one appear, is dropped there, keeping the first).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

from routecast.atomic import replace_folder
from routecast.errors import ConfigError, DataError, MissingExtraError

RAY_EXTRA_INSTALL = "pip install 'routecast[ray]'"
INPUT_SUFFIXES = (".parquet", ".jsonl")
#: reads and writes take no CPU slot: the actors hold every CPU (one each), and an I/O task waiting
#: for a CPU an actor holds would deadlock the pipeline
IO_TASK = {"num_cpus": 0}


def actor_pool(ray, workers: int | None):
    """``workers`` actors, or an autoscaling pool of 1 to the cluster's CPUs."""
    if workers is not None:
        return ray.data.ActorPoolStrategy(size=workers)
    return ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, int(ray.cluster_resources().get("CPU", 1))))
#: seconds a ``host:port`` Ray address gets to accept a TCP connection
PROBE_SECONDS = 5.0


def import_ray(what: str = "engine 'ray'"):
    """``ray`` and ``ray.data``, or one clear error naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401 - the data extra of ray
    except ModuleNotFoundError as exc:
        raise MissingExtraError(f"{what} needs Ray Data ({exc.name} is not installed): {RAY_EXTRA_INSTALL}") from None
    return ray


def _probe(address: str) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) nobody listens on, in seconds."""
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" or a form Ray resolves itself
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=PROBE_SECONDS):
            pass
    except OSError as exc:
        raise ConfigError(f"ray_address {address!r} does not answer ({exc.strerror or exc}); start the cluster "
                          "(`ray start --head`) or give the address it printed") from None


def connect(address: str | None = None):
    """The Ray module, initialised: the caller's existing session, or ``ray.init(address)``."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address:
        _probe(address)
    try:
        ray.init(address=address or None, log_to_driver=False, include_dashboard=False,
                 configure_logging=False)
    except ConnectionError as exc:
        raise ConfigError(f"ray_address {address!r}: cannot connect to a Ray cluster ({exc})") from None
    return ray


def input_files(path: str | os.PathLike) -> list[Path]:
    """``path`` itself, or the ``.parquet``/``.jsonl`` files of a folder (sorted); one format only."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in INPUT_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"no {' or '.join(INPUT_SUFFIXES)} files in the folder", path=str(path))
    elif path.is_file():
        files = [path]
    else:
        raise DataError("input not found", path=str(path))
    kinds = {p.suffix for p in files}
    if len(kinds) > 1 or not kinds <= set(INPUT_SUFFIXES):
        raise DataError(f"input must be {' or '.join(INPUT_SUFFIXES)} files of one kind, got "
                        f"{', '.join(sorted(kinds))}", path=str(path))
    return files


def read_prompts(ray, path: str | os.PathLike):
    """A Ray Dataset of the ``id`` and ``prompt`` columns of ``path`` (checked on the schema)."""
    files = input_files(path)
    names = [str(p) for p in files]
    if files[0].suffix == ".parquet":
        dataset = ray.data.read_parquet(names, columns=["id", "prompt"] if _has_columns(files[0]) else None,
                                        num_cpus=0)
    else:
        dataset = ray.data.read_json(names, lines=True, num_cpus=0)
    columns = set(dataset.schema().names)
    missing = [c for c in ("id", "prompt") if c not in columns]
    if missing:
        raise DataError(f"column {missing[0]!r} missing (engine 'ray' needs an id and a prompt on every row: "
                        "rows are processed out of order)", path=str(path), column=missing[0])
    return dataset.select_columns(["id", "prompt"])


def _has_columns(path: Path) -> bool:
    import pyarrow.parquet as pq

    names = set(pq.read_schema(path).names)
    return {"id", "prompt"} <= names


def partial_folder(out: Path) -> Path:
    return out.with_name(f"{out.name}.partial-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def complete_folder(out: str | os.PathLike):
    """Yield a fresh temporary folder next to ``out``; on success it replaces ``out``, on any
    error (or Ctrl-C) it is removed, so ``out`` holds a complete result or what it held before."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = partial_folder(out)
    try:
        yield temp
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    replace_folder(temp, out)


def check_rows(folder: Path, expected: int, *, id_column: str = "id") -> dict[str, Any]:
    """Prove the Parquet files of ``folder`` hold ``expected`` rows with unique ids; a duplicate
    id (a retried task whose first attempt also wrote) is dropped, keeping the first. Returns
    ``{"rows": ..., "duplicates_dropped": ...}``; fewer rows than expected is an error."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted(folder.glob("*.parquet"))
    ids = [pq.read_table(f, columns=[id_column]).column(id_column) for f in files]
    total = sum(len(c) for c in ids)
    unique = len(pc.unique(pa.chunked_array([c for col in ids for c in col.chunks]))) if ids else 0
    dropped = 0
    if unique != total:
        seen: set = set()
        for f in files:
            table = pq.read_table(f)
            keep = []
            for value in table.column(id_column).to_pylist():
                keep.append(value not in seen)
                seen.add(value)
            if not all(keep):
                dropped += keep.count(False)
                pq.write_table(table.filter(pa.array(keep)), f)
        total -= dropped
    if total != expected:
        raise DataError(f"the engine wrote {total} rows for {expected} input rows; the output was not kept",
                        path=str(folder))
    return {"rows": total, "duplicates_dropped": dropped}


def concurrency(workers: int | None) -> int | None:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    return workers


