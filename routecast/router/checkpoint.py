"""Router checkpoints: a folder of JSON + safetensors that can be loaded without trusting it.

Layout (``format_version`` 1)::

    CKPT/
      config.json          router type (registry name), hyperparameters, learned JSON state,
                           candidate models with expected costs, encoder spec, routecast version
      model.safetensors    the router's learned arrays (``Router.get_state()[1]``)
      encoder.safetensors  only when the encoder carries weights (``Encoder.state_arrays()``)
      manifest.json        sha256 + size of every other file

WHY this shape: a checkpoint is a file somebody may hand you. Loading it must never execute code
from it, so there is no pickle anywhere; arrays are read with ``safetensors.numpy.load_file``, the
router class is resolved only through the registry by name (nothing named in a file is imported),
every file is hash-checked against the manifest, a file the manifest does not list (a slipped-in
``.pkl``) or a listed file that is missing is refused, and every file name referenced by the
config must stay inside the folder. Any violation raises :class:`CheckpointError` naming the cause
and the file.

Encoders with weights (the "static" encoder: token vectors + tokenizer) ship them inside the
checkpoint: ``Encoder.state_arrays()`` goes to ``encoder.safetensors`` and ``Encoder.state_config()``
(JSON) into ``config.json`` under ``encoder.config``; loading rebuilds the encoder with
``routecast.router.encoders.encoder_from_state(spec, arrays, config)``, so a served router never
depends on a cache folder of the machine that trained it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from routecast.atomic import write_bytes, write_text
from routecast.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from routecast.router.base import Router
    from routecast.router.encoders.base import Encoder

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "model.safetensors"
ENCODER_WEIGHTS_FILE = "encoder.safetensors"
ONNX_HEAD_FILE = "head.onnx"


# --------------------------------------------------------------------------- helpers
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats (NaN costs, inf) by tagged strings so config.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _json_restore(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__float__"} and value["__float__"] in ("nan", "inf", "-inf"):
            return float(value["__float__"])
        return {k: _json_restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_restore(v) for v in value]
    return value


def _dump_json(obj: Any) -> str:
    return json.dumps(_json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


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


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def _array_index(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    return {k: {"dtype": str(np.asarray(v).dtype), "shape": list(np.shape(v))} for k, v in sorted(arrays.items())}


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / MANIFEST_FILE).is_file()


# --------------------------------------------------------------------------- save
def save_checkpoint(router: "Router", out_dir: str | os.PathLike, *, extra: dict[str, Any] | None = None,
                    onnx: bool = False) -> Path:
    """Write ``router`` as a checkpoint folder at ``out_dir`` and return its path.

    ``onnx=True`` also writes ``head.onnx`` for routers whose head is a torch network (``net_``,
    e.g. mlp, mf): embeddings (batch, dim) float32 -> raw scores (batch, n_models), checked against
    torch with onnxruntime before it is written; for serving outside Python. The Python runtime
    keeps using the safetensors weights.

    The folder is built next to ``out_dir`` and renamed into place, so a reader never sees half a
    checkpoint; an existing checkpoint at ``out_dir`` is replaced. ``extra`` (JSON) is stored in
    ``config.json`` under ``"extra"`` (run metadata, metrics...).
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
    encoder = None
    if getattr(router, "uses_embeddings", True):
        encoder = router.get_encoder()
        encoder_entry = {"spec": encoder.spec, "name": encoder.name, "dim": int(encoder.dim),
                         "max_chars": encoder.max_chars, "weights": None}

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a checkpoint folder is meant to be shared
    try:
        _save_arrays(tmp / WEIGHTS_FILE, arrays, what="router")
        if encoder is not None:
            enc_arrays = encoder.state_arrays() or {}
            if enc_arrays:
                _save_arrays(tmp / ENCODER_WEIGHTS_FILE, enc_arrays, what="encoder")
                encoder_entry["weights"] = ENCODER_WEIGHTS_FILE
                encoder_entry["arrays"] = _array_index(enc_arrays)
            state_config = getattr(encoder, "state_config", None)
            if callable(state_config):
                encoder_entry["config"] = state_config()
        onnx_entry = export_onnx_head(router, tmp / ONNX_HEAD_FILE) if onnx else None
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
        write_text(tmp / MANIFEST_FILE, _dump_json({"format_version": FORMAT_VERSION, "files": files}))
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


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


def copy_checkpoint(src: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Copy a verified checkpoint folder to ``out_dir`` atomically (only manifest-listed files)."""
    src = Path(src)
    verify_checkpoint(src)
    out_dir = Path(out_dir)
    if out_dir.resolve() == src.resolve():
        return out_dir
    manifest = _read_json(src / MANIFEST_FILE)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        for rel in list(manifest["files"]) + [MANIFEST_FILE]:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            write_bytes(tmp / rel, (src / rel).read_bytes())
        verify_checkpoint(tmp)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# --------------------------------------------------------------------------- load
def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (not a routecast checkpoint folder?)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None


def verify_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Check the folder against its manifest and return the parsed ``config.json``.

    Refuses: a missing folder/manifest/config, an unknown format version, a manifest entry that
    escapes the folder, a listed file that is missing or whose size/sha256 differs, and any file
    (or symlink) in the folder that the manifest does not list.
    """
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"{root}: checkpoint folder not found")
    manifest_path = root / MANIFEST_FILE
    manifest = _read_json(manifest_path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{manifest_path}: expected an object with a 'files' table")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{manifest_path}: unknown checkpoint format_version {version!r} "
                              f"(this routecast reads version {FORMAT_VERSION})")
    listed: dict[str, dict] = {}
    for name, entry in manifest["files"].items():
        rel = _safe_relpath(name, what="manifest entry", source=manifest_path)
        if rel.as_posix() == MANIFEST_FILE:
            raise CheckpointError(f"{manifest_path}: the manifest must not list itself")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or not isinstance(entry.get("size"), int):
            raise CheckpointError(f"{manifest_path}: entry {name!r} needs a sha256 string and an integer size")
        listed[rel.as_posix()] = entry
    # every file present must be listed (no slipped-in pickle), and nothing may be a symlink
    for item in sorted(root.rglob("*")):
        rel = item.relative_to(root).as_posix()
        if item.is_symlink():
            raise CheckpointError(f"{item}: symlinks are not allowed inside a checkpoint")
        if item.is_dir():
            continue
        if rel != MANIFEST_FILE and rel not in listed:
            raise CheckpointError(f"{item}: file is not listed in {MANIFEST_FILE}; refusing a checkpoint "
                                  "with unlisted files (was it tampered with?)")
    for rel, entry in listed.items():
        file = root / rel
        if not file.is_file():
            raise CheckpointError(f"{file}: listed in {MANIFEST_FILE} but missing")
        size = file.stat().st_size
        if size != entry["size"]:
            raise CheckpointError(f"{file}: size {size} bytes differs from the manifest ({entry['size']}); "
                                  "the file is truncated or modified")
        if sha256_file(file) != entry["sha256"]:
            raise CheckpointError(f"{file}: sha256 does not match the manifest; the file was modified")
    if CONFIG_FILE not in listed:
        raise CheckpointError(f"{manifest_path}: does not list {CONFIG_FILE}")
    config = _read_json(root / CONFIG_FILE)
    if not isinstance(config, dict):
        raise CheckpointError(f"{root / CONFIG_FILE}: expected a JSON object")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{root / CONFIG_FILE}: unknown checkpoint format_version "
                              f"{config.get('format_version')!r} (this routecast reads version {FORMAT_VERSION})")
    return _json_restore(config)


def _referenced(root: Path, config: dict, name: Any, *, what: str) -> Path:
    rel = _safe_relpath(name, what=what, source=root / CONFIG_FILE)
    file = root / rel
    if not file.is_file():
        raise CheckpointError(f"{file}: {what} named in {CONFIG_FILE} is missing")
    return file


def load_checkpoint(path: str | os.PathLike) -> "Router":
    """Verify and load a checkpoint folder written by :func:`save_checkpoint`."""
    from routecast.router.registry import make_router

    root = Path(path)
    config = verify_checkpoint(root)
    cfg_path = root / CONFIG_FILE
    for key in ("router_type", "hyperparameters", "state", "arrays", "weights", "models"):
        if key not in config:
            raise CheckpointError(f"{cfg_path}: missing key {key!r}")
    router_type = config["router_type"]
    if not isinstance(router_type, str):
        raise CheckpointError(f"{cfg_path}: router_type must be a string")
    hyper = config["hyperparameters"]
    if not isinstance(hyper, dict) or not isinstance(config["state"], dict):
        raise CheckpointError(f"{cfg_path}: hyperparameters and state must be JSON objects")
    try:
        router = make_router(router_type, **hyper)
    except ConfigError as exc:
        raise CheckpointError(f"{cfg_path}: router_type {router_type!r} cannot be built: {exc}") from None
    if getattr(router, "evaluation_only", False):
        raise CheckpointError(f"{cfg_path}: router {router_type!r} is evaluation-only and cannot be served")

    arrays = _load_arrays(_referenced(root, config, config["weights"], what="weights file"))
    expected = set(config["arrays"])
    found = set(arrays)
    if found != expected:
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        raise CheckpointError(f"{root / config['weights']}: arrays do not match {CONFIG_FILE} "
                              f"(missing: {missing or 'none'}; unexpected: {unexpected or 'none'})")
    for key, spec in config["arrays"].items():
        if list(arrays[key].shape) != list(spec.get("shape", [])) or str(arrays[key].dtype) != spec.get("dtype"):
            raise CheckpointError(f"{root / config['weights']}: array {key!r} has shape {arrays[key].shape} "
                                  f"dtype {arrays[key].dtype}, config says {spec}")
    try:
        router.set_state(config["state"], arrays)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{root / config['weights']}: router {router_type!r} rejected the state: {exc}") from None
    if not hasattr(router, "models_"):
        raise CheckpointError(f"{cfg_path}: state has no 'models_' (not a fitted router)")
    model_names = [m.get("name") if isinstance(m, dict) else None for m in config["models"]]
    if model_names != list(router.models_):
        raise CheckpointError(f"{cfg_path}: model table {model_names} disagrees with the router state "
                              f"{list(router.models_)}")
    # strict: what the router would save now must be exactly what was loaded
    try:
        meta_now, arrays_now = router.get_state()
    except TypeError as exc:
        raise CheckpointError(f"{cfg_path}: router {router_type!r} state is inconsistent: {exc}") from None
    if set(arrays_now) != found or set(meta_now) != set(config["state"]):
        raise CheckpointError(
            f"{cfg_path}: router {router_type!r} did not take the state as saved "
            f"(arrays now {sorted(arrays_now)}, saved {sorted(found)}; "
            f"meta now {sorted(meta_now)}, saved {sorted(config['state'])})")

    onnx_entry = config.get("onnx_head")
    if onnx_entry is not None:  # not loaded by the Python runtime, but must stay inside the folder
        if not isinstance(onnx_entry, dict):
            raise CheckpointError(f"{cfg_path}: onnx_head must be an object")
        _referenced(root, config, onnx_entry.get("file"), what="ONNX head file")
    if getattr(router, "uses_embeddings", True):
        router.encoder_ = _load_encoder(root, config)
    return router


def _load_encoder(root: Path, config: dict) -> "Encoder":
    from routecast.router import encoders as encoders_module

    cfg_path = root / CONFIG_FILE
    entry = config.get("encoder")
    if not isinstance(entry, dict) or not isinstance(entry.get("spec"), str):
        raise CheckpointError(f"{cfg_path}: router uses embeddings but 'encoder' has no spec")
    spec = entry["spec"]
    enc_arrays: dict[str, np.ndarray] = {}
    if entry.get("weights") is not None:
        enc_arrays = _load_arrays(_referenced(root, config, entry["weights"], what="encoder weights file"))
        expected = set((entry.get("arrays") or {}))
        if set(enc_arrays) != expected:
            raise CheckpointError(f"{root / entry['weights']}: encoder arrays {sorted(enc_arrays)} do not "
                                  f"match {CONFIG_FILE} ({sorted(expected)})")
    enc_config = entry.get("config")
    if enc_config is not None and not isinstance(enc_config, dict):
        raise CheckpointError(f"{cfg_path}: encoder 'config' must be a JSON object")
    try:
        if enc_arrays:
            encoder = encoders_module.encoder_from_state(spec, enc_arrays, enc_config)
        else:
            encoder = encoders_module.get_encoder(spec)
    except CheckpointError as exc:
        raise CheckpointError(f"{root / ENCODER_WEIGHTS_FILE}: {exc}") from None
    except (ConfigError, ValueError, KeyError, OSError) as exc:
        raise CheckpointError(f"{cfg_path}: encoder {spec!r} cannot be rebuilt: {exc}") from None
    if int(encoder.dim) != int(entry.get("dim", encoder.dim)):
        raise CheckpointError(f"{cfg_path}: encoder {spec!r} has dim {encoder.dim}, checkpoint says {entry.get('dim')}")
    if entry.get("name") is not None and encoder.name != entry["name"]:
        raise CheckpointError(f"{cfg_path}: encoder {spec!r} rebuilt as {encoder.name!r}, the router was "
                              f"trained with {entry['name']!r} (different weights or settings)")
    return encoder


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of a verified checkpoint (model table, router type...), without loading arrays."""
    return verify_checkpoint(path)


__all__ = ["FORMAT_VERSION", "save_checkpoint", "export_onnx_head", "load_checkpoint", "verify_checkpoint", "copy_checkpoint",
           "read_config", "is_checkpoint_dir", "sha256_file"]
