"""The strict JSON body parser of the server.

Python's ``json`` accepts things that later break far from the input: a lone surrogate
(``"\\ud800"``) parses into a ``str`` that no encoder or tokenizer can encode (it used to 500
every request merged into its micro-batch), a 5,000-digit integer raises ``ValueError`` from the
int-conversion guard, deep nesting raises ``RecursionError``, ``NaN``/``Infinity`` are not JSON
and ``1e999`` becomes ``inf``. Each is refused here with a 400 naming the problem, so nothing
that reaches an endpoint can fail on its encoding. Duplicate object keys are refused too (which
value wins differs between parsers).
"""

from __future__ import annotations

import json
import math
from typing import Any

from routecast.serving.api_error import ApiError


class _Refused(ValueError):
    pass


def _bad(message: str) -> ApiError:
    return ApiError(400, f"request body is not acceptable JSON: {message}", code="invalid_json")


def parse_json_body(raw: bytes, *, max_depth: int = 64, max_number_chars: int = 100) -> Any:
    """``raw`` (UTF-8 bytes) as JSON, or an :class:`ApiError` 400."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(f"not UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]

    def number(kind):
        def parse(literal: str):
            if len(literal) > max_number_chars:
                raise _Refused(f"a number of {len(literal)} characters (the limit is {max_number_chars})")
            value = kind(literal)
            if isinstance(value, float) and not math.isfinite(value):
                raise _Refused(f"the number {literal[:20]} is out of range")
            return value
        return parse

    def constant(name: str):
        raise _Refused(f"{name} is not JSON")

    def unique_keys(pairs):
        out = dict(pairs)
        if len(out) != len(pairs):
            seen = set()
            dup = next(k for k, _ in pairs if k in seen or seen.add(k))
            raise _Refused(f"duplicate key {dup[:40]!r} in an object")
        return out

    try:
        value = json.loads(text, parse_int=number(int), parse_float=number(float), parse_constant=constant,
                           object_pairs_hook=unique_keys)
    except _Refused as exc:
        raise _bad(str(exc)) from None
    except RecursionError:
        raise _bad(f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise _bad(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    _check_tree(value, max_depth)
    return value


def _check_tree(value: Any, max_depth: int) -> None:
    """Depth and encodable strings, iteratively (a recursive walk is what deep nesting breaks)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, (list, dict)):
            if depth > max_depth:
                raise _bad(f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
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
        raise _bad(f"a string holds a lone surrogate (\\u{ord(text[exc.start]):04x}), which is not "
                   "valid Unicode") from None
