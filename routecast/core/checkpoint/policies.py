"""Policies in checkpoints: each component saves and loads its own state; the format knows no type.

A policy class (a router, a cascade router...) implements two hooks, as sentence-transformers'
modules do:

* ``policy.checkpoint_state(folder, **options) -> dict``: write its own files into ``folder``
  (arrays through :func:`~routecast.core.checkpoint.arrays.save_arrays`, encoders, sub-components
  through :func:`write_component`) and return its JSON entries of ``config.json``;
* ``cls.from_checkpoint(folder: CheckpointFolder) -> policy``: rebuild itself from the verified
  bytes, validating every field strictly (one :class:`~routecast.errors.CheckpointError` naming the
  file and the field), sub-components through :func:`load_component`.

``config.json`` carries the policy's registered short name in ``router_type`` (the field's name
since format 1); loading resolves it only through :mod:`routecast.core.registry`, never by import
path. Nothing here imports a policy module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routecast.atomic import Terminated, out_lock, sigterm_as_exception, write_text
from routecast.core.checkpoint.files import (CONFIG_FILE, FORMAT_VERSION, MAX_ARRAY_BYTES, dump_json,
                                             is_checkpoint_dir)
from routecast.core.checkpoint.folder import copy_checkpoint, write_folder
from routecast.core.checkpoint.manifest import CheckpointFolder, read_folder
from routecast.errors import CheckpointError, ConfigError

#: the field of config.json naming the policy's registered class
TYPE_FIELD = "router_type"


def policy_name(cls: type) -> str:
    """The registered short name of a policy class ('' when it has none)."""
    return getattr(cls, "name", None) or ""


def write_component(policy: Any, folder: Path, *, extra: dict[str, Any] | None = None, **options: Any) -> None:
    """Write ``policy``'s files and ``config.json`` into ``folder`` (no manifest: the folder that
    holds it lists them). ``extra`` (JSON) is stored under ``"extra"``."""
    from routecast import __version__

    name = policy_name(type(policy))
    if not name:
        raise CheckpointError(f"{type(policy).__name__} is not registered (use @register_router) "
                              "and could not be loaded back; refusing to export it")
    folder.mkdir(parents=True, exist_ok=True)
    state = policy.checkpoint_state(folder, **options)
    config = {"format_version": FORMAT_VERSION, "routecast_version": __version__, TYPE_FIELD: name, **state,
              "extra": extra or {}}
    try:
        text = dump_json(config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{name!r}: hyperparameters or learned state are not JSON ({exc}); "
                              f"cannot write {CONFIG_FILE}") from None
    write_text(folder / CONFIG_FILE, text)


def save_checkpoint(policy: Any, out_dir: str | os.PathLike, *, extra: dict[str, Any] | None = None,
                    sign_key: str | os.PathLike | None = None, **options: Any) -> Path:
    """Write ``policy`` as a checkpoint folder at ``out_dir`` and return its path.

    ``options`` go to the policy's ``checkpoint_state`` (a router's ``onnx=True``). ``sign_key``
    (an ed25519 private key file) adds ``manifest.sig``. The folder is built next to ``out_dir``
    and renamed into place; an existing checkpoint there is replaced. Files 0644, folders 0755.
    """
    return write_folder(out_dir, lambda tmp: write_component(policy, tmp, extra=extra, **options),
                        sign_key=sign_key)


def load_component(folder: CheckpointFolder, cls: type | None = None) -> Any:
    """The policy of a verified folder (or subfolder view): its class from ``router_type`` through
    the registry (or ``cls``, which the name must then be), built by the class's ``from_checkpoint``."""
    name = folder.config.get(TYPE_FIELD)
    if not isinstance(name, str):
        raise CheckpointError(f"{folder.config_path}: field {TYPE_FIELD!r} must be a string")
    if cls is None:
        from routecast.core.registry import get_router_class

        try:
            cls = get_router_class(name)
        except ConfigError as exc:
            raise CheckpointError(f"{folder.config_path}: {TYPE_FIELD} {name!r} cannot be built: {exc}") from None
    elif name != policy_name(cls):
        raise CheckpointError(f"{folder.config_path}: field {TYPE_FIELD!r} is {name!r}, not a "
                              f"{policy_name(cls) or cls.__name__!r} checkpoint")
    return cls.from_checkpoint(folder)


@dataclass
class LoadedCheckpoint:
    """A policy built from a checkpoint, with the config and manifest hash of the same bytes."""

    router: Any
    config: dict[str, Any]
    manifest_sha256: str
    signed_by: str | None = None


def open_checkpoint(path: str | os.PathLike, *, cls: type | None = None, trusted_key: str | os.PathLike | None = None,
                    expect_sha256: str | None = None, max_array_bytes: int = MAX_ARRAY_BYTES) -> LoadedCheckpoint:
    """Verify, validate and load a checkpoint folder; config and policy come from one read of its files.

    ``expect_sha256``: the sha256 of ``manifest.json`` you trust (pinned hash). ``trusted_key``: a
    PEM ed25519 public key; the folder's ``manifest.sig`` must verify against it. Without either,
    the load is integrity-checked and semantically validated, but not authenticated. ``cls``: the
    policy class expected (default: the registered class named in ``config.json``).
    """
    folder = read_folder(path, trusted_key=trusted_key, expect_sha256=expect_sha256, max_array_bytes=max_array_bytes)
    policy = load_component(folder, cls)
    return LoadedCheckpoint(router=policy, config=folder.config, manifest_sha256=folder.manifest_sha256,
                            signed_by=folder.signed_by)


def load_checkpoint(path: str | os.PathLike, **trust: Any) -> Any:
    """Verify and load a checkpoint folder written by :func:`save_checkpoint` (see :func:`open_checkpoint`)."""
    return open_checkpoint(path, **trust).router


def verify_checkpoint(path: str | os.PathLike, **trust: Any) -> dict[str, Any]:
    """Everything :func:`load_checkpoint` checks (the policy is built and validated); returns ``config.json``.

    Refuses: a missing folder/manifest/config, an unknown or non-integer format version, a manifest
    entry that escapes the folder, a listed file that is missing or whose size/sha256 differs, any
    file (or symlink) the manifest does not list, and every semantic violation.
    """
    return open_checkpoint(path, **trust).config


def read_config(path: str | os.PathLike, **trust: Any) -> dict[str, Any]:
    """``config.json`` of an integrity-checked checkpoint (model table, policy type...), without building it."""
    return read_folder(path, **trust).config


def export_checkpoint(source: str | os.PathLike, out_dir: str | os.PathLike, *, onnx: bool = False,
                      sign_key: str | os.PathLike | None = None, **trust: Any) -> Any:
    """Export a run folder's ``router/`` checkpoint (or a checkpoint folder) to ``out_dir``.

    The policy is fully loaded and validated first, so a checkpoint that cannot be served is never
    exported; ``onnx`` re-saves it with ``head.onnx`` (torch-head routers); ``sign_key`` signs the
    manifest. Holds the output lock of ``out_dir`` (a second export into it fails at once).
    Returns the loaded policy; :func:`manifest_sha256` of ``out_dir`` is the hash to pin.
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
