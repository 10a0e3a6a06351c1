"""Reading raw table files (CSV, JSON lines, JSON arrays, Parquet) into a DataFrame, safely.

Why a module of its own: every reader failure (bad bytes, a broken JSON line, a ragged CSV row,
a truncated Parquet footer) must come out as one :class:`~routecast.errors.DataError` naming the
file and, when it can be known, the 1-based row. pandas/pyarrow exceptions never escape.

Row numbering (what ``DataError.row`` means for each format):

* CSV: data rows from 1; the header line is not a row. For files whose quoted fields span several
  lines the row of a *decoding* error is counted in physical lines and may run ahead.
* JSON lines: the line number in the file (equal to the data row when there are no blank lines).
* JSON array: the position of the object in the array, from 1.
* Parquet: the row position, from 1.

CSV cells are read as text (``dtype=str``, no NA guessing) so the loader, not pandas, decides what
a cell means: an empty cell is "missing", ``"1e-3"`` is a number, ``"abc"`` in a score column is an
error pointing at that cell.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import pandas as pd

# strict JSON (duplicate keys, huge integers, deep nesting -> DataError) lives in a pandas-free module,
# so `routecast route` in the lean runtime install reads prompts files the way the loader reads logs
from routecast.data.strict_json import MAX_INT_DIGITS  # noqa: F401 - re-exported
from routecast.data.strict_json import parse_json as _parse_json
from routecast.errors import DataError

#: Extension -> reader kind. ``.json`` may hold JSON lines or one JSON array (decided by content).
EXTENSIONS = {
    ".parquet": "parquet", ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".json": "json",
}

#: Hidden column carrying the 1-based source row of every record through reshaping.
ROW = "__row__"


def read_table(path: str | Path) -> pd.DataFrame:
    """Read ``path`` into a DataFrame with an extra ``__row__`` column (1-based source row)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"not found: no such file ({os.path.abspath(path)})", path=str(path))
    if path.is_dir():
        raise DataError("is a directory, expected a file", path=str(path))
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"unknown file extension {path.suffix!r}; routecast reads "
                        f"{', '.join(sorted(EXTENSIONS))}", path=str(path))
    if kind == "parquet":
        frame = _read_parquet(path)
        rows = pd.RangeIndex(1, len(frame) + 1)
    else:
        text = _read_utf8(path, kind)
        if not text.strip():
            raise DataError("file is empty", path=str(path))
        if kind == "csv":
            frame = _read_csv(text, path)
            rows = pd.RangeIndex(1, len(frame) + 1)
        elif kind == "json" and text.lstrip().startswith("["):
            frame = _read_json_array(text, path)
            rows = pd.RangeIndex(1, len(frame) + 1)
        else:
            frame, line_numbers = _read_json_lines(text, path)
            rows = line_numbers
    if len(frame) == 0:
        raise DataError("file has a header but no data rows", path=str(path))
    frame = frame.reset_index(drop=True)
    if ROW in frame.columns:
        raise DataError(f"column name {ROW!r} is reserved", path=str(path), column=ROW)
    frame[ROW] = list(rows) if not isinstance(rows, pd.RangeIndex) else rows.to_numpy()
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types; all mean "not a readable parquet file"
        if path.stat().st_size == 0:
            raise DataError("file is empty", path=str(path)) from None
        raise DataError(f"not a readable Parquet file ({type(exc).__name__}: {_first_line(exc)})",
                        path=str(path)) from None


def _read_utf8(path: Path, kind: str) -> str:
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        row = line - 1 if kind == "csv" else line
        raise DataError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                        f"(line {line}); re-save the file as UTF-8",
                        path=str(path), row=row if row >= 1 else None) from None


def _read_csv(text: str, path: Path) -> pd.DataFrame:
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0])), [])
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DataError(f"column {name!r} appears twice in the header", path=str(path), column=name)
        seen.add(name)
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", path=str(path)) from None
    except Exception as exc:  # ParserError and friends
        msg = _first_line(exc)
        match = re.search(r"line (\d+)", msg)
        row = int(match.group(1)) - 1 if match else None
        raise DataError(f"malformed CSV: {msg}", path=str(path),
                        row=row if row and row >= 1 else None) from None


def _read_json_lines(text: str, path: Path) -> tuple[pd.DataFrame, list[int]]:
    records: list[dict] = []
    line_numbers: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        obj = _parse_json(line, path, number)
        if not isinstance(obj, dict):
            raise DataError(f"each JSON line must be an object, got {type(obj).__name__}",
                            path=str(path), row=number)
        records.append(obj)
        line_numbers.append(number)
    return _frame_from_records(records, path), line_numbers


def _read_json_array(text: str, path: Path) -> pd.DataFrame:
    data = _parse_json(text, path, None)
    if not isinstance(data, list):
        raise DataError("a .json file must hold JSON lines or one array of objects", path=str(path))
    for i, obj in enumerate(data, start=1):
        if not isinstance(obj, dict):
            raise DataError(f"array element must be an object, got {type(obj).__name__}",
                            path=str(path), row=i)
    return _frame_from_records(data, path)


def _frame_from_records(records: list[dict], path: Path) -> pd.DataFrame:
    if not records:
        return pd.DataFrame()
    try:
        # object dtype keeps what the JSON said (a number stays a number, a list stays a list)
        return pd.DataFrame.from_records(records).astype(object)
    except Exception as exc:  # pragma: no cover - defensive
        raise DataError(f"cannot tabulate JSON records: {_first_line(exc)}", path=str(path)) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
