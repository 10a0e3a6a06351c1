"""Arrays in a checkpoint: safetensors files, each declared in a ``config.json`` by dtype and shape.

A component that stores arrays writes them with :func:`save_arrays` and declares them next to the
file name (``{"weights": FILE, "arrays": array_index(arrays)}``). The declaration bounds the file's
size before it is read (:func:`array_file_caps`), and the parsed arrays must be exactly the declared
ones, finite (:func:`check_arrays`). Nothing but numbers is ever stored: no pickle.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from routecast.atomic import write_bytes
from routecast.core.checkpoint.files import CONFIG_FILE, is_int
from routecast.errors import CheckpointError

DTYPE_BYTES = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "float16": 2, "int32": 4, "uint32": 4,
               "float32": 4, "int64": 8, "uint64": 8, "float64": 8}
#: safetensors header allowance: 8 length bytes + JSON of about this many bytes per array + slack
_HEADER_BYTES_PER_ARRAY = 512
_HEADER_SLACK = 64 << 10


def save_arrays(path: Path, arrays: dict[str, np.ndarray], *, what: str) -> None:
    from safetensors.numpy import save

    clean = {}
    for key, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind not in "biuf":
            raise CheckpointError(f"cannot save {what} array {key!r}: dtype {value.dtype} is not "
                                  "numeric (safetensors stores numbers only)")
        clean[key] = np.ascontiguousarray(value)
    write_bytes(path, save(clean))


def array_index(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """The declaration of ``arrays`` in a config: name -> dtype and shape."""
    return {k: {"dtype": str(np.asarray(v).dtype), "shape": list(np.shape(v))} for k, v in sorted(arrays.items())}


def parse_arrays(data: bytes, file: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from None


def declared_bytes(index: Any, *, source: Path, field_name: str, max_array_bytes: int) -> int:
    """Check an array index of config.json (name -> dtype, shape) and return the bytes it declares."""
    if not isinstance(index, dict):
        raise CheckpointError(f"{source}: field {field_name!r} must map array names to dtype and shape")
    total = 0
    for key, spec in index.items():
        where = f"{field_name}.{key}"
        if not isinstance(spec, dict) or spec.get("dtype") not in DTYPE_BYTES or not isinstance(spec.get("shape"), list) \
                or not all(is_int(d) and d >= 0 for d in spec["shape"]) or len(spec["shape"]) > 8:
            raise CheckpointError(f"{source}: field {where!r} needs a numeric dtype ({', '.join(DTYPE_BYTES)}) "
                                  f"and a shape of non-negative integers, got {spec!r}")
        nbytes = DTYPE_BYTES[spec["dtype"]] * math.prod(spec["shape"])
        if nbytes > max_array_bytes:
            raise CheckpointError(f"{source}: field {where!r} declares {nbytes:,} bytes, above the "
                                  f"{max_array_bytes:,}-byte cap per array (max_array_bytes); refused without reading it")
        total += nbytes
    return total


def array_file_caps(config: dict, cfg_path: Path, max_array_bytes: int) -> dict[str, int]:
    """Per-file byte caps from what config.json declares (before those files are read): every
    ``{"weights": FILE, "arrays": INDEX}`` pair at the top level or one object down (an encoder's)."""
    caps: dict[str, int] = {}
    entries = [("", config)] + [(f"{key}.", value) for key, value in sorted(config.items()) if isinstance(value, dict)]
    for prefix, entry in entries:
        if isinstance(entry.get("weights"), str) and (prefix == "" or "arrays" in entry):
            index = entry.get("arrays")
            declared = declared_bytes(index, source=cfg_path, field_name=f"{prefix}arrays",
                                      max_array_bytes=max_array_bytes)
            caps[entry["weights"]] = 8 + declared + _HEADER_SLACK + _HEADER_BYTES_PER_ARRAY * len(index)
    return caps


def check_arrays(arrays: dict[str, np.ndarray], index: dict, *, file: Path, nan_ok: frozenset[str]) -> None:
    """The parsed arrays are exactly the declared ones, of the declared dtype and shape, and finite
    (NaN allowed in the arrays named in ``nan_ok``; infinities never)."""
    expected, found = set(index), set(arrays)
    if found != expected:
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        raise CheckpointError(f"{file}: arrays do not match {CONFIG_FILE} "
                              f"(missing: {missing or 'none'}; unexpected: {unexpected or 'none'})")
    for key, spec in index.items():
        value = arrays[key]
        if list(value.shape) != list(spec["shape"]) or str(value.dtype) != spec["dtype"]:
            raise CheckpointError(f"{file}: array {key!r} has shape {list(value.shape)} dtype {value.dtype}, "
                                  f"{CONFIG_FILE} declares {spec}")
        if value.dtype.kind == "f":
            bad = ~np.isfinite(value)
            if key in nan_ok:
                bad &= ~np.isnan(value)
            if bad.any():
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                raise CheckpointError(f"{file}: array {key!r} holds {int(bad.sum())} non-finite value(s) "
                                      f"(first at index {first}: {float(value[first])!r})")
