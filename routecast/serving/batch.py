"""Offline batch routing: a prompts file in, one decision per line out, in bounded memory.

Input formats
-------------
* ``jsonl`` (default): one JSON object per line, ``{"prompt": "..."}`` or
  ``{"id": "q1", "prompt": "..."}`` (other keys are ignored; ``id`` may be a string or an
  integer; without it the 1-based line number is the id). Blank lines are skipped.
* ``text``: one prompt per line, taken verbatim (no escaping, so prompts cannot contain newlines);
  the id is the 1-based line number. Blank lines are skipped.

The input is read lazily and routed ``batch_size`` prompts at a time, so files larger than
memory work; the output is written to a temporary file and renamed at the end (a crash leaves no
half-written decisions file). A malformed line raises :class:`DataError` naming file and line.
Note: a ``budget``/``strong_share``/``target_quality`` on an uncalibrated router is met per batch,
not over the whole file; calibrate the router (``routecast train`` does) for a file-wide guarantee.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from routecast.atomic import atomic_open
from routecast.errors import DataError

FORMATS = ("jsonl", "text")


def iter_prompts(path: str | os.PathLike, *, fmt: str = "jsonl") -> Iterator[tuple[Any, str, int]]:
    """Yield ``(id, prompt, bytes_read_so_far)`` lazily, line by line."""
    if fmt not in FORMATS:
        raise DataError(f"unknown input format {fmt!r}; use one of {', '.join(FORMATS)}", path=str(path))
    path = Path(path)
    if not path.is_file():
        raise DataError("input file not found", path=str(path))
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"line is not valid UTF-8 ({exc.reason})", path=str(path), row=lineno) from None
            stripped = line.strip()
            if not stripped:
                yield None, None, len(raw)
                continue
            if fmt == "text":
                yield lineno, line.rstrip("\r\n"), len(raw)
                continue
            try:
                obj = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON ({exc.msg} at column {exc.colno}); expected "
                                '{"prompt": "..."} per line (or use --format text)', path=str(path),
                                row=lineno) from None
            if not isinstance(obj, dict):
                raise DataError(f'expected a JSON object like {{"prompt": "..."}}, got {type(obj).__name__}',
                                path=str(path), row=lineno)
            prompt = obj.get("prompt")
            if not isinstance(prompt, str):
                raise DataError("missing or non-string 'prompt'" if prompt is None
                                else f"'prompt' must be a string, got {type(prompt).__name__}",
                                path=str(path), row=lineno, column="prompt")
            pid = obj.get("id", lineno)
            if isinstance(pid, bool) or not isinstance(pid, (str, int)):
                raise DataError(f"'id' must be a string or an integer, got {type(pid).__name__}",
                                path=str(path), row=lineno, column="id")
            yield pid, prompt, len(raw)


def route_file(runtime, input_path: str | os.PathLike, output_path: str | os.PathLike, *,
               batch_size: int = 256, fmt: str = "jsonl", show_progress: bool | None = None,
               **route_kwargs) -> dict[str, Any]:
    """Route every prompt of ``input_path`` into ``output_path`` (JSONL), chunk by chunk.

    Each output line is ``{"id", "model", "predicted_quality", "expected_cost", "lam"}``.
    Returns a summary: prompts routed and how many went to each model.
    """
    if batch_size < 1:
        raise DataError("batch size must be >= 1", path=str(input_path))
    total_bytes = Path(input_path).stat().st_size if Path(input_path).is_file() else 0
    counts: dict[str, int] = {m: 0 for m in runtime.models}
    n = 0
    if show_progress is None:
        show_progress = total_bytes > 1_000_000
    from tqdm.auto import tqdm

    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="routing", disable=not show_progress)
    try:
        with atomic_open(output_path, "w") as out:
            ids: list[Any] = []
            texts: list[str] = []
            pending_bytes = 0

            def flush() -> None:
                nonlocal n, pending_bytes
                if texts:
                    for pid, rec in zip(ids, runtime.route(texts, **route_kwargs)):
                        rec.pop("ranking", None)
                        counts[rec["model"]] += 1
                        out.write(json.dumps({"id": pid, **rec}, allow_nan=False) + "\n")
                    n += len(texts)
                    ids.clear()
                    texts.clear()
                bar.update(pending_bytes)
                pending_bytes = 0

            for pid, prompt, nbytes in iter_prompts(input_path, fmt=fmt):
                pending_bytes += nbytes
                if prompt is None:
                    continue
                ids.append(pid)
                texts.append(prompt)
                if len(texts) >= batch_size:
                    flush()
            flush()
    finally:
        bar.close()
    return {"n_prompts": n, "decisions": counts, "output": str(output_path)}
