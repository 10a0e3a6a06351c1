"""The data side of ``collect --fill``: a traffic log's missing cells, sent and appended to the log.

A traffic log holds one model per request; ``collect --fill`` asks a few more (prompt, model)
cells of it, chosen by value of information (:mod:`routecast.training.fill`, which may import
routers; this module may not). Here:

* :func:`read_fill_target` reads the log as :func:`routecast.data.load_log` does (column
  mapping, dataset card, prices) and says which cells a row of the file already holds (scored
  or not: a filled cell waiting for ``routecast score`` is never requested again) and which
  prompts must not be sent again: a truthy ``do_not_resend`` column on any of the prompt's rows,
  or ``do_not_resend: true`` in the dataset card (then no prompt may be).
* :func:`collect_cells` sends the chosen cells through the one sender of ``collect``
  (:func:`routecast.data.collect.send_cells`: per-endpoint concurrency and rate limits,
  retries, a journal ``<out>.journal.jsonl`` so a rerun with the same arguments sends only what
  it lacks and nothing twice) and writes the log with one new row per answered cell appended,
  atomically. The new rows carry the prompt's text, id (when the file has a ``prompt_id``
  column), the prompt-level columns of the log (a ``reference`` answer, a ``benchmark``...),
  the model, an empty ``score`` (for ``routecast score``), ``response``, ``cost`` and the call
  fields (never a column about one request: ``propensity``, ``feedback``...), under the user's
  own column names where a mapping renamed them. A ``.jsonl`` log
  keeps its lines byte for byte; a ``.csv``/``.parquet`` one is rewritten with the rows added.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from routecast.data.collect import (CALL_FIELDS, DEFAULT_CONCURRENCY, CollectResult, PromptRow, check_collect,
                                    journal_path, raise_first_failure, read_all_journals, send_cells,
                                    write_records)
from routecast.data.outcome_log import OutcomeLog
from routecast.errors import DataError

#: the column (and dataset-card setting) marking prompts that must never be sent to a model again
DO_NOT_RESEND = "do_not_resend"
_TRUE_WORDS = {"1", "true", "yes", "y", "t"}
#: columns about one request, not the prompt: never copied onto a filled row
PER_REQUEST = ("propensity", "feedback", "request_id", "timestamp", "user_id", "judge_output", "judge_rating",
               "count")


@dataclass(frozen=True)
class FillTarget:
    """A traffic log ready to be filled.

    log: the log as loaded (scores NaN where not logged).
    present: (n, m) bool, a row of the file holds the cell (scored or waiting for a score).
    blocked: (n,) bool, the prompt must not be sent again.
    path, label: the file and its name in messages; kind: ``jsonl``, ``csv`` or ``parquet``.
    user_columns: routecast name -> the file's own column (the mapping that was applied).
    has_prompt_id: the file has a ``prompt_id`` column (then filled rows get one too).
    rows: (n,) the file row of each prompt's first line (what an error about the prompt names).
    """

    log: OutcomeLog
    present: np.ndarray
    blocked: np.ndarray
    path: Path
    label: str
    kind: str
    user_columns: dict
    has_prompt_id: bool
    rows: np.ndarray


def truthy(values) -> np.ndarray:
    """(n,) bool: True, non-zero numbers and yes/true/1 words; empty cells are False."""
    out = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        if isinstance(v, (bool, np.bool_, int, np.integer, float, np.floating)):
            out[i] = bool(v)
        else:
            out[i] = str(v).strip().lower() in _TRUE_WORDS
    return out


def read_fill_target(source, *, prices=None, columns=None) -> FillTarget:
    """The log ``source`` (a long-format ``.jsonl``/``.csv``/``.parquet`` file) and its filled,
    missing and blocked cells (see the module docstring)."""
    from routecast.data.columns import find_card, read_card
    from routecast.data.costs import PriceTable
    from routecast.data.formats import EXTENSIONS, ROW
    from routecast.data.loaders import as_text, detect_format, frame_to_log, hash_ids, read_source, resolve_source
    from routecast.data.names import model_names

    path, label = resolve_source(source)
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind not in ("jsonl", "csv", "parquet"):
        raise DataError("filling appends rows to a .jsonl, .csv or .parquet log", path=label)
    frame, label = read_source(source, columns)
    if "messages" in frame.columns and "prompt" not in frame.columns or detect_format(frame.columns) == "wide":
        raise DataError("filling appends one row per (prompt, model): the log must be in the long format "
                        "(prompt, model, score columns), not chat messages or one column per model", path=label)
    card = find_card(path)
    if card is not None and truthy([read_card(card).get(DO_NOT_RESEND)])[0]:
        raise DataError(f"the dataset card says {DO_NOT_RESEND}: no prompt of this log may be sent to a "
                        "model again, so there is nothing to fill", path=str(card), column=DO_NOT_RESEND)
    log = frame_to_log(frame, source=label, prices=PriceTable.coerce(prices))
    rows = frame[ROW].to_numpy()
    ids = (as_text(frame["prompt_id"], rows, label, "prompt_id", allow_blank=False) if "prompt_id" in frame.columns
           else hash_ids(as_text(frame["prompt"], rows, label, "prompt", allow_blank=False)))
    models = model_names(as_text(frame["model"], rows, label, "model", allow_blank=False))
    p_index = {pid: i for i, pid in enumerate(log.prompt_ids)}
    p_of_row = np.array([p_index[str(pid)] for pid in ids], dtype=np.int64)
    m_of_row = np.array([log.models.index(m) for m in models], dtype=np.int64)
    present = np.zeros(log.scores.shape, dtype=bool)
    present[p_of_row, m_of_row] = True
    first_rows = np.full(log.n_prompts, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_rows, p_of_row, rows.astype(np.int64))
    blocked = np.zeros(log.n_prompts, dtype=bool)
    if DO_NOT_RESEND in frame.columns:
        blocked[p_of_row[truthy(frame[DO_NOT_RESEND].to_numpy(dtype=object))]] = True
    return FillTarget(log, present, blocked, path, label, kind, dict(frame.attrs.get("user_columns", {})),
                      "prompt_id" in frame.columns, first_rows)


def collect_cells(target: FillTarget, cells: Sequence[tuple[int, int]], endpoints, out=None, *, prices=None,
                  concurrency: int = DEFAULT_CONCURRENCY, retries: int = 5, backoff: float = 0.5,
                  progress: bool = True) -> CollectResult:
    """Send ``cells`` ((prompt index, model index) of ``target.log``) and write ``out`` (default:
    the log itself): the log with every journaled answer it lacks appended (see the module docstring).

    A cell the file already holds, or of a blocked prompt, is refused (a bug in the chooser, not
    something to send); models are matched to the endpoints by name.
    """
    import asyncio
    import time

    log = target.log
    out = target.path if out is None else Path(out)
    cells = [(int(i), int(j)) for i, j in cells]
    names = tuple(dict.fromkeys(log.models[j] for _, j in cells))
    out, table, chosen = check_collect(endpoints, out, prices=prices, models=names or None,
                                       concurrency=concurrency, retries=retries, backoff=backoff)
    for i, j in cells:
        if target.present[i, j] or target.blocked[i]:
            why = f"must not be resent ({DO_NOT_RESEND})" if target.blocked[i] else "is already in the log"
            raise DataError(f"cell (prompt {log.prompt_ids[i]!r}, model {log.models[j]!r}) {why}",
                            path=target.label, column="cells")
    prompts = {i: PromptRow(str(log.prompt_ids[i]), str(log.prompts[i]),
                            [{"role": "user", "content": str(log.prompts[i])}], int(target.rows[i]), {})
               for i, _ in cells}
    journal = journal_path(out)
    done = read_all_journals(out)
    todo = [(prompts[i], log.models[j]) for i, j in cells if (str(log.prompt_ids[i]), log.models[j]) not in done]
    start = time.perf_counter()
    failures: list[DataError] = []
    if todo:
        asyncio.run(send_cells(todo, list(prompts.values()), names, chosen, done, journal, table, target.label,
                               concurrency, retries, backoff, progress, failures))
    appended = append_answers(target, out, done)
    result = CollectResult(out=out, journal=journal, prompts=len(prompts), models=names, cells=appended,
                           resumed_cells=len(cells) - len(todo), sent_cells=len(todo) - len(failures),
                           failed=[str(f) for f in failures], seconds=time.perf_counter() - start)
    raise_first_failure(failures)
    return result


def append_answers(target: FillTarget, out: Path, done: dict) -> int:
    """Write ``out``: the log file with one row per answer of ``done`` whose cell it does not hold
    (every journaled answer is kept: a cell paid for is never dropped). Returns the rows added."""
    import pandas as pd

    from routecast.data.formats import ROW, read_table

    log = target.log
    p_index = {str(pid): i for i, pid in enumerate(log.prompt_ids)}
    rename = target.user_columns
    carried = [c for c in log.meta.columns if c not in PER_REQUEST and c not in CALL_FIELDS]
    records = []
    for (pid, model), call in done.items():
        i = p_index.get(pid)
        j = log.models.index(model) if model in log.models else None
        if i is None or j is None or target.present[i, j]:
            continue
        record = {"prompt_id": pid} if target.has_prompt_id else {}
        record.update({"prompt": str(log.prompts[i]), "model": model, "score": None})
        record.update({k: call.get(k) for k in CALL_FIELDS})
        record.update({c: _plain(log.meta[c].iloc[i]) for c in carried if c not in record})
        records.append({rename.get(k, k): v for k, v in record.items()})
    if target.kind == "jsonl" and out.suffix.lower() in (".jsonl", ".ndjson"):  # the user's lines, byte for byte
        from routecast.atomic import write_bytes
        from routecast.jsonable import to_jsonable

        data = target.path.read_bytes()
        if data and not data.endswith(b"\n"):
            data += b"\n"
        lines = "".join(json.dumps(to_jsonable(r), ensure_ascii=False, allow_nan=False) + "\n" for r in records)
        write_bytes(out, data + lines.encode("utf-8"))
    else:
        old = read_table(target.path).drop(columns=[ROW])
        both = pd.concat([old, pd.DataFrame.from_records(records)], ignore_index=True) if records else old
        write_records(out, both.to_dict("records"))
    return len(records)


def _plain(value):
    """A meta cell as JSON-able Python (NaN -> None)."""
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value
