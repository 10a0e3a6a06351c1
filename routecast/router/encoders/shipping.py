"""An encoder inside a checkpoint: shipped whole, rebuilt only from the checkpoint's own files.

:func:`ship_encoder` writes an encoder into a checkpoint folder (its weights in
``encoder.safetensors``, or a model folder in ``encoder_model/``) and returns its ``"encoder"``
config entry; :func:`load_encoder` rebuilds it from a verified folder. Shared by router
checkpoints and anything else that ships an encoder (the cascade router's answer scorer), so every
checkpoint is self-contained the same way: it never reads a model from outside itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from routecast.core.checkpoint import CONFIG_FILE, MANIFEST_FILE, CheckpointFolder, array_index, is_int, \
    safe_relpath, save_arrays
from routecast.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from routecast.router.encoders.base import Encoder

ENCODER_WEIGHTS_FILE = "encoder.safetensors"
ENCODER_MODEL_DIR = "encoder_model"
MAX_ENCODER_DIM = 1 << 16


def ship_encoder(encoder: "Encoder", folder: Path) -> dict[str, Any]:
    """Write ``encoder`` into ``folder`` and return its ``"encoder"`` config entry (see the module)."""
    entry: dict[str, Any] = {"spec": encoder.spec, "name": encoder.name, "dim": int(encoder.dim),
                             "max_chars": encoder.max_chars, "weights": None}
    enc_arrays = encoder.state_arrays() or {}
    if enc_arrays:
        save_arrays(folder / ENCODER_WEIGHTS_FILE, enc_arrays, what="encoder")
        entry["weights"] = ENCODER_WEIGHTS_FILE
        entry["arrays"] = array_index(enc_arrays)
    else:
        entry["spec"] = _ship_encoder_folder(encoder, folder)
    state_config = getattr(encoder, "state_config", None)
    if callable(state_config):
        entry["config"] = state_config()
    return entry


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


def _spec_inside(folder: CheckpointFolder, spec: str, ships_weights: bool) -> str:
    """Confine an encoder spec to the checkpoint: a path may only name a shipped folder inside it."""
    from routecast.router.encoders import parse_spec

    cfg_path = folder.config_path
    try:
        kind, path, opts = parse_spec(spec)
    except ConfigError as exc:
        raise CheckpointError(f"{cfg_path}: field 'encoder.spec': {exc}") from None
    if path is None or (kind == "static" and ships_weights):
        return spec  # a static encoder with shipped weights never reads its path: it is only a label
    if kind == "static":
        raise CheckpointError(f"{cfg_path}: field 'encoder.spec' {spec!r} reads a static encoder from a folder "
                              f"but {CONFIG_FILE} ships no encoder weights")
    rel = safe_relpath(path, what="field 'encoder.spec' path", source=cfg_path).as_posix()
    if not any(name.startswith(rel + "/") for name in folder.blobs):
        raise CheckpointError(f"{cfg_path}: field 'encoder.spec' {spec!r} names folder {rel!r}, which holds no "
                              f"file listed in {MANIFEST_FILE}")
    options = "".join(f",{k}={v}" for k, v in sorted(opts.items()))
    return f"{kind}:{folder.root.resolve() / rel}{options}"


def load_encoder(folder: CheckpointFolder) -> "Encoder":
    """The encoder of ``folder``'s ``"encoder"`` entry, written by :func:`ship_encoder`. Its spec may
    only name files inside the folder; its dim and name must match the entry."""
    from routecast.router import encoders as encoders_module

    cfg_path = folder.config_path
    entry = folder.config.get("encoder")
    if not isinstance(entry, dict) or not isinstance(entry.get("spec"), str):
        raise CheckpointError(f"{cfg_path}: field 'encoder.spec' is missing; the router uses embeddings")
    spec = entry["spec"]
    dim = entry.get("dim")
    if not is_int(dim) or not 1 <= dim <= MAX_ENCODER_DIM:
        raise CheckpointError(f"{cfg_path}: field 'encoder.dim' must be an integer in [1, {MAX_ENCODER_DIM}], "
                              f"got {dim!r}")
    enc_arrays: dict[str, np.ndarray] = {}
    weights_file = folder.root / ENCODER_WEIGHTS_FILE
    if entry.get("weights") is not None:
        enc_arrays, weights_file = folder.arrays(entry, what="encoder weights file")
    build_spec = _spec_inside(folder, spec, bool(enc_arrays))
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
