"""The file rules of the checkpoint format: names, size caps, one read per file, strict JSON, safe paths.

Every reader of a checkpoint goes through :func:`read_capped` (a file's size is checked on the open
descriptor before a byte is read; symlinks, FIFOs and devices are refused) and :func:`parse_json`
(UTF-8, no NaN/Infinity constants); every file name found in a checkpoint's JSON goes through
:func:`safe_relpath`. Each refusal is one :class:`~routecast.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from routecast.core.signing import SIGNATURE_FILE  # noqa: F401 - a file name of the format, re-exported
from routecast.errors import CheckpointError, ConfigError
from routecast.jsonable import dumps

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"

#: size caps, checked on the open file before a byte is read
MAX_MANIFEST_BYTES = 1 << 20
MAX_CONFIG_BYTES = 64 << 20
MAX_SIGNATURE_BYTES = 64 << 10
#: default cap of one array (a static encoder's token table is ~16 MB, a fine-tuned MiniLM ~90 MB)
MAX_ARRAY_BYTES = 512 << 20
#: any other listed file (head.onnx, a shipped encoder folder's weights)
MAX_OTHER_FILE_BYTES = 1 << 30
_HEX64 = re.compile(r"[0-9a-f]{64}")


def is_int(value: Any) -> bool:
    return type(value) is int  # noqa: E721 - bool is an int subclass and is NOT a version or a size


def check_version(value: Any, source: Path) -> None:
    if not is_int(value):
        raise CheckpointError(f"{source}: field 'format_version' must be an integer, got {value!r}")
    if value != FORMAT_VERSION:
        raise CheckpointError(f"{source}: unknown checkpoint format_version {value!r} (field 'format_version'; "
                              f"this routecast reads version {FORMAT_VERSION}); re-export it with this version")


def dump_json(obj: Any) -> str:
    """The text of every JSON file of a checkpoint: strict JSON, non-finite floats tagged
    (``{"__float__": "nan"}``, read back by :func:`routecast.jsonable.restore_tagged`)."""
    return dumps(obj, nonfinite="tag") + "\n"


def parse_json(data: bytes, source: Path) -> Any:
    """Strict JSON of a file's bytes: UTF-8, no NaN/Infinity constants, bounded nesting."""
    def _no_constants(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{source}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise CheckpointError(f"{source}: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity constants, huge integers
        raise CheckpointError(f"{source}: not valid JSON ({exc})") from None


def safe_relpath(name: Any, *, what: str, source: Path) -> PurePosixPath:
    """A file name from a checkpoint's JSON must be a plain relative path inside the folder."""
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{source}: {what} must be a non-empty file name, got {name!r}")
    if "\\" in name or "\x00" in name:
        raise CheckpointError(f"{source}: {what} {name!r} contains a forbidden character")
    rel = PurePosixPath(name)
    if rel.is_absolute() or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise CheckpointError(f"{source}: {what} {name!r} is an absolute path; "
                              "a checkpoint may only reference files inside its own folder")
    if any(part in ("..", "") for part in rel.parts) or rel.parts[0] == ".":
        raise CheckpointError(f"{source}: {what} {name!r} points outside the checkpoint folder")
    return rel


def read_capped(path: Path, *, cap: int, expected_size: int | None, what: str) -> bytes:
    """Read a regular file once. Its size (fstat on the open descriptor) is checked against the
    manifest and ``cap`` before any byte is read; symlinks, FIFOs and devices are refused."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if expected_size is not None:
            raise CheckpointError(f"{path}: listed in {MANIFEST_FILE} but missing") from None
        raise CheckpointError(f"{path}: {what} missing") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CheckpointError(f"{path}: symlinks are not allowed inside a checkpoint") from None
        raise CheckpointError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{path}: {what} is not a regular file")
        size = info.st_size
        if expected_size is not None and size != expected_size:
            raise CheckpointError(f"{path}: size {size} bytes differs from its manifest entry ({expected_size} "
                                  "bytes and a sha256); the file is truncated or modified")
        if size > cap:
            raise CheckpointError(f"{path}: {size:,} bytes, above the {cap:,}-byte cap for this file; "
                                  "refused without reading it")
        chunks, remaining = [], size
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) != size:
        raise CheckpointError(f"{path}: changed size while being read; refusing it")
    return data


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def normalise_sha256(value: Any) -> str:
    """A pinned manifest hash (``expect_sha256``) as 64 lower-case hex digits, or a ConfigError."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if not _HEX64.fullmatch(text):
        raise ConfigError(f"expect_sha256 must be 64 hexadecimal digits (the sha256 of manifest.json), got {value!r}")
    return text


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / MANIFEST_FILE).is_file()


def manifest_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a checkpoint's ``manifest.json``: what ``expect_sha256`` pins."""
    return hashlib.sha256((Path(path) / MANIFEST_FILE).read_bytes()).hexdigest()
