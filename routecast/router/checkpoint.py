"""Router checkpoints: a folder of JSON + safetensors that can be loaded without trusting it.

Layout (``format_version`` 1)::

    CKPT/
      config.json          router type (registry name), hyperparameters, learned JSON state, the
                           dtype and shape of every array, candidate models with expected costs,
                           encoder spec, routecast version
      model.safetensors    the router's learned arrays (``Router.get_state()[1]``)
      encoder.safetensors  only when the encoder carries weights (``Encoder.state_arrays()``)
      encoder_model/       ``st:`` encoders read from a folder: a copy of it; ``onnx`` encoders: the ONNX
                           graph they run (float or int8) + tokenizer.json + routecast_onnx.json
      head.onnx            routers with a torch network (mlp, mf, irt): the network traced to ONNX,
                           checked against torch; a loaded checkpoint routes with it, torch or not
      manifest.json        sha256 + size of every other file
      manifest.sig         optional: ed25519 signature of manifest.json (``routecast export --sign``)

Threat model. Loading never executes code from the folder (no pickle; arrays through
``safetensors.numpy.load``; the router class only through the registry by name). By default a
load checks *integrity*: every file is listed with its sha256 and size, nothing unlisted, no
symlinks, nothing outside the folder. It also checks *meaning* (see :func:`_check_semantics`):
finite arrays of the declared shape and dtype, unique printable model names, costs that agree,
a known integer ``format_version``, encoder files inside the folder, bounded sizes, heads that fit
the encoder, a finite calibration curve. It does not give *authenticity*: whoever can rewrite the
files can rewrite the manifest. For that pass ``expect_sha256`` (the manifest's sha256, printed by
``routecast export``) or ``trusted_key`` (a public key; the folder must carry a valid signature).

Each file is read once into memory, with its size checked before reading (a 600 MB junk array is
refused without reading it); the hash is computed over those bytes and the same bytes are parsed,
so a file swapped between check and use cannot be loaded. (Encoders shipped as an
``encoder_model/`` folder are verified the same way, but the sentence-transformers loader then
reads that folder by name once more; the ONNX encoder re-reads its graph once and checks those
bytes against the sha256 in its ``routecast_onnx.json``. ``head.onnx`` is handed to onnxruntime
as the verified bytes.) Every refusal is one :class:`CheckpointError` naming the
file and the field.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import math
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from routecast.atomic import Terminated, make_shareable, out_lock, sigterm_as_exception, write_bytes, write_text
from routecast.errors import CheckpointError, ConfigError, RoutingError
from routecast.jsonable import restore_tagged, to_jsonable

if TYPE_CHECKING:  # pragma: no cover
    from routecast.router.base import Router
    from routecast.router.encoders.base import Encoder

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"  # == routecast.core.signing.SIGNATURE_FILE (kept import-free here)
WEIGHTS_FILE = "model.safetensors"
ENCODER_WEIGHTS_FILE = "encoder.safetensors"
ENCODER_MODEL_DIR = "encoder_model"
ONNX_HEAD_FILE = "head.onnx"

#: size caps, checked on the open file before a byte is read
MAX_MANIFEST_BYTES = 1 << 20
MAX_CONFIG_BYTES = 64 << 20
MAX_SIGNATURE_BYTES = 64 << 10
#: default cap of one array (a static encoder's token table is ~16 MB, a fine-tuned MiniLM ~90 MB)
MAX_ARRAY_BYTES = 512 << 20
#: any other listed file (head.onnx, a shipped encoder folder's weights)
MAX_OTHER_FILE_BYTES = 1 << 30
#: safetensors header allowance: 8 length bytes + JSON of about this many bytes per array + slack
_HEADER_BYTES_PER_ARRAY = 512
_HEADER_SLACK = 64 << 10
MAX_ENCODER_DIM = 1 << 16
MAX_MODEL_NAME = 256
#: routed once at load: a head whose shapes disagree with the encoder fails here, not in production
PROBE_PROMPT = "routecast load check: what is 2 + 2?"
#: arrays in which NaN means "not logged" / "unknown"; a router class may add its own
#: (``nan_ok_arrays``, e.g. knn's logged score matrix). Infinities are never allowed.
NAN_OK_ARRAYS = frozenset({"costs_"})
_DTYPE_BYTES = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "float16": 2, "int32": 4, "uint32": 4,
                "float32": 4, "int64": 8, "uint64": 8, "float64": 8}
_HEX64 = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------- helpers
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dump_json(obj: Any) -> str:
    return json.dumps(to_jsonable(obj, nonfinite="tag"), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _safe_relpath(name: Any, *, what: str, source: Path) -> PurePosixPath:
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


def _save_arrays(path: Path, arrays: dict[str, np.ndarray], *, what: str) -> None:
    from safetensors.numpy import save

    clean = {}
    for key, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind not in "biuf":
            raise CheckpointError(f"cannot save {what} array {key!r}: dtype {value.dtype} is not "
                                  "numeric (safetensors stores numbers only)")
        clean[key] = np.ascontiguousarray(value)
    write_bytes(path, save(clean))


def _array_index(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    return {k: {"dtype": str(np.asarray(v).dtype), "shape": list(np.shape(v))} for k, v in sorted(arrays.items())}


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / MANIFEST_FILE).is_file()


def manifest_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a checkpoint's ``manifest.json``: what ``expect_sha256`` pins."""
    return hashlib.sha256((Path(path) / MANIFEST_FILE).read_bytes()).hexdigest()


def _is_int(value: Any) -> bool:
    return type(value) is int  # noqa: E721 - bool is an int subclass and is NOT a version or a size


def _check_version(value: Any, source: Path) -> None:
    if not _is_int(value):
        raise CheckpointError(f"{source}: field 'format_version' must be an integer, got {value!r}")
    if value != FORMAT_VERSION:
        raise CheckpointError(f"{source}: unknown checkpoint format_version {value!r} (field 'format_version'; "
                              f"this routecast reads version {FORMAT_VERSION}); re-export it with this version")


# --------------------------------------------------------------------------- save
def save_checkpoint(router: "Router", out_dir: str | os.PathLike, *, extra: dict[str, Any] | None = None,
                    onnx: bool = False, sign_key: str | os.PathLike | None = None) -> Path:
    """Write ``router`` as a checkpoint folder at ``out_dir`` and return its path.

    Routers whose head is a torch network on embeddings (``net_``: mlp, mf, irt) always get
    ``head.onnx``: embeddings (batch, dim) float32 -> raw scores (batch, n_models), checked against
    torch with onnxruntime before it is written. A loaded checkpoint routes with ``head.onnx``,
    torch installed or not (a single-prompt torch forward is far slower; routecast.router.net_state);
    with torch the safetensors weights still rebuild ``net_``. It also serves outside Python.
    ``onnx=True`` demands it (an error for other routers). ``sign_key`` (an ed25519 private key
    file) adds ``manifest.sig``.

    The folder is built next to ``out_dir`` and renamed into place, so a reader never sees half a
    checkpoint; an existing checkpoint at ``out_dir`` is replaced. ``extra`` (JSON) is stored in
    ``config.json`` under ``"extra"`` (run metadata, metrics...). Files are 0644, folders 0755.
    """
    from routecast import __version__

    out_dir = Path(out_dir)
    name = type(router).name or ""
    if getattr(router, "evaluation_only", False):
        raise CheckpointError(f"router {name!r} is evaluation-only (it reads the answers it is scored on) "
                              "and cannot be exported or served")
    if not name:
        raise CheckpointError(f"{type(router).__name__} is not registered (use @register_router) "
                              "and could not be loaded back; refusing to export it")
    try:
        meta, arrays = router.get_state()
    except TypeError as exc:
        raise CheckpointError(f"router {name!r} state is not serialisable: {exc}") from None

    models = list(router.models_)
    costs = np.asarray(getattr(router, "costs_", np.full(len(models), np.nan)), dtype=np.float64)
    if costs.ndim != 1 or len(costs) != len(models):
        costs = np.full(len(models), np.nan)
    encoder_entry = None
    encoder = router.get_encoder() if getattr(router, "uses_embeddings", True) else None

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        _save_arrays(tmp / WEIGHTS_FILE, arrays, what="router")
        if encoder is not None:
            encoder_entry = ship_encoder(encoder, tmp)
        onnx_entry = _write_onnx_head(router, tmp / ONNX_HEAD_FILE, required=onnx)
        config = {
            "format_version": FORMAT_VERSION,
            "routecast_version": __version__,
            "router_type": name,
            "family": getattr(router, "family", None),
            "hyperparameters": router.get_params(),
            "state": meta,
            "arrays": _array_index(arrays),
            "weights": WEIGHTS_FILE,
            "models": [{"name": m, "expected_cost": float(c)} for m, c in zip(models, costs)],
            "encoder": encoder_entry,
            "onnx_head": onnx_entry,
            "extra": extra or {},
        }
        try:
            config_text = _dump_json(config)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"router {name!r}: hyperparameters or learned state are not JSON "
                                  f"({exc}); cannot write {CONFIG_FILE}") from None
        write_text(tmp / CONFIG_FILE, config_text)
        files = {}
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            rel = path.relative_to(tmp).as_posix()
            files[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
        manifest_text = _dump_json({"format_version": FORMAT_VERSION, "files": files})
        write_text(tmp / MANIFEST_FILE, manifest_text)
        if sign_key is not None:
            _write_signature(tmp, manifest_text.encode("utf-8"), sign_key)
        make_shareable(tmp)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_onnx_head(router: "Router", path: Path, *, required: bool) -> dict[str, Any] | None:
    """``head.onnx`` for a torch-head router (see :func:`save_checkpoint`), else None (or the refusal)."""
    from routecast.router.net_state import has_torch_net

    shipped = router.onnx_head_bytes() if has_torch_net(router) else None
    if shipped is not None:  # loaded without torch: write back the graph it routes with
        write_bytes(path, shipped[0])
        return shipped[1]
    if required or (has_torch_net(router) and getattr(router, "net_", None) is not None):
        return export_onnx_head(router, path)
    return None


def ship_encoder(encoder: "Encoder", folder: Path) -> dict[str, Any]:
    """Write ``encoder`` into ``folder`` (weights in ``encoder.safetensors``, or a model folder in
    ``encoder_model/``) and return its ``"encoder"`` config entry; :func:`load_shipped_encoder`
    rebuilds it. Shared by router checkpoints and anything else that ships an encoder (the cascade
    router's answer scorer), so every checkpoint is self-contained the same way."""
    entry: dict[str, Any] = {"spec": encoder.spec, "name": encoder.name, "dim": int(encoder.dim),
                             "max_chars": encoder.max_chars, "weights": None}
    enc_arrays = encoder.state_arrays() or {}
    if enc_arrays:
        _save_arrays(folder / ENCODER_WEIGHTS_FILE, enc_arrays, what="encoder")
        entry["weights"] = ENCODER_WEIGHTS_FILE
        entry["arrays"] = _array_index(enc_arrays)
    else:
        entry["spec"] = _ship_encoder_folder(encoder, folder)
    state_config = getattr(encoder, "state_config", None)
    if callable(state_config):
        entry["config"] = state_config()
    return entry


def load_shipped_encoder(root: Path, entry: Any, blobs: dict[str, bytes]) -> "Encoder":
    """The encoder of an entry written by :func:`ship_encoder` into ``root``; ``blobs`` are the
    already verified bytes of ``root``'s files (paths relative to ``root``). Same checks as a
    router checkpoint's encoder: its spec may only name files inside ``root``; its dim and name
    must match the entry."""
    config = {"encoder": entry}
    return _load_encoder(_Verified(root=Path(root), manifest_bytes=b"", manifest_sha256="", config=config,
                                   blobs=dict(blobs)))


def _ship_encoder_folder(encoder: "Encoder", tmp: Path) -> str:
    """An ``st:/folder`` encoder is copied into the checkpoint (``encoder_model/``), an ``onnx``
    encoder writes the graph it runs there (:meth:`OnnxEncoder.export_folder`: no torch needed to
    load it), and the spec is rewritten to that relative folder: a checkpoint never reads a model
    from outside itself (the ONNX export cache included)."""
    from routecast.router.encoders import parse_spec

    spec = encoder.spec
    kind, path, opts = parse_spec(spec)
    options = "".join(f",{k}={v}" for k, v in sorted(opts.items()))
    if kind == "onnx":
        encoder.export_folder(tmp / ENCODER_MODEL_DIR)
        return f"{kind}:{ENCODER_MODEL_DIR}{options}"
    if path is None or kind != "st":
        return spec
    source = Path(path)
    if not source.is_dir():
        raise CheckpointError(f"encoder {spec!r}: folder {source} not found; cannot ship it in the checkpoint")
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = file.relative_to(source)
        if any(part.startswith(".") for part in rel.parts) or file.name == "README.md":
            continue
        target = tmp / ENCODER_MODEL_DIR / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    return f"{kind}:{ENCODER_MODEL_DIR}{options}"


def _write_signature(folder: Path, manifest_bytes: bytes, sign_key: str | os.PathLike) -> None:
    from routecast.core.signing import sign_manifest

    write_bytes(folder / SIGNATURE_FILE, sign_manifest(manifest_bytes, sign_key))


def export_onnx_head(router: "Router", path: Path, *, opset: int = 17) -> dict[str, Any]:
    """Export ``router.net_`` (a torch nn.Module on embeddings) to ONNX and verify it with onnxruntime."""
    import warnings

    net = getattr(router, "net_", None)
    in_dim = (getattr(router, "net_config_", None) or {}).get("in_dim")
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is None or not isinstance(net, torch.nn.Module) or not isinstance(in_dim, int):
        raise CheckpointError(f"router {type(router).name!r} has no torch head on embeddings (net_ + "
                              "net_config_['in_dim']); only such routers (mlp, mf) export to ONNX")
    import onnxruntime as ort

    from routecast.atomic import atomic_path
    from routecast.router.quality_net import predict_logits

    net.eval()
    dummy = torch.zeros((2, in_dim), dtype=torch.float32)
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (dummy,), str(tmp), dynamo=False, input_names=["embeddings"], output_names=["scores"],
                          dynamic_axes={"embeddings": {0: "batch"}, "scores": {0: "batch"}}, opset_version=opset)
    probe = np.random.default_rng(0).normal(size=(16, in_dim)).astype(np.float32)
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["scores"], {"embeddings": probe})[0]
    expected = predict_logits(net, probe)
    if not np.allclose(got, expected, atol=1e-4, rtol=1e-4):
        raise CheckpointError(f"{path}: ONNX head differs from torch (max abs diff "
                              f"{float(np.abs(got - expected).max()):.2e}); not exported")
    return {"file": ONNX_HEAD_FILE, "input": "embeddings", "output": "scores", "in_dim": in_dim,
            "opset": opset, "note": "raw network scores; the router's _predict_quality maps them to quality"}


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move a finished folder into place; an existing target is swapped out, then deleted."""
    if target.exists() or target.is_symlink():
        if not target.is_dir() or target.is_symlink():
            raise CheckpointError(f"{target} exists and is not a checkpoint folder; refusing to overwrite it")
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        old.rmdir()
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def copy_checkpoint(src: str | os.PathLike, out_dir: str | os.PathLike, *,
                    sign_key: str | os.PathLike | None = None, **trust: Any) -> Path:
    """Copy a verified checkpoint folder to ``out_dir`` atomically (only manifest-listed files).

    The bytes written are the bytes that were verified (read once); an existing ``manifest.sig``
    is kept, ``sign_key`` replaces it with a new signature. ``trust``: ``trusted_key`` /
    ``expect_sha256`` as in :func:`load_checkpoint`.
    """
    src = Path(src)
    verified = _read_verified(src, **trust)
    out_dir = Path(out_dir)
    if out_dir.resolve() == src.resolve():
        if sign_key is not None:
            _write_signature(src, verified.manifest_bytes, sign_key)
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        blobs = {**verified.blobs, MANIFEST_FILE: verified.manifest_bytes}
        if verified.signature is not None and sign_key is None:
            blobs[SIGNATURE_FILE] = verified.signature
        for rel, data in blobs.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            write_bytes(tmp / rel, data)
        if sign_key is not None:
            _write_signature(tmp, verified.manifest_bytes, sign_key)
        make_shareable(tmp)
        _read_verified(tmp, expect_sha256=verified.manifest_sha256)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def export_checkpoint(source: str | os.PathLike, out_dir: str | os.PathLike, *, onnx: bool = False,
                      sign_key: str | os.PathLike | None = None, **trust: Any) -> "Router":
    """Export a run folder's ``router/`` checkpoint (or a checkpoint folder) to ``out_dir``.

    The router is fully loaded and validated first, so a checkpoint that cannot be served is never
    exported; ``onnx`` re-saves it with ``head.onnx`` (torch-head routers); ``sign_key`` signs the
    manifest. Holds the output lock of ``out_dir`` (a second export into it fails at once).
    Returns the loaded router; :func:`manifest_sha256` of ``out_dir`` is the hash to pin.
    """
    source = Path(source)
    if is_checkpoint_dir(source):
        ckpt = source
    elif is_checkpoint_dir(source / "router"):
        ckpt = source / "router"
    else:
        raise CheckpointError(f"{source}: neither a checkpoint folder (config.json + manifest.json) nor a run "
                              "folder with a router/ checkpoint")
    try:
        with out_lock(out_dir), sigterm_as_exception():  # SIGTERM unwinds: the temp folder is removed
            loaded = open_checkpoint(ckpt, **trust)
            if onnx:
                save_checkpoint(loaded.router, out_dir, extra=loaded.config.get("extra") or {}, onnx=True,
                                sign_key=sign_key)
            else:
                copy_checkpoint(ckpt, out_dir, sign_key=sign_key, expect_sha256=loaded.manifest_sha256)
    except Terminated as exc:
        raise CheckpointError(f"{out_dir}: export interrupted ({exc}); nothing was written") from None
    return loaded.router


# --------------------------------------------------------------------------- read once, verify
@dataclass
class _Verified:
    """A checkpoint folder's files, each read once, size-capped and hash-checked against the manifest."""

    root: Path
    manifest_bytes: bytes
    manifest_sha256: str
    config: dict[str, Any]
    blobs: dict[str, bytes] = field(default_factory=dict)
    signature: bytes | None = None
    signed_by: str | None = None


def _read_capped(path: Path, *, cap: int, expected_size: int | None, what: str) -> bytes:
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
            raise CheckpointError(f"{path}: size {size} bytes differs from the manifest ({expected_size}); "
                                  "the file is truncated or modified")
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


def _parse_json_bytes(data: bytes, source: Path) -> Any:
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


def _normalise_sha256(value: Any) -> str:
    text = value.strip().lower() if isinstance(value, str) else ""
    if not _HEX64.fullmatch(text):
        raise ConfigError(f"expect_sha256 must be 64 hexadecimal digits (the sha256 of manifest.json), got {value!r}")
    return text


def _listed_files(root: Path, manifest: Any, manifest_path: Path) -> dict[str, dict]:
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{manifest_path}: field 'files': expected an object with a 'files' table")
    _check_version(manifest.get("format_version"), manifest_path)
    listed: dict[str, dict] = {}
    for name, entry in manifest["files"].items():
        rel = _safe_relpath(name, what="manifest entry", source=manifest_path)
        if rel.as_posix() in (MANIFEST_FILE, SIGNATURE_FILE):
            raise CheckpointError(f"{manifest_path}: field 'files': the manifest must not list {rel.as_posix()}")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or not _is_int(entry.get("size")) or entry["size"] < 0:
            raise CheckpointError(f"{manifest_path}: entry {name!r} needs a sha256 string and an integer size")
        listed[rel.as_posix()] = entry
    # every file present must be listed (no slipped-in pickle), and nothing may be a symlink
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for item_name in sorted(dirnames + filenames):
            item = Path(dirpath) / item_name
            rel = item.relative_to(root).as_posix()
            if item.is_symlink():
                raise CheckpointError(f"{item}: symlinks are not allowed inside a checkpoint")
            if item_name in dirnames:
                continue
            if rel not in (MANIFEST_FILE, SIGNATURE_FILE) and rel not in listed:
                raise CheckpointError(f"{item}: file is not listed in {MANIFEST_FILE}; refusing a checkpoint "
                                      "with unlisted files (was it tampered with?)")
    if CONFIG_FILE not in listed:
        raise CheckpointError(f"{manifest_path}: field 'files' does not list {CONFIG_FILE}")
    return listed


def _declared_arrays(index: Any, *, source: Path, field_name: str, max_array_bytes: int) -> int:
    """Check an array index of config.json (name -> dtype, shape) and return the bytes it declares."""
    if not isinstance(index, dict):
        raise CheckpointError(f"{source}: field {field_name!r} must map array names to dtype and shape")
    total = 0
    for key, spec in index.items():
        where = f"{field_name}.{key}"
        if not isinstance(spec, dict) or spec.get("dtype") not in _DTYPE_BYTES or not isinstance(spec.get("shape"), list) \
                or not all(_is_int(d) and d >= 0 for d in spec["shape"]) or len(spec["shape"]) > 8:
            raise CheckpointError(f"{source}: field {where!r} needs a numeric dtype ({', '.join(_DTYPE_BYTES)}) "
                                  f"and a shape of non-negative integers, got {spec!r}")
        nbytes = _DTYPE_BYTES[spec["dtype"]] * math.prod(spec["shape"])
        if nbytes > max_array_bytes:
            raise CheckpointError(f"{source}: field {where!r} declares {nbytes:,} bytes, above the "
                                  f"{max_array_bytes:,}-byte cap per array (max_array_bytes); refused without reading it")
        total += nbytes
    return total


def _file_caps(config: dict, cfg_path: Path, max_array_bytes: int) -> dict[str, int]:
    """Per-file byte caps derived from what config.json declares (before those files are read)."""
    caps: dict[str, int] = {}

    def cap_for(index: Any, field_name: str) -> int:
        declared = _declared_arrays(index, source=cfg_path, field_name=field_name, max_array_bytes=max_array_bytes)
        return 8 + declared + _HEADER_SLACK + _HEADER_BYTES_PER_ARRAY * len(index)

    weights = config.get("weights")
    if isinstance(weights, str):
        caps[weights] = cap_for(config.get("arrays"), "arrays")
    encoder = config.get("encoder")
    if isinstance(encoder, dict) and isinstance(encoder.get("weights"), str):
        caps[encoder["weights"]] = cap_for(encoder.get("arrays"), "encoder.arrays")
    return caps


def _read_verified(path: str | os.PathLike, *, trusted_key: str | os.PathLike | None = None,
                   expect_sha256: str | None = None, max_array_bytes: int = MAX_ARRAY_BYTES) -> _Verified:
    """Integrity (and, with a pin or a key, authenticity) of a checkpoint folder; every file read once."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"{root}: checkpoint folder not found")
    pinned = None if expect_sha256 is None else _normalise_sha256(expect_sha256)
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.exists() and not manifest_path.is_symlink():
        raise CheckpointError(f"{manifest_path}: missing (not a routecast checkpoint folder?)")
    manifest_bytes = _read_capped(manifest_path, cap=MAX_MANIFEST_BYTES, expected_size=None, what="manifest")
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    if pinned is not None and not hmac.compare_digest(digest, pinned):
        raise CheckpointError(f"{manifest_path}: sha256 {digest} is not the pinned {pinned} (expect_sha256); "
                              "the checkpoint is not the one you pinned")
    signature_path = root / SIGNATURE_FILE
    signature = None
    if signature_path.exists() or signature_path.is_symlink():
        signature = _read_capped(signature_path, cap=MAX_SIGNATURE_BYTES, expected_size=None, what="signature")
    signed_by = None
    if trusted_key is not None:
        from routecast.core.signing import verify_manifest_signature

        signed_by = verify_manifest_signature(manifest_bytes, signature, trusted_key, source=signature_path)
    manifest = _parse_json_bytes(manifest_bytes, manifest_path)
    listed = _listed_files(root, manifest, manifest_path)

    def read_listed(rel: str, cap: int) -> bytes:
        entry = listed[rel]
        file = root / rel
        data = _read_capped(file, cap=cap, expected_size=entry["size"], what="listed file")
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), entry["sha256"].lower()):
            raise CheckpointError(f"{file}: sha256 does not match the manifest; the file was modified")
        return data

    cfg_path = root / CONFIG_FILE
    blobs = {CONFIG_FILE: read_listed(CONFIG_FILE, MAX_CONFIG_BYTES)}
    config = _parse_json_bytes(blobs[CONFIG_FILE], cfg_path)
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path}: expected a JSON object")
    _check_version(config.get("format_version"), cfg_path)
    caps = _file_caps(config, cfg_path, max_array_bytes)
    for rel in sorted(listed):
        if rel not in blobs:
            blobs[rel] = read_listed(rel, caps.get(rel, MAX_OTHER_FILE_BYTES))
    return _Verified(root=root, manifest_bytes=manifest_bytes, manifest_sha256=digest,
                     config=restore_tagged(config), blobs=blobs, signature=signature, signed_by=signed_by)


# --------------------------------------------------------------------------- meaning
def _check_models(config: dict, cfg_path: Path) -> tuple[list[str], np.ndarray]:
    """Model names unique, stripped, printable; expected costs non-negative, finite or unknown (NaN/null)."""
    models = config["models"]
    if not isinstance(models, list) or len(models) < 2:
        raise CheckpointError(f"{cfg_path}: field 'models' must list at least two candidate models")
    names, costs = [], []
    for i, entry in enumerate(models):
        where = f"models[{i}]"
        if not isinstance(entry, dict):
            raise CheckpointError(f"{cfg_path}: field {where!r} must be an object with name and expected_cost")
        name = entry.get("name")
        if not isinstance(name, str) or not name or len(name) > MAX_MODEL_NAME:
            raise CheckpointError(f"{cfg_path}: field '{where}.name' must be a non-empty string of at most "
                                  f"{MAX_MODEL_NAME} characters, got {name!r}")
        if name != name.strip() or not name.isprintable():
            raise CheckpointError(f"{cfg_path}: field '{where}.name' {name!r} has surrounding spaces or control "
                                  "characters (CR, LF, tabs...); model names must be stripped and printable")
        if name in names:
            raise CheckpointError(f"{cfg_path}: field '{where}.name': model {name!r} is listed twice "
                                  f"(first as models[{names.index(name)}])")
        cost = entry.get("expected_cost")
        if cost is None:
            cost = math.nan  # declared unknown
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or math.isinf(cost) or cost < 0:
            raise CheckpointError(f"{cfg_path}: field '{where}.expected_cost' must be a non-negative finite number "
                                  f"or unknown (NaN/null), got {cost!r}")
        names.append(name)
        costs.append(float(cost))
    return names, np.asarray(costs, dtype=np.float64)


def _check_arrays(arrays: dict[str, np.ndarray], index: dict, *, file: Path, nan_ok: frozenset[str]) -> None:
    """The parsed arrays are exactly the declared ones, of the declared dtype and shape, and finite."""
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


def _parse_arrays(data: bytes, file: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from None


def _referenced(verified: _Verified, name: Any, *, what: str) -> tuple[str, Path]:
    rel = _safe_relpath(name, what=what, source=verified.root / CONFIG_FILE).as_posix()
    if rel not in verified.blobs:
        raise CheckpointError(f"{verified.root / rel}: {what} named in {CONFIG_FILE} is missing")
    return rel, verified.root / rel


def _check_costs(router: "Router", config_costs: np.ndarray, cfg_path: Path, weights: Path) -> None:
    costs = np.asarray(getattr(router, "costs_", config_costs), dtype=np.float64)
    if costs.shape != config_costs.shape:
        raise CheckpointError(f"{weights}: array 'costs_' has shape {list(costs.shape)}, {CONFIG_FILE} lists "
                              f"{len(config_costs)} models")
    if (costs < 0).any() or np.isinf(costs).any():
        raise CheckpointError(f"{weights}: array 'costs_' holds a negative or infinite cost")
    same = (np.isnan(costs) == np.isnan(config_costs)) & (np.isnan(costs) | np.isclose(costs, config_costs, rtol=1e-9,
                                                                                      atol=0.0))
    if not same.all():
        i = int(np.flatnonzero(~same)[0])
        raise CheckpointError(f"{cfg_path}: field 'models[{i}].expected_cost' is {float(config_costs[i])!r} but "
                              f"array 'costs_' in {weights.name} says {float(costs[i])!r}; the costs disagree")


def _check_calibration(router: "Router", n_models: int, cfg_path: Path) -> None:
    calibration = getattr(router, "calibration_", None)
    if calibration is None:
        return
    from routecast.core.curve import Curve

    if not isinstance(calibration, dict):
        raise CheckpointError(f"{cfg_path}: field 'state.calibration_' must be an object or null")
    try:
        curve = Curve.from_dict(calibration)
    except (RoutingError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path}: field 'state.calibration_' is not a valid operating curve: {exc}") from None
    if not -1 <= curve.strong < n_models:
        raise CheckpointError(f"{cfg_path}: field 'state.calibration_.strong' = {curve.strong} is not a model index")


def _probe(router: "Router", n_models: int, weights: Path, dim: Any) -> None:
    """Route one prompt: a head that does not fit the encoder, or that overflows, fails at load."""
    try:
        # encoded here, as the runtime does: never through the on-disk embedding cache at load time
        X = router.get_encoder().encode([PROBE_PROMPT]) if getattr(router, "uses_embeddings", True) else None
        quality = np.asarray(router.predict_quality([PROBE_PROMPT], embeddings=X), dtype=np.float64)
    except (ValueError, TypeError, IndexError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{weights}: the router's arrays do not fit its encoder ({CONFIG_FILE} field "
                              f"'encoder.dim' = {dim}): {exc}") from None
    if quality.shape != (1, n_models):
        raise CheckpointError(f"{weights}: the router predicts shape {list(quality.shape)} for one prompt, "
                              f"expected [1, {n_models}] ({CONFIG_FILE} field 'models')")
    if not np.isfinite(quality).all():
        raise CheckpointError(f"{weights}: the router predicts a non-finite quality for a plain prompt "
                              "(overflowing or NaN weights)")


def _build_router(verified: _Verified) -> "Router":
    """Semantic validation of a verified folder, then the router (and its encoder) built from its bytes."""
    from routecast.core.registry import make_router

    root, config = verified.root, verified.config
    cfg_path = root / CONFIG_FILE
    for key in ("router_type", "hyperparameters", "state", "arrays", "weights", "models"):
        if key not in config:
            raise CheckpointError(f"{cfg_path}: field {key!r} is missing")
    router_type = config["router_type"]
    if not isinstance(router_type, str):
        raise CheckpointError(f"{cfg_path}: field 'router_type' must be a string")
    hyper = config["hyperparameters"]
    if not isinstance(hyper, dict) or not isinstance(config["state"], dict):
        raise CheckpointError(f"{cfg_path}: fields 'hyperparameters' and 'state' must be JSON objects")
    model_names, config_costs = _check_models(config, cfg_path)
    try:
        router = make_router(router_type, **hyper)
    except ConfigError as exc:
        raise CheckpointError(f"{cfg_path}: router_type {router_type!r} cannot be built: {exc}") from None
    if getattr(router, "evaluation_only", False):
        raise CheckpointError(f"{cfg_path}: router {router_type!r} is evaluation-only and cannot be served")

    rel, weights = _referenced(verified, config["weights"], what="weights file")
    arrays = _parse_arrays(verified.blobs[rel], weights)
    nan_ok = NAN_OK_ARRAYS | frozenset(getattr(router, "nan_ok_arrays", ()))
    _check_arrays(arrays, config["arrays"], file=weights, nan_ok=nan_ok)
    try:
        router.set_state(config["state"], arrays)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{weights}: router {router_type!r} rejected the state: {exc}") from None
    if not hasattr(router, "models_"):
        raise CheckpointError(f"{cfg_path}: field 'state.models_' is missing (not a fitted router)")
    if model_names != list(router.models_):
        raise CheckpointError(f"{cfg_path}: field 'models' {model_names} disagrees with 'state.models_' "
                              f"{list(router.models_)}")
    _check_costs(router, config_costs, cfg_path, weights)
    _check_calibration(router, len(model_names), cfg_path)
    # strict: what the router would save now must be exactly what was loaded
    try:
        meta_now, arrays_now = router.get_state()
    except TypeError as exc:
        raise CheckpointError(f"{cfg_path}: router {router_type!r} state is inconsistent: {exc}") from None
    if set(arrays_now) != set(arrays) or set(meta_now) != set(config["state"]):
        raise CheckpointError(
            f"{cfg_path}: router {router_type!r} did not take the state as saved "
            f"(arrays now {sorted(arrays_now)}, saved {sorted(arrays)}; "
            f"meta now {sorted(meta_now)}, saved {sorted(config['state'])})")

    onnx_entry = config.get("onnx_head")
    if onnx_entry is not None:  # must stay inside the folder; routed with, torch or not (routecast.router.net_state)
        if not isinstance(onnx_entry, dict):
            raise CheckpointError(f"{cfg_path}: field 'onnx_head' must be an object")
        head_rel, head_path = _referenced(verified, onnx_entry.get("file"), what="ONNX head file")
        from routecast.router.net_state import has_torch_net

        if has_torch_net(router):
            router.attach_onnx_head(verified.blobs[head_rel], onnx_entry, source=str(head_path))
    if getattr(router, "needs_onnx_head", False):
        raise CheckpointError(f"{cfg_path}: router {router_type!r} has a torch network, torch is not installed "
                              "here and the checkpoint has no head.onnx (field 'onnx_head' is null); re-save it "
                              "where torch is installed (routecast export --onnx), or install the training "
                              "extra: pip install 'routecast[train]'")
    dim = None
    if getattr(router, "uses_embeddings", True):
        router.encoder_ = _load_encoder(verified)
        dim = router.encoder_.dim
    _probe(router, len(model_names), weights, dim)
    return router


def _encoder_spec_inside(verified: _Verified, spec: str, ships_weights: bool) -> str:
    """Confine an encoder spec to the checkpoint: a path may only name a shipped folder inside it."""
    from routecast.router.encoders import parse_spec

    cfg_path = verified.root / CONFIG_FILE
    try:
        kind, path, opts = parse_spec(spec)
    except ConfigError as exc:
        raise CheckpointError(f"{cfg_path}: field 'encoder.spec': {exc}") from None
    if path is None or (kind == "static" and ships_weights):
        return spec  # a static encoder with shipped weights never reads its path: it is only a label
    if kind == "static":
        raise CheckpointError(f"{cfg_path}: field 'encoder.spec' {spec!r} reads a static encoder from a folder "
                              f"but {CONFIG_FILE} ships no encoder weights")
    rel = _safe_relpath(path, what="field 'encoder.spec' path", source=cfg_path).as_posix()
    if not any(name.startswith(rel + "/") for name in verified.blobs):
        raise CheckpointError(f"{cfg_path}: field 'encoder.spec' {spec!r} names folder {rel!r}, which holds no "
                              f"file listed in {MANIFEST_FILE}")
    options = "".join(f",{k}={v}" for k, v in sorted(opts.items()))
    return f"{kind}:{verified.root.resolve() / rel}{options}"


def _load_encoder(verified: _Verified) -> "Encoder":
    from routecast.router import encoders as encoders_module

    root, config = verified.root, verified.config
    cfg_path = root / CONFIG_FILE
    entry = config.get("encoder")
    if not isinstance(entry, dict) or not isinstance(entry.get("spec"), str):
        raise CheckpointError(f"{cfg_path}: field 'encoder.spec' is missing; the router uses embeddings")
    spec = entry["spec"]
    dim = entry.get("dim")
    if not _is_int(dim) or not 1 <= dim <= MAX_ENCODER_DIM:
        raise CheckpointError(f"{cfg_path}: field 'encoder.dim' must be an integer in [1, {MAX_ENCODER_DIM}], "
                              f"got {dim!r}")
    enc_arrays: dict[str, np.ndarray] = {}
    weights_file = root / ENCODER_WEIGHTS_FILE
    if entry.get("weights") is not None:
        rel, weights_file = _referenced(verified, entry["weights"], what="encoder weights file")
        enc_arrays = _parse_arrays(verified.blobs[rel], weights_file)
        _check_arrays(enc_arrays, entry.get("arrays") or {}, file=weights_file, nan_ok=frozenset())
    build_spec = _encoder_spec_inside(verified, spec, bool(enc_arrays))
    enc_config = entry.get("config")
    if enc_config is not None and not isinstance(enc_config, dict):
        raise CheckpointError(f"{cfg_path}: field 'encoder.config' must be a JSON object")
    try:
        if enc_arrays:
            encoder = encoders_module.encoder_from_state(spec, enc_arrays, enc_config)
        else:
            encoder = encoders_module.get_encoder(build_spec)
    except CheckpointError as exc:
        raise CheckpointError(f"{weights_file}: {exc}") from None
    except (ConfigError, ValueError, KeyError, OSError) as exc:
        raise CheckpointError(f"{cfg_path}: field 'encoder.spec': encoder {spec!r} cannot be rebuilt: {exc}") from None
    if int(encoder.dim) != dim:
        raise CheckpointError(f"{cfg_path}: field 'encoder.dim': encoder {spec!r} has dim {encoder.dim}, "
                              f"the checkpoint says {dim}")
    if entry.get("name") is not None and encoder.name != entry["name"]:
        raise CheckpointError(f"{cfg_path}: field 'encoder.name': encoder {spec!r} rebuilt as {encoder.name!r}, "
                              f"the router was trained with {entry['name']!r} (different weights or settings)")
    if build_spec != spec:
        encoder.spec = spec  # report the checkpoint-relative spec, never this machine's absolute path
    return encoder


# --------------------------------------------------------------------------- public loading API
@dataclass
class LoadedCheckpoint:
    """A router built from a checkpoint, with the config and manifest hash of the same bytes."""

    router: "Router"
    config: dict[str, Any]
    manifest_sha256: str
    signed_by: str | None = None


def open_checkpoint(path: str | os.PathLike, *, trusted_key: str | os.PathLike | None = None,
                    expect_sha256: str | None = None, max_array_bytes: int = MAX_ARRAY_BYTES) -> LoadedCheckpoint:
    """Verify, validate and load a checkpoint folder; config and router come from one read of its files.

    ``expect_sha256``: the sha256 of ``manifest.json`` you trust (pinned hash). ``trusted_key``: a
    PEM ed25519 public key; the folder's ``manifest.sig`` must verify against it. Without either,
    the load is integrity-checked and semantically validated, but not authenticated.
    """
    verified = _read_verified(path, trusted_key=trusted_key, expect_sha256=expect_sha256,
                              max_array_bytes=max_array_bytes)
    router = _build_router(verified)
    return LoadedCheckpoint(router=router, config=verified.config, manifest_sha256=verified.manifest_sha256,
                            signed_by=verified.signed_by)


def load_checkpoint(path: str | os.PathLike, **trust: Any) -> "Router":
    """Verify and load a checkpoint folder written by :func:`save_checkpoint` (see :func:`open_checkpoint`)."""
    return open_checkpoint(path, **trust).router


def verify_checkpoint(path: str | os.PathLike, **trust: Any) -> dict[str, Any]:
    """Everything :func:`load_checkpoint` checks (the router is built and probed); returns ``config.json``.

    Refuses: a missing folder/manifest/config, an unknown or non-integer format version, a manifest
    entry that escapes the folder, a listed file that is missing or whose size/sha256 differs, any
    file (or symlink) the manifest does not list, and every semantic violation.
    """
    return open_checkpoint(path, **trust).config


def read_config(path: str | os.PathLike, **trust: Any) -> dict[str, Any]:
    """``config.json`` of an integrity-checked checkpoint (model table, router type...), without building it."""
    return _read_verified(path, **trust).config


__all__ = ["FORMAT_VERSION", "save_checkpoint", "export_onnx_head", "load_checkpoint", "open_checkpoint",
           "LoadedCheckpoint", "verify_checkpoint", "copy_checkpoint", "export_checkpoint", "read_config",
           "is_checkpoint_dir", "sha256_file", "manifest_sha256", "ship_encoder", "load_shipped_encoder"]
