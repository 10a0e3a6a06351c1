"""``collect``: build an outcome log from your own endpoints -- every prompt to every model.

Many users have prompts and a few OpenAI-compatible endpoints but no outcomes yet. ``collect``
sends each prompt of a prompt file to each endpoint (official ``openai`` async client; bounded
concurrency and a rate limit per endpoint, a global cap on requests in flight, retries with
backoff on 429/5xx: :mod:`routecast.data.chat_calls`) and writes the long-format log: one row per
(prompt, model) with ``prompt_id``, ``prompt``, ``model``, ``score`` (empty until
``routecast score`` fills it), ``cost`` (from the price table and the endpoint's token usage),
``response``, ``tokens_in``, ``tokens_out``, ``latency_s`` and every other column of the prompt
file (a ``reference`` answer for scoring, a ``benchmark``...).

The prompt file is any table :func:`routecast.data.load_log` reads (column mappings and dataset
cards included) with a ``prompt`` column, or OpenAI chat ``messages`` (sent as they are; the
logged prompt is :func:`routecast.data.chat_text.routing_text` of them).

Resumable, nothing lost, nothing sent twice: every answer is appended to a journal
(``<out>.journal.jsonl``, one JSON line per (prompt_id, model)) as soon as it arrives, and counts
as done once it is fsync'd (answers arriving during one fsync share the next: group commit). A rerun with the same arguments reads the journal and
sends only the cells it lacks; a line torn by a kill mid-write is cut off. The only requests that
can be repeated are the ones in flight at the moment of a kill (their answers never reached the
disk). The final log is written atomically from the journal, so a reader sees the old log or the
complete new one. Cells that still fail after their retries (or an endpoint answering garbage)
are left out of the journal, the log is written with everything else, and one error names the
prompt file, the row, the model and what went wrong; a rerun tries those cells again.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from routecast.jsonable import to_jsonable
from routecast.errors import DataError

JOURNAL_SUFFIX = ".journal.jsonl"
SHARD_JOURNALS_SUFFIX = ".journals"
DEFAULT_CONCURRENCY = 32
CALL_FIELDS = ("response", "tokens_in", "tokens_out", "latency_s", "cost", "finish_reason", "attempts")


@dataclass
class CollectResult:
    out: Path
    journal: Path
    prompts: int
    models: tuple[str, ...]
    cells: int
    resumed_cells: int
    sent_cells: int
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    shards: int = 0  # Ray tasks that sent cells (``collect --engine ray``); 0 for the local engine


@dataclass(frozen=True)
class PromptRow:
    prompt_id: str
    prompt: str
    messages: list
    row: int
    meta: dict


def journal_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + JOURNAL_SUFFIX)


def shard_journal_folder(out: str | Path) -> Path:
    """Where ``collect --engine ray`` journals: one file per shard attempt (:mod:`routecast.data.ray_collect`)."""
    out = Path(out)
    return out.with_name(out.name + SHARD_JOURNALS_SUFFIX)


def read_all_journals(out: str | Path) -> dict[tuple[str, str], dict]:
    """Every completed cell of ``out``: its journal and any shard journals of a Ray run, so a run
    started on one engine resumes on the other (the first record of a cell wins)."""
    done = read_journal(journal_path(out))
    folder = shard_journal_folder(out)
    if folder.is_dir():
        for path in sorted(folder.glob("*.jsonl")):
            for key, record in read_journal(path).items():
                done.setdefault(key, record)
    return done


def read_prompts(source, *, columns=None) -> tuple[list[PromptRow], str]:
    """The prompt file as rows to send (see the module docstring)."""
    from routecast.data.chat_text import NoRoutingText, routing_text
    from routecast.data.formats import ROW
    from routecast.data.loaders import as_text, hash_ids, read_source

    frame, label = read_source(source, columns)
    rows = frame[ROW].to_numpy()
    if "prompt" in frame.columns:
        prompts = as_text(frame["prompt"], rows, label, "prompt", allow_blank=False)
        messages = [[{"role": "user", "content": p}] for p in prompts]
    elif "messages" in frame.columns:
        messages = list(frame["messages"].to_numpy(dtype=object))
        prompts = np.empty(len(frame), dtype=object)
        for i, (conv, row) in enumerate(zip(messages, rows)):
            try:
                prompts[i] = routing_text(conv)
            except NoRoutingText as exc:
                raise DataError(str(exc), path=label, row=int(row), column="messages") from None
    else:
        raise DataError("a prompt file needs a 'prompt' column (or OpenAI chat 'messages')", path=label,
                        column="prompt")
    ids = (as_text(frame["prompt_id"], rows, label, "prompt_id", allow_blank=False)
           if "prompt_id" in frame.columns else hash_ids(prompts))
    seen: dict[str, int] = {}
    meta_cols = [c for c in frame.columns if c not in ("prompt", "prompt_id", "messages", ROW, *CALL_FIELDS,
                                                       "model", "score")]
    out = []
    for i, pid in enumerate(ids):
        if pid in seen:
            raise DataError(f"prompt_id {pid!r} appears twice (first at row {seen[pid]})", path=label,
                            row=int(rows[i]), column="prompt_id")
        seen[pid] = int(rows[i])
        meta = {c: to_jsonable(frame[c].iloc[i], fallback_repr=True) for c in meta_cols}
        out.append(PromptRow(str(pid), str(prompts[i]), messages[i], int(rows[i]), meta))
    return out, label


def read_journal(path: Path, *, repair: bool = True) -> dict[tuple[str, str], dict]:
    """Completed cells in the journal; a torn last line (a kill mid-write) is cut off the file
    (``repair=False``: only skipped, for a journal another process may still be appending to)."""
    done: dict[tuple[str, str], dict] = {}
    if not path.exists():
        return done
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data) and repair:  # the last line never got its newline: it was being written at the kill
        with open(path, "r+b") as handle:
            handle.truncate(end)
            os.fsync(handle.fileno())
    for number, line in enumerate(data[:end].decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key = (record["prompt_id"], record["model"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError("journal line is not a collect record; delete the journal to start over",
                            path=str(path), row=number) from None
        done[key] = record
    return done


class _Journal:
    """Append-only journal with group commit: records that arrive while an fsync runs are written
    and fsync'd together in the next one (in a thread, so the event loop keeps sending). A record
    counts as done only once its fsync returned."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "a", encoding="utf-8")
        self.waiting: list[tuple[str, asyncio.Future]] = []
        self.flusher: asyncio.Task | None = None

    async def append(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"
        done = asyncio.get_running_loop().create_future()
        self.waiting.append((line, done))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            try:
                self.handle.write("".join(line for line, _ in batch))
                self.handle.flush()
                await asyncio.to_thread(os.fsync, self.handle.fileno())
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                raise
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def close(self) -> None:
        if self.flusher is not None:
            await self.flusher
        self.handle.close()


def collect(prompts, endpoints, out: str | Path, *, prices=None, columns=None, models: Sequence[str] | None = None,
            concurrency: int = DEFAULT_CONCURRENCY, retries: int = 5, backoff: float = 0.5,
            progress: bool = True) -> CollectResult:
    """Send every prompt of ``prompts`` to every endpoint and write the long-format log to ``out``.

    Parameters
    ----------
    prompts: the prompt file (path or built-in name; see the module docstring).
    endpoints: an endpoints file or mapping (:mod:`routecast.data.endpoints`).
    out: the log to write (``.jsonl``, ``.csv`` or ``.parquet``); its journal sits beside it.
    prices: a price table (USD per million input/output tokens per model; a dict, a JSON path or a
        :class:`~routecast.data.PriceTable`) for the ``cost`` column; without one, cost is empty.
    models: only these endpoints (default: all of the file).
    concurrency: requests in flight over all endpoints (each endpoint also has its own cap).
    retries, backoff: retries per cell on 429/5xx/connection errors, first backoff in seconds.
    """
    import time

    out, table, chosen, rows, label = plan_collect(prompts, endpoints, out, prices=prices, columns=columns,
                                                   models=models, concurrency=concurrency, retries=retries,
                                                   backoff=backoff)
    journal = journal_path(out)
    done = read_all_journals(out)
    names = tuple(chosen)
    start = time.perf_counter()
    todo = [(p, m) for p in rows for m in names if (p.prompt_id, m) not in done]
    resumed = sum((p.prompt_id, m) in done for p in rows for m in names)
    failures: list[DataError] = []
    if todo:
        asyncio.run(send_cells(todo, rows, names, chosen, done, journal, table, label, concurrency, retries,
                               backoff, progress, failures))
    write_log(out, rows, names, done)
    result = CollectResult(out=out, journal=journal, prompts=len(rows), models=names,
                           cells=sum((p.prompt_id, m) in done for p in rows for m in names),
                           resumed_cells=resumed, sent_cells=len(todo) - len(failures),
                           failed=[str(f) for f in failures], seconds=time.perf_counter() - start)
    raise_first_failure(failures)
    return result


def plan_collect(prompts, endpoints, out, *, prices, columns, models, concurrency, retries, backoff):
    """The checked arguments of a collect run, shared by both engines: ``(out, price table,
    {model: Endpoint}, prompt rows, prompt file label)``."""
    out, table, chosen = check_collect(endpoints, out, prices=prices, models=models, concurrency=concurrency,
                                       retries=retries, backoff=backoff)
    rows, label = read_prompts(prompts, columns=columns)
    return out, table, chosen, rows, label


def check_collect(endpoints, out, *, prices, models, concurrency, retries, backoff):
    """The checked sending arguments of any collect run (every prompt, or the cells ``collect
    --fill`` chose): ``(out, price table, {model: Endpoint})``."""
    from routecast.data.costs import PriceTable
    from routecast.data.endpoints import load_endpoints
    from routecast.data.formats import EXTENSIONS

    if concurrency < 1:
        raise DataError(f"concurrency must be >= 1, got {concurrency}")
    if retries < 0 or backoff < 0:
        raise DataError("retries and backoff must be >= 0")
    out = Path(out)
    if EXTENSIONS.get(out.suffix.lower()) not in ("jsonl", "csv", "parquet"):
        raise DataError("the collected log must be a .jsonl, .csv or .parquet file", path=str(out))
    table = PriceTable.coerce(prices)
    chosen = load_endpoints(endpoints)
    if models:
        from routecast.data.names import model_name

        missing = [m for m in models if model_name(m) not in chosen]
        if missing:
            from routecast.errors import ConfigError

            raise ConfigError(f"models {missing} are not in the endpoints file; it has {sorted(chosen)}")
        chosen = {model_name(m): chosen[model_name(m)] for m in models}
    return out, table, chosen


def raise_first_failure(failures: list[DataError]) -> None:
    """One error for the cells that failed: the first in input order (completion order depends on
    timing), with how many more there are."""
    if not failures:
        return
    first = min(failures, key=lambda f: (f.row if f.row is not None else 0, str(f)))
    more = f" ({len(failures) - 1} more cells failed; rerun to retry them)" if len(failures) > 1 else \
        " (rerun to retry it)"
    raise DataError(first.reason + more, path=first.path, row=first.row, column=first.column)


async def send_cells(todo, rows, names, endpoints, done, journal_file, table, label, concurrency, retries,
                     backoff, progress, failures) -> None:
    """Send the ``todo`` cells, journal each answer in ``journal_file`` and record it in ``done``;
    cells that fail after their retries go to ``failures``. The one sender of both engines (a
    ``--engine ray`` shard runs it on its cells with its share of the limits)."""
    from routecast.data.chat_calls import CallFailed, EndpointSlot, chat
    from routecast.progress import Progress

    slots = {m: EndpointSlot(endpoints[m]) for m in names}
    global_slots = asyncio.Semaphore(concurrency)
    remaining = Counter(p.prompt_id for p, _ in todo)
    bar = Progress("collect", total=len(rows), initial=len(rows) - len(remaining),
                   unit="prompts", enabled=progress).__enter__()  # closed in the finally below
    journal = _Journal(journal_file)

    async def one(prompt: PromptRow, model: str) -> None:
        try:
            result = await chat(slots[model], prompt.messages, retries=retries, backoff=backoff,
                                global_slots=global_slots)
        except CallFailed as exc:
            failures.append(DataError(f"model {model!r}: {exc.reason}", path=label, row=prompt.row,
                                      column=exc.field))
            return
        record = {"prompt_id": prompt.prompt_id, "model": model, "response": result.text,
                  "tokens_in": result.tokens_in, "tokens_out": result.tokens_out,
                  "latency_s": round(result.latency_s, 6), "cost": _cost(table, model, prompt, result),
                  "finish_reason": result.finish_reason, "attempts": result.attempts}
        await journal.append(record)
        done[(prompt.prompt_id, model)] = record
        remaining[prompt.prompt_id] -= 1
        if remaining[prompt.prompt_id] == 0:
            bar.advance()

    try:
        # a bounded number of tasks alive at once (not one per cell of a million-cell run)
        alive = asyncio.Semaphore(max(concurrency, sum(s.endpoint.concurrency for s in slots.values())) * 2)
        tasks: set[asyncio.Task] = set()
        crashed: list[BaseException] = []

        def finished(task: asyncio.Task) -> None:
            alive.release()
            tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                crashed.append(task.exception())

        for prompt, model in todo:
            await alive.acquire()
            if crashed:
                break
            task = asyncio.create_task(one(prompt, model))
            tasks.add(task)
            task.add_done_callback(finished)
        if tasks:
            await asyncio.wait(set(tasks))
        if crashed:
            raise crashed[0]
    finally:
        await journal.close()
        bar.__exit__(None, None, None)
        for slot in slots.values():
            await slot.close()


def _cost(table, model: str, prompt: PromptRow, result) -> float | None:
    if table is None or model not in table:
        return None
    from routecast.data.costs import estimate_tokens

    t_in = result.tokens_in if result.tokens_in is not None else estimate_tokens([prompt.prompt])[0]
    t_out = result.tokens_out if result.tokens_out is not None else estimate_tokens([result.text])[0]
    return float(table.call_cost(model, [t_in], [t_out])[0])


def write_log(out: Path, rows: list[PromptRow], names: tuple[str, ...], done: dict) -> int:
    """The long-format log of every completed cell, prompt-major, written atomically."""
    records = []
    for prompt in rows:
        for model in names:
            call = done.get((prompt.prompt_id, model))
            if call is None:
                continue
            record = {"prompt_id": prompt.prompt_id, "prompt": prompt.prompt, "model": model, "score": None}
            record.update({k: call.get(k) for k in CALL_FIELDS})
            record.update({k: v for k, v in prompt.meta.items() if k not in record})
            records.append(record)
    write_records(out, records)
    return len(records)


def write_records(out: Path, records: list[dict]) -> None:
    """Write long-format records to ``.jsonl`` / ``.csv`` / ``.parquet``, atomically."""
    from routecast.atomic import atomic_open, atomic_path

    kind = out.suffix.lower()
    if kind in (".jsonl", ".ndjson"):
        with atomic_open(out, "w") as handle:
            for record in records:
                handle.write(json.dumps(to_jsonable(record), ensure_ascii=False, allow_nan=False) + "\n")
        return
    import pandas as pd

    frame = pd.DataFrame.from_records(records)
    with atomic_path(out) as tmp:
        if kind == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
