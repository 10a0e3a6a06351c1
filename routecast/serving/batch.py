"""Offline batch routing: a prompts file in, one decision per line out, in bounded memory.

Input formats
-------------
* ``jsonl`` (default): one JSON object per line, ``{"prompt": "..."}`` or
  ``{"id": "q1", "prompt": "..."}`` (``id`` may be a string or an integer; without it the 1-based
  line number is the id). Other keys (``benchmark``, ``user``...) are passed through to the line's
  decision under their names; one named like a decision field (``model``, ``lam``...) is refused.
  Blank lines are skipped.
* ``text``: one prompt per line, taken verbatim (no escaping, so prompts cannot contain newlines);
  the id is the 1-based line number. Blank lines are skipped.

A UTF-8 byte-order mark is accepted, as the data loader accepts it. Every line is validated, and
a bad one raises one :class:`DataError` naming file, line and column: not UTF-8, not JSON, a
number of more than 300 digits, nesting too deep, a missing, non-string, empty or
lone-surrogate prompt, a bad id, or an id used twice (``allow_duplicates=True`` lets duplicates
through and counts them). The whole file is validated before the first prompt is routed, so a
bad line 10,000,000 costs seconds, not an hour of routing.

Writing, interruption and resume
--------------------------------
Decisions go to ``OUT.partial`` (plus the run's settings in ``OUT.partial.json``) one batch at a
time and the file is renamed to ``OUT`` at the end, so ``OUT`` only ever holds a complete run.
SIGTERM or Ctrl-C stops after the current write: no temp file is left, ``OUT.partial`` keeps
every complete decision, and the same call with ``resume=True`` continues after them (checking
the input, the checkpoint and the settings are the same; nothing is routed or written twice).
A run killed with SIGKILL leaves the same state (a torn last line is dropped on resume); a run
without ``resume`` starts afresh and removes what an old one left. One writer per ``OUT``: a
second run into the same output fails at once (:func:`routecast.atomic.out_lock`).

Note: a ``budget``/``strong_share``/``target_quality`` on an uncalibrated router is met per batch,
not over the whole file; calibrate the router (``routecast train`` does) for a file-wide guarantee.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from routecast.atomic import Terminated, out_lock, remove_stale_temps, sigterm_as_exception, write_json
from routecast.errors import DataError, RoutecastError
from routecast.router.base import RESULT_FIELDS

FORMATS = ("jsonl", "text")
#: a line longer than this is refused (a 1 MB prompt is fine; a 2 GB line without newline is not)
MAX_LINE_BYTES = 16 << 20
_BOM = b"\xef\xbb\xbf"
_STATE_VERSION = 1


@dataclass(frozen=True)
class PromptLine:
    """One input line: ``prompt`` is None for a blank line (``id`` then too)."""

    id: Any
    prompt: str | None
    nbytes: int
    line: int
    #: the line's other keys (jsonl), written to its decision unchanged
    fields: dict[str, Any] | None = None


def _surrogate_at(text: str) -> int | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _parse_line(text: str, path: Path, lineno: int) -> Any:
    # the data loader's strict JSON reader (pandas-free): huge numbers, deep nesting, duplicate keys
    from routecast.data.strict_json import parse_json

    return parse_json(text, path, lineno)


def _check_prompt(prompt: Any, path: Path, lineno: int) -> str:
    where = {"path": str(path), "row": lineno, "column": "prompt"}
    if not isinstance(prompt, str):
        raise DataError("missing or non-string 'prompt'" if prompt is None
                        else f"'prompt' must be a string, got {type(prompt).__name__}", **where)
    if not prompt.strip():
        raise DataError("'prompt' is empty; every line needs some text to route", **where)
    bad = _surrogate_at(prompt)
    if bad is not None:
        raise DataError(f"'prompt' holds a lone surrogate ({prompt[bad]!r}) at character {bad + 1}; "
                        "prompts must be valid Unicode", **where)
    return prompt


def _check_id(pid: Any, path: Path, lineno: int) -> Any:
    where = {"path": str(path), "row": lineno, "column": "id"}
    if isinstance(pid, bool) or not isinstance(pid, (str, int)):
        raise DataError(f"'id' must be a string or an integer, got {type(pid).__name__}", **where)
    if isinstance(pid, str):
        if not pid.strip():
            raise DataError("'id' is empty", **where)
        bad = _surrogate_at(pid)
        if bad is not None:
            raise DataError(f"'id' holds a lone surrogate at character {bad + 1}", **where)
    return pid


def iter_prompts(path: str | os.PathLike, *, fmt: str = "jsonl",
                 allow_duplicates: bool = True) -> Iterator[PromptLine]:
    """Yield every line of ``path`` lazily, validated (see the module docstring).

    ``allow_duplicates=False`` raises on the second use of an id (it keeps one set of the ids).
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown input format {fmt!r}; use one of {', '.join(FORMATS)}", path=str(path))
    path = Path(path)
    if not path.is_file():
        raise DataError("input file not found" if not path.exists() else "is a folder, expected a file",
                        path=str(path))
    first_seen: dict[Any, int] = {}
    with open(path, "rb") as handle:
        lineno = 0
        while True:
            raw = handle.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            lineno += 1
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(f"line is longer than {MAX_LINE_BYTES:,} bytes", path=str(path), row=lineno)
            body = raw[len(_BOM):] if lineno == 1 and raw.startswith(_BOM) else raw
            try:
                line = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"line is not valid UTF-8 ({exc.reason} at byte {exc.start + 1})", path=str(path),
                                row=lineno) from None
            if not line.strip():
                yield PromptLine(None, None, len(raw), lineno)
                continue
            if fmt == "text":
                pid, prompt = lineno, line.rstrip("\r\n")
            else:
                obj = _parse_line(line, path, lineno)
                if not isinstance(obj, dict):
                    raise DataError(f'expected a JSON object like {{"prompt": "..."}}, got {type(obj).__name__}',
                                    path=str(path), row=lineno)
                prompt = _check_prompt(obj.get("prompt"), path, lineno)
                pid = _check_id(obj.get("id", lineno), path, lineno)
                fields = {k: v for k, v in obj.items() if k not in ("id", "prompt")}
                clash = sorted(set(fields) & set(RESULT_FIELDS))
                if clash:
                    raise DataError(f"input field {clash[0]!r} has the name of a decision field "
                                    f"({', '.join(RESULT_FIELDS)}); rename it", path=str(path), row=lineno,
                                    column=clash[0])
            if not allow_duplicates:
                key = (type(pid) is str, pid)
                if key in first_seen:
                    raise DataError(f"duplicate id {pid!r} (first on line {first_seen[key]}); ids must be unique, "
                                    "or pass allow_duplicates=True", path=str(path), row=lineno, column="id")
                first_seen[key] = lineno
            yield PromptLine(pid, prompt, len(raw), lineno, fields if fmt == "jsonl" else None)


def validate_prompts(path: str | os.PathLike, *, fmt: str = "jsonl", allow_duplicates: bool = False) -> dict[str, int]:
    """Read the whole file once, validating every line; returns prompt and duplicate counts."""
    n, seen, duplicates = 0, set(), 0
    for item in iter_prompts(path, fmt=fmt, allow_duplicates=allow_duplicates):
        if item.prompt is None:
            continue
        n += 1
        key = (type(item.id) is str, item.id)
        duplicates += key in seen
        seen.add(key)
    return {"n_prompts": n, "duplicates": duplicates}


def partial_paths(output_path: str | os.PathLike) -> tuple[Path, Path]:
    """``(OUT.partial, OUT.partial.json)``: decisions so far and the settings of the run that wrote them."""
    output_path = Path(output_path)
    return (output_path.with_name(output_path.name + ".partial"),
            output_path.with_name(output_path.name + ".partial.json"))


def _signal_name(exc: BaseException) -> str:
    """What stopped the run: a KeyboardInterrupt says nothing itself (``str()`` is empty)."""
    return str(exc) or ("Ctrl-C" if isinstance(exc, KeyboardInterrupt) else type(exc).__name__)


def _run_settings(runtime, input_path: Path, fmt: str, batch_size: int, route_kwargs: dict) -> dict[str, Any]:
    info = input_path.stat()
    return {"version": _STATE_VERSION, "input": str(input_path.resolve()), "input_size": info.st_size,
            "input_mtime_ns": info.st_mtime_ns, "format": fmt, "batch_size": batch_size,
            "route": {k: v for k, v in sorted(route_kwargs.items()) if v is not None},
            "checkpoint_sha256": getattr(runtime, "manifest_sha256", None), "models": list(runtime.models)}


def _resume_state(partial: Path, state_file: Path, settings: dict[str, Any]) -> tuple[list[Any], dict[str, int]]:
    """Ids and model counts of the complete decisions in ``partial``; drops a torn last line."""
    try:
        saved = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DataError(f"cannot resume: {state_file} is missing or unreadable; run without resume to start "
                        "afresh", path=str(partial)) from None
    changed = sorted(k for k in settings if saved.get(k) != settings[k])
    if changed:
        raise DataError(f"cannot resume: {', '.join(changed)} differ from the interrupted run (see {state_file}); "
                        "run without resume to start afresh", path=str(partial))
    return _complete_decisions(partial)


def _complete_decisions(partial: Path) -> tuple[list[Any], dict[str, int]]:
    data = partial.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(partial, "r+b") as handle:  # killed mid-write: keep whole lines only
            handle.truncate(len(complete))
    ids, counts = [], {}
    for number, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
            ids.append(record["id"])
            counts[record["model"]] = counts.get(record["model"], 0) + 1
        except (ValueError, KeyError, TypeError):
            raise DataError("cannot resume: not a decision line; run without resume to start afresh",
                            path=str(partial), row=number) from None
    return ids, counts


def route_file(runtime, input_path: str | os.PathLike, output_path: str | os.PathLike, *,
               batch_size: int = 256, fmt: str = "jsonl", show_progress: bool | None = None,
               resume: bool = False, allow_duplicates: bool = False, **route_kwargs) -> dict[str, Any]:
    """Route every prompt of ``input_path`` into ``output_path`` (JSONL), chunk by chunk.

    Each output line is ``{"id", **the input line's other fields, **decision}``, the decision being
    the one result shape (:meth:`routecast.router.base.RouteResult.records`).
    Returns a summary: prompts routed, how many went to each model, how many were resumed from an
    interrupted run and how many ids were duplicates (with ``allow_duplicates``).
    """
    if batch_size < 1:
        raise DataError("batch_size must be >= 1", path=str(input_path))
    input_path, output_path = Path(input_path), Path(output_path)
    partial, state_file = partial_paths(output_path)
    with out_lock(output_path), sigterm_as_exception():  # a second writer fails here, before any work
        try:
            checked = validate_prompts(input_path, fmt=fmt, allow_duplicates=allow_duplicates)
        except (Terminated, KeyboardInterrupt) as exc:
            raise RoutecastError(f"{output_path}: interrupted ({_signal_name(exc)}) while checking {input_path}; "
                                 "nothing was written") from None
        settings = _run_settings(runtime, input_path, fmt, batch_size, route_kwargs)
        for path in (output_path, partial, state_file):
            remove_stale_temps(path)  # what a killed run (or an older routecast) left; we hold the lock
        if resume and partial.exists():
            done_ids, counts = _resume_state(partial, state_file, settings)
        else:
            done_ids, counts = [], {}
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            write_json(state_file, settings)
            partial.touch()
        for model in runtime.models:
            counts.setdefault(model, 0)
        try:
            n_routed = _route_into(runtime, input_path, partial, done_ids, counts, batch_size=batch_size, fmt=fmt,
                                   show_progress=show_progress, route_kwargs=route_kwargs)
        except (Terminated, KeyboardInterrupt) as exc:
            kept = len(_complete_decisions(partial)[0])
            raise RoutecastError(f"{output_path}: interrupted ({_signal_name(exc)}) after routing {kept} of "
                                 f"{checked['n_prompts']} prompts; the {kept} decisions are kept in {partial}: "
                                 "run the same command again with resume to continue") from None
        except BaseException:
            for leftover in (partial, state_file):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
            raise
        os.replace(partial, output_path)
        with contextlib.suppress(FileNotFoundError):
            state_file.unlink()
    return {"n_prompts": len(done_ids) + n_routed, "decisions": counts, "output": str(output_path),
            "resumed": len(done_ids), "duplicates": checked["duplicates"]}


def _route_into(runtime, input_path: Path, partial: Path, done_ids: list[Any], counts: dict[str, int], *,
                batch_size: int, fmt: str, show_progress: bool | None, route_kwargs: dict) -> int:
    """Append the decisions of every prompt after the first ``len(done_ids)`` to ``partial``."""
    from routecast.progress import Progress

    total_bytes = input_path.stat().st_size
    if show_progress is None:
        show_progress = total_bytes > 1_000_000
    routed = 0
    skipped = 0
    ids: list[Any] = []
    passed: list[dict[str, Any]] = []
    texts: list[str] = []
    with open(partial, "ab") as out, Progress("routing", total=total_bytes, unit="bytes",
                                              enabled=show_progress) as bar:
        def flush() -> None:
            nonlocal routed
            if not texts:
                return
            lines, models = [], []
            for pid, fields, rec in zip(ids, passed, runtime.route(texts, **route_kwargs)):
                lines.append(json.dumps({"id": pid, **fields, **rec}, allow_nan=False))
                models.append(rec["model"])
            # one write per batch; a torn tail (SIGKILL mid-write) is cut off by _complete_decisions
            out.write(("\n".join(lines) + "\n").encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
            for model in models:
                counts[model] += 1
            routed += len(texts)
            ids.clear()
            passed.clear()
            texts.clear()

        for item in iter_prompts(input_path, fmt=fmt, allow_duplicates=True):
            bar.advance(item.nbytes)
            if item.prompt is None:
                continue
            if skipped < len(done_ids):
                if done_ids[skipped] != item.id:
                    raise DataError(f"cannot resume: decision {skipped + 1} of {partial} has id {done_ids[skipped]!r}, "
                                    f"this line has id {item.id!r}; run without resume to start afresh",
                                    path=str(input_path), row=item.line)
                skipped += 1
                continue
            ids.append(item.id)
            passed.append(item.fields or {})
            texts.append(item.prompt)
            if len(texts) >= batch_size:
                flush()
        flush()
    return routed
