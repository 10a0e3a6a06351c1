"""The one JSON encoding of routecast: numpy values, paths and non-finite floats made strict JSON.

Results (metrics.json, calibration.json, run.json, decisions.jsonl) are read by other tools, so
they are strict JSON: NaN and infinities become ``null``. Checkpoint configs must round-trip a
NaN cost ("unknown"), so they tag non-finite floats instead (``{"__float__": "nan"}``) and
:func:`restore_tagged` reads them back. Every writer in the package goes through
:func:`to_jsonable`; no module keeps its own sanitiser.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any

__all__ = ["to_jsonable", "restore_tagged", "finite_or_none", "dumps"]

_TAG = "__float__"


def finite_or_none(value: Any) -> float | None:
    """A float, or None when it is NaN or infinite (or not a number at all)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def to_jsonable(obj: Any, *, nonfinite: str = "null", fallback_repr: bool = False) -> Any:
    """``obj`` as plain JSON values.

    numpy scalars and arrays become Python numbers and lists, paths strings, tuples lists.
    ``nonfinite="null"`` writes NaN/inf as None (results); ``"tag"`` as ``{"__float__": "nan"}``
    (checkpoint configs, read back by :func:`restore_tagged`). Anything else that JSON cannot hold
    raises TypeError, or becomes its ``repr`` with ``fallback_repr`` (free-form report metadata).
    """
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, nonfinite=nonfinite, fallback_repr=fallback_repr) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, nonfinite=nonfinite, fallback_repr=fallback_repr) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), nonfinite=nonfinite, fallback_repr=fallback_repr)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return None if nonfinite == "null" else {_TAG: repr(obj)}
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, PurePath):
        return str(obj)
    if fallback_repr:
        return repr(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def restore_tagged(obj: Any) -> Any:
    """Inverse of ``to_jsonable(..., nonfinite="tag")``."""
    if isinstance(obj, dict):
        if set(obj) == {_TAG} and obj[_TAG] in ("nan", "inf", "-inf"):
            return float(obj[_TAG])
        return {k: restore_tagged(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [restore_tagged(v) for v in obj]
    return obj


def dumps(obj: Any, *, nonfinite: str = "null", indent: int | None = 2, sort_keys: bool = True) -> str:
    """Strict JSON text of ``obj`` (see :func:`to_jsonable`)."""
    return json.dumps(to_jsonable(obj, nonfinite=nonfinite), indent=indent, sort_keys=sort_keys,
                      allow_nan=False)
