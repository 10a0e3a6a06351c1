"""Strict JSON text -> Python values, with every failure one :class:`DataError` naming file and row.

Why a module of its own (pandas-free): the data loader (JSON lines and arrays) and ``routecast
route`` (a prompts file, in the lean runtime install without pandas) read user JSON the same way:
a key twice in one object, an integer literal of more than :data:`MAX_INT_DIGITS` digits (Python's
own 4,300-digit limit would surface as a bare int-conversion ValueError), nesting deep enough to
hit the recursion limit, and plain syntax errors are refused with a message, never a traceback.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from routecast.errors import DataError

#: Longer integer literals are refused: no count, id or score needs them.
MAX_INT_DIGITS = 300


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


class _HugeNumber(Exception):
    def __init__(self, literal: str):
        super().__init__(literal)
        self.digits = len(literal.lstrip("-"))


def _no_duplicate_keys(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _parse_int(literal: str) -> int:
    if len(literal) > MAX_INT_DIGITS:
        raise _HugeNumber(literal)
    return int(literal)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def parse_json(text: str, path: str | Path, row: int | None) -> Any:
    """``json.loads(text)``, refusing duplicate keys, huge integers and deep nesting (DataError)."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_int=_parse_int)
    except _DuplicateKey as exc:
        raise DataError(f"key {exc.key!r} appears twice in one JSON object", path=str(path), row=row,
                        column=exc.key) from None
    except _HugeNumber as exc:
        key = re.search(r'"((?:[^"\\]|\\.)*)"\s*:\s*-?\d{%d,}' % MAX_INT_DIGITS, text)
        raise DataError(f"a number with {exc.digits:,} digits; numbers must have at most {MAX_INT_DIGITS} digits",
                        path=str(path), row=row, column=key.group(1) if key else None) from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"invalid JSON: {_first_line(exc)}", path=str(path), row=row) from None


__all__ = ["MAX_INT_DIGITS", "parse_json"]
