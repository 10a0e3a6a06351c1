"""Strict JSON text -> Python values, with every failure one :class:`DataError` naming file and row.

Why a module of its own (pandas-free): the data loader (JSON lines and arrays) and ``routecast
route`` (a prompts file, in the lean runtime install without pandas) read user JSON the same way:
a key twice in one object, an integer literal of more than :data:`MAX_INT_DIGITS` digits (Python's
own 4,300-digit limit would surface as a bare int-conversion ValueError), nesting deep enough to
hit the recursion limit, and plain syntax errors are refused with a message, never a traceback.

The server reads request bodies with the same parser and stricter limits, given as parameters
(``max_depth``, ``max_number_chars``, ``finite_only``, ``valid_unicode``): a lone surrogate
(``"\\ud800"``) parses into a ``str`` no encoder or tokenizer can encode (it used to fail every
request merged into its micro-batch), ``NaN``/``Infinity`` are not JSON and ``1e999`` becomes
``inf``. It is the only strict JSON parser of routecast (issue 12).
"""

from __future__ import annotations

import json
import math
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


class _Refused(Exception):
    pass


def _number_parser(kind, max_chars: int | None, finite_only: bool):
    def parse(literal: str):
        if max_chars is not None and len(literal) > max_chars:
            raise _Refused(f"a number of {len(literal)} characters (the limit is {max_chars})")
        value = _parse_int(literal) if kind is int else float(literal)
        if finite_only and isinstance(value, float) and not math.isfinite(value):
            raise _Refused(f"the number {literal[:20]} is out of range")
        return value
    return parse


def _not_json(name: str):
    raise _Refused(f"{name} is not JSON")


def parse_json(text: str, path: str | Path, row: int | None, *, max_depth: int | None = None,
               max_number_chars: int | None = None, finite_only: bool = False, valid_unicode: bool = False) -> Any:
    """``json.loads(text)``, refusing duplicate keys, huge integers and deep nesting (DataError).

    Stricter, for untrusted bodies: ``max_depth`` (nesting levels), ``max_number_chars`` (any number
    literal), ``finite_only`` (no NaN, Infinity or overflow to inf), ``valid_unicode`` (no lone
    surrogates in strings or keys)."""
    strict = {}
    if max_number_chars is not None or finite_only:
        strict = {"parse_float": _number_parser(float, max_number_chars, finite_only),
                  "parse_int": _number_parser(int, max_number_chars, finite_only)}
    if finite_only:
        strict["parse_constant"] = _not_json
    try:
        value = json.loads(text, **{"object_pairs_hook": _no_duplicate_keys, "parse_int": _parse_int, **strict})
        if max_depth is not None or valid_unicode:
            _check_tree(value, max_depth, valid_unicode)
        return value
    except _Refused as exc:
        raise DataError(str(exc), path=str(path), row=row) from None
    except RecursionError:
        depth = f"nested deeper than {max_depth} levels" if max_depth is not None else "nested too deeply"
        raise DataError(f"invalid JSON: {depth}", path=str(path), row=row) from None
    except _DuplicateKey as exc:
        raise DataError(f"key {exc.key!r} appears twice in one JSON object", path=str(path), row=row,
                        column=exc.key) from None
    except _HugeNumber as exc:
        key = re.search(r'"((?:[^"\\]|\\.)*)"\s*:\s*-?\d{%d,}' % MAX_INT_DIGITS, text)
        raise DataError(f"a number with {exc.digits:,} digits; numbers must have at most {MAX_INT_DIGITS} digits",
                        path=str(path), row=row, column=key.group(1) if key else None) from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"invalid JSON: {_first_line(exc)}", path=str(path), row=row) from None


def _check_tree(value: Any, max_depth: int | None, valid_unicode: bool) -> None:
    """Depth and encodable strings, iteratively (a recursive walk is what deep nesting breaks)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if valid_unicode:
                _check_text(item)
        elif isinstance(item, (list, dict)):
            if max_depth is not None and depth > max_depth:
                raise _Refused(f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if valid_unicode:
                        _check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Refused(f"a string holds a lone surrogate (\\u{ord(text[exc.start]):04x}), which is not "
                       "valid Unicode") from None


__all__ = ["MAX_INT_DIGITS", "parse_json"]
