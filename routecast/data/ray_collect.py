"""``routecast collect --engine ray``: the cells of a collect run sent from Ray tasks, one per shard.

Why Ray tasks (not Ray Data's ``map_batches``): collecting is I/O-bound and every cell carries
state that must survive a crash (its journal line). What has to scale past one machine is the
number of connections and the egress, not CPU; so the prompts are cut into ``workers`` shards and
each shard is one task that runs the *local* sender (:func:`routecast.data.collect.send_cells`:
the same official ``openai`` async client, retries with backoff on 429/5xx, price-table costs and
fsync'd journal as ``routecast collect``). There is no second copy of that logic here.

How a run goes:

* The driver (this process) checks the arguments exactly as local collect does
  (:func:`~routecast.data.collect.plan_collect`), reads every journal of ``out`` (the local one
  and the shard journals, :func:`~routecast.data.collect.read_all_journals`) and keeps the cells
  still to send. Those are split into shards by a stable hash of ``prompt_id``, so every cell of
  a prompt is in one shard.
* Limits are divided, never multiplied: with ``n`` shards, each shard gets ``1/n`` of every
  endpoint's ``concurrency`` and of the global ``--concurrency`` (as integers that sum to the
  limit: 5 over 2 shards is 3 + 2) and ``requests_per_second / n``. So ``workers`` may not exceed
  the smallest of those caps (an endpoint with ``concurrency: 1`` cannot be shared by two
  processes without a coordinator); by default it is the cluster's CPU count capped by them.
* Each shard is a Ray task (1 CPU, spread over the nodes, ``max_retries`` restarts when its
  worker dies). Each *attempt* journals into a file of its own,
  ``<out>.journals/shard-0001-of-0002.<attempt>.jsonl``; a retried attempt first reads the
  files of its shard's earlier attempts and sends only what they lack. As with a kill of local
  collect, the only cells that can be sent twice are those in flight when a worker died, and the
  log holds each cell once (the first journal record of a cell wins).
* When every shard has returned, the driver merges the journals and writes the log with
  :func:`~routecast.data.collect.write_log`: the same rows, order and columns as local collect,
  atomically. Cells that failed after their retries are handled as locally: the log is written
  with the rest and one error names the first failed cell. A shard that failed for good (an
  exception, or its worker died ``max_retries + 1`` times) ends the run with one
  :class:`CollectShardError` and writes nothing to ``out``; the journals keep every answer, so a
  rerun on either engine resumes.

Storage: ``out``'s folder must be one every node and the driver see (a shared filesystem, as for
Ray Data writing to a local path). The driver checks that it reads every record the shards report
having journaled, and says so when it does not. API keys are read on the worker
(``api_key_env``): give workers that environment (e.g. Ray's ``runtime_env`` ``env_vars``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

from routecast.data.collect import (DEFAULT_CONCURRENCY, CollectResult, plan_collect,
                                    raise_first_failure, read_all_journals, read_journal, send_cells,
                                    shard_journal_folder, write_log)
from routecast.data.ray_engine import concurrency as check_workers
from routecast.data.ray_engine import connect, import_ray
from routecast.errors import ConfigError, DataError, RoutecastError

#: restarts of a shard task whose worker process died (Ray's ``max_retries``)
MAX_TASK_RETRIES = 3
#: seconds between two looks at the shard journals for the progress bar
POLL_SECONDS = 0.5
#: seconds the driver waits for cancelled shards to end after another failed
CANCEL_WAIT_SECONDS = 30.0


class CollectShardError(RoutecastError):
    """A shard of ``collect --engine ray`` failed for good; nothing was written to the log."""


@dataclasses.dataclass(frozen=True)
class Shard:
    """What one Ray task needs to send its cells (pickled to the worker)."""

    index: int
    count: int
    todo: list  # [(PromptRow, model)] in input order
    rows: list  # the PromptRows of this shard
    names: tuple
    endpoints: dict  # model -> Endpoint, with this shard's share of the limits
    table: Any
    label: str
    concurrency: int
    retries: int
    backoff: float
    folder: str

    @property
    def prefix(self) -> str:
        return f"shard-{self.index + 1:04d}-of-{self.count:04d}."


class ShardSender:
    """Sends one shard (a Ray task calls it). A subclass may wrap :meth:`send` (the tests crash it)."""

    def __call__(self, shard: Shard) -> dict:
        folder = Path(shard.folder)
        folder.mkdir(parents=True, exist_ok=True)
        done: dict = {}
        for path in sorted(folder.glob(shard.prefix + "*.jsonl")):  # earlier attempts of this shard
            for key, record in read_journal(path, repair=False).items():
                done.setdefault(key, record)
        todo = [(p, m) for p, m in shard.todo if (p.prompt_id, m) not in done]
        journal = folder / f"{shard.prefix}{uuid.uuid4().hex[:12]}.jsonl"
        failures: list[DataError] = []
        if todo:
            self.send(shard, todo, done, journal, failures)
        return {"shard": shard.index, "sent": len(todo) - len(failures), "skipped": len(shard.todo) - len(todo),
                "failures": [(f.reason, f.path, f.row, f.column) for f in failures]}

    def send(self, shard: Shard, todo: list, done: dict, journal: Path, failures: list) -> None:
        asyncio.run(send_cells(todo, shard.rows, shard.names, shard.endpoints, done, journal, shard.table,
                               shard.label, shard.concurrency, shard.retries, shard.backoff, False, failures))


def _run_shard(sender: ShardSender, shard: Shard) -> dict:
    return sender(shard)


def share(total: int, parts: int, index: int) -> int:
    """Part ``index`` of ``total`` split into ``parts`` integers that sum to ``total``."""
    return total // parts + (1 if index < total % parts else 0)


def shard_of(prompt_id: str, count: int) -> int:
    """A prompt's shard: stable across runs and machines (not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha1(prompt_id.encode("utf-8")).digest()[:8], "big") % count


def _cap(concurrency: int, endpoints: dict) -> tuple[int, str]:
    """The most shards the limits allow, and which limit that is."""
    name, smallest = min(((n, e.concurrency) for n, e in endpoints.items()), key=lambda item: item[1])
    if concurrency <= smallest:
        return concurrency, f"--concurrency {concurrency}"
    return smallest, f"endpoint {name!r} (concurrency {smallest})"


def make_shards(todo: list, rows: list, names: tuple, endpoints: dict, *, workers: int, concurrency: int,
                **common) -> list[Shard]:
    """The cells to send, in at most ``workers`` non-empty shards by prompt id, each with its share of the limits."""
    groups: list[list] = [[] for _ in range(workers)]
    for prompt, model in todo:
        groups[shard_of(prompt.prompt_id, workers)].append((prompt, model))
    groups = [g for g in groups if g]
    count = len(groups)
    shards = []
    for index, cells in enumerate(groups):
        ids = {p.prompt_id for p, _ in cells}
        shard_endpoints = {m: dataclasses.replace(e, concurrency=share(e.concurrency, count, index),
                                                  requests_per_second=None if e.requests_per_second is None
                                                  else e.requests_per_second / count)
                           for m, e in endpoints.items()}
        shards.append(Shard(index=index, count=count, todo=cells, rows=[p for p in rows if p.prompt_id in ids],
                            names=names, endpoints=shard_endpoints, concurrency=share(concurrency, count, index),
                            **common))
    return shards


def collect_with_ray(prompts, endpoints, out: str | Path, *, prices=None, columns=None,
                     models: Sequence[str] | None = None, concurrency: int = DEFAULT_CONCURRENCY,
                     retries: int = 5, backoff: float = 0.5, workers: int | None = None,
                     ray_address: str | None = None, progress: bool = True,
                     max_task_retries: int = MAX_TASK_RETRIES, sender: ShardSender | None = None) -> CollectResult:
    """:func:`routecast.data.collect.collect` on a Ray cluster, in ``workers`` shards (see the module
    docstring); same arguments and result, plus ``workers``, ``ray_address``, ``max_task_retries``
    and ``sender`` (the :class:`ShardSender` each task runs; a subclass can inject faults)."""
    check_workers(workers)
    if isinstance(max_task_retries, bool) or not isinstance(max_task_retries, int) or max_task_retries < 0:
        raise ConfigError(f"max_task_retries must be an integer >= 0, got {max_task_retries!r}")
    out, table, chosen, rows, label = plan_collect(prompts, endpoints, out, prices=prices, columns=columns,
                                                   models=models, concurrency=concurrency, retries=retries,
                                                   backoff=backoff)
    cap, limit = _cap(concurrency, chosen)
    if workers is not None and workers > cap:
        raise ConfigError(f"workers={workers} shards cannot share {limit} without exceeding it (each shard gets "
                          f"its share of every limit): use workers <= {cap} or raise the limit")
    import_ray()  # the engine was asked for: say it is missing even when there is nothing left to send
    start = time.perf_counter()
    folder = shard_journal_folder(out.resolve())
    done = read_all_journals(out)
    names = tuple(chosen)
    todo = [(p, m) for p in rows for m in names if (p.prompt_id, m) not in done]
    resumed = len(rows) * len(names) - len(todo)
    failures: list[DataError] = []
    shards: list[Shard] = []
    if todo:
        ray = connect(ray_address)
        if workers is None:
            workers = max(1, min(cap, int(ray.cluster_resources().get("CPU", 1))))
        shards = make_shards(todo, rows, names, chosen, workers=workers, concurrency=concurrency, table=table,
                             label=label, retries=retries, backoff=backoff, folder=str(folder))
        results = _run(ray, shards, sender or ShardSender(), max_task_retries, folder, rows, names, done, progress)
        done = read_all_journals(out)
        _check_visible(results, shards, done, folder)
        failures = [DataError(reason, path=path, row=row, column=column)
                    for result in results for reason, path, row, column in result["failures"]]
    write_log(out, rows, names, done)
    result = CollectResult(out=out, journal=folder, prompts=len(rows), models=names,
                           cells=sum((p.prompt_id, m) in done for p in rows for m in names),
                           resumed_cells=resumed, sent_cells=len(todo) - len(failures),
                           failed=[str(f) for f in failures], seconds=time.perf_counter() - start,
                           shards=len(shards))
    raise_first_failure(failures)
    return result


def _run(ray, shards: list[Shard], sender: ShardSender, max_task_retries: int, folder: Path, rows, names,
         done: dict, progress: bool) -> list[dict]:
    """Every shard as a Ray task; their results, or one CollectShardError for the first that failed."""
    remote = ray.remote(_run_shard).options(num_cpus=1, max_retries=max_task_retries, retry_exceptions=False,
                                            scheduling_strategy="SPREAD")
    refs = {remote.remote(sender, shard): shard for shard in shards}
    pending = list(refs)
    results: list[dict] = []
    tail = _Progress(folder, rows, names, done, progress)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_SECONDS)
            for ref in ready:
                try:
                    results.append(ray.get(ref))
                except Exception as exc:  # noqa: BLE001 - any task failure ends the run with one line
                    shard = refs[ref]
                    raise CollectShardError(
                        f"collect on ray: shard {shard.index + 1} of {shard.count} failed "
                        f"({_reason(exc, max_task_retries)}); nothing was written to the log, the answers so "
                        f"far are journaled in {folder}: rerun to resume") from None
            tail.update()
    finally:
        for ref in pending:  # a failed shard or Ctrl-C: stop the others (their journals are fsync'd)
            ray.cancel(ref, force=True)
        if pending:  # and let them end, so no process still appends when a rerun reads the journals
            ray.wait(pending, num_returns=len(pending), timeout=CANCEL_WAIT_SECONDS)
        tail.close()
    return results


def _reason(exc: BaseException, max_task_retries: int) -> str:
    from ray import exceptions as rex

    if isinstance(exc, rex.RayTaskError):
        cause = getattr(exc, "cause", None)
        if cause is not None:
            text = str(cause).strip().splitlines()
            return f"{type(cause).__name__}: {text[-1] if text else ''}".rstrip(": ")
    if isinstance(exc, (rex.WorkerCrashedError, rex.NodeDiedError, rex.ActorDiedError)):
        return f"its worker died {max_task_retries + 1} times"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _check_visible(results: list[dict], shards: list[Shard], done: dict, folder: Path) -> None:
    """Every record a shard reported journaled must be readable here, or the storage is not shared."""
    for result in results:
        shard = shards[result["shard"]]
        found = sum((p.prompt_id, m) in done for p, m in shard.todo)
        if found < result["sent"] + result["skipped"]:
            raise CollectShardError(
                f"collect on ray: shard {shard.index + 1} of {shard.count} journaled "
                f"{result['sent'] + result['skipped']} cells but this process reads {found} in {folder}: put the "
                "output on storage every Ray node and the driver share")


class _Progress:
    """A progress bar in prompts, fed by reading the shard journals' new complete lines."""

    def __init__(self, folder: Path, rows, names, done: dict, enabled: bool):
        self.folder = folder
        self.enabled = enabled
        self.offsets: dict[Path, int] = {}
        self.seen = set(done)
        self.names = set(names)
        self.remaining = {p.prompt_id: sum((p.prompt_id, m) not in done for m in names) for p in rows}
        self.bar = None
        if enabled:
            from routecast.progress import Progress

            self.bar = Progress("collect (ray)", total=len(rows), unit="prompts",
                                initial=sum(1 for v in self.remaining.values() if v == 0)).__enter__()

    def update(self) -> None:
        if not self.enabled or not self.folder.is_dir():
            return
        import json

        for path in sorted(self.folder.glob("*.jsonl")):
            offset = self.offsets.get(path, 0)
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
            end = data.rfind(b"\n") + 1
            self.offsets[path] = offset + end
            for line in data[:end].decode("utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                    key = (record["prompt_id"], record["model"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
                if key in self.seen or key[0] not in self.remaining or key[1] not in self.names:
                    continue
                self.seen.add(key)
                self.remaining[key[0]] -= 1
                if self.remaining[key[0]] == 0:
                    self.bar.advance()

    def close(self) -> None:
        if self.bar is not None:
            self.update()
            self.bar.__exit__(None, None, None)
