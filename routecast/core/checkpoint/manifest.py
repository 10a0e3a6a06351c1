"""The manifest of a checkpoint folder: sha256 and size of every file, written once, verified once.

``manifest.json`` lists every other file of the folder (``manifest.sig`` aside) with its sha256 and
size. :func:`read_folder` reads the manifest, checks a pinned hash (``expect_sha256``) or a signature
(``trusted_key``), refuses any unlisted file, symlink or path outside the folder, then reads every
listed file once, size-capped and hash-checked: what it returns (:class:`CheckpointFolder`) holds
the verified bytes, and nothing is re-read by name afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routecast.atomic import write_bytes, write_text
from routecast.core.checkpoint.arrays import array_file_caps, check_arrays, parse_arrays
from routecast.core.checkpoint.files import (CONFIG_FILE, MANIFEST_FILE, MAX_ARRAY_BYTES, MAX_CONFIG_BYTES,
                                             MAX_MANIFEST_BYTES, MAX_OTHER_FILE_BYTES, MAX_SIGNATURE_BYTES,
                                             SIGNATURE_FILE, FORMAT_VERSION, check_version, dump_json, is_int,
                                             normalise_sha256, parse_json, read_capped, safe_relpath, sha256_file)
from routecast.errors import CheckpointError
from routecast.jsonable import restore_tagged


@dataclass
class CheckpointFolder:
    """A checkpoint folder's files, each read once, size-capped and hash-checked against the manifest.

    ``config`` is the parsed ``config.json`` (non-finite floats restored); ``blobs`` maps each
    listed file (relative to ``root``) to its verified bytes. :meth:`sub` gives the same view of a
    component stored in a subfolder (its own ``config.json``), so a component loads its state from
    verified bytes whether it is the whole checkpoint or a part of one.
    """

    root: Path
    manifest_bytes: bytes
    manifest_sha256: str
    config: dict[str, Any]
    blobs: dict[str, bytes] = field(default_factory=dict)
    signature: bytes | None = None
    signed_by: str | None = None

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    def referenced(self, name: Any, *, what: str) -> tuple[str, Path]:
        """(relative name, path) of a file named in config.json: inside the folder and listed."""
        rel = safe_relpath(name, what=what, source=self.config_path).as_posix()
        if rel not in self.blobs:
            raise CheckpointError(f"{self.root / rel}: {what} named in {CONFIG_FILE} is missing")
        return rel, self.root / rel

    def arrays(self, entry: dict, *, what: str, nan_ok: frozenset[str] = frozenset()
               ) -> tuple[dict[str, Any], Path]:
        """The arrays of ``entry`` (``{"weights": FILE, "arrays": INDEX}``), checked against the index."""
        rel, path = self.referenced(entry.get("weights"), what=what)
        arrays = parse_arrays(self.blobs[rel], path)
        check_arrays(arrays, entry.get("arrays") or {}, file=path, nan_ok=nan_ok)
        return arrays, path

    def sub(self, folder: str) -> "CheckpointFolder":
        """The component stored in ``folder`` (its ``config.json`` and files), from the verified bytes."""
        prefix = folder.rstrip("/") + "/"
        blobs = {k[len(prefix):]: v for k, v in self.blobs.items() if k.startswith(prefix)}
        root = self.root / folder
        if CONFIG_FILE not in blobs:
            raise CheckpointError(f"{root / CONFIG_FILE}: missing; the component must ship inside the checkpoint")
        config = parse_json(blobs[CONFIG_FILE], root / CONFIG_FILE)
        if not isinstance(config, dict):
            raise CheckpointError(f"{root / CONFIG_FILE}: expected a JSON object")
        return CheckpointFolder(root=root, manifest_bytes=self.manifest_bytes, manifest_sha256=self.manifest_sha256,
                                config=restore_tagged(config), blobs=blobs, signature=self.signature,
                                signed_by=self.signed_by)


# --------------------------------------------------------------------------- write
def write_manifest(folder: Path, *, sign_key: str | os.PathLike | None = None) -> str:
    """Write ``manifest.json`` (sha256 + size of every file in ``folder``) and, with ``sign_key``
    (an ed25519 private key file), ``manifest.sig``; returns the manifest's text."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel not in (MANIFEST_FILE, SIGNATURE_FILE):
            files[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    text = dump_json({"format_version": FORMAT_VERSION, "files": files})
    write_text(folder / MANIFEST_FILE, text)
    if sign_key is not None:
        write_signature(folder, text.encode("utf-8"), sign_key)
    return text


def write_signature(folder: Path, manifest_bytes: bytes, sign_key: str | os.PathLike) -> None:
    from routecast.core.signing import sign_manifest

    write_bytes(folder / SIGNATURE_FILE, sign_manifest(manifest_bytes, sign_key))


# --------------------------------------------------------------------------- read once, verify
def _listed_files(root: Path, manifest: Any, manifest_path: Path) -> dict[str, dict]:
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{manifest_path}: field 'files': expected an object with a 'files' table")
    check_version(manifest.get("format_version"), manifest_path)
    listed: dict[str, dict] = {}
    for name, entry in manifest["files"].items():
        rel = safe_relpath(name, what="manifest entry", source=manifest_path)
        if rel.as_posix() in (MANIFEST_FILE, SIGNATURE_FILE):
            raise CheckpointError(f"{manifest_path}: field 'files': the manifest must not list {rel.as_posix()}")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or not is_int(entry.get("size")) or entry["size"] < 0:
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


def _legacy_manifest(manifest: Any) -> str | None:
    """The ``format`` of a manifest written before the one checkpoint format (file -> sha256 only)."""
    if isinstance(manifest, dict) and "format_version" not in manifest and isinstance(manifest.get("format"), str):
        return manifest["format"]
    return None


def _component_caps(root: Path, rel: str, data: bytes, max_array_bytes: int) -> dict[str, int]:
    """Caps of the array files a component's ``config.json`` declares, as paths from ``root``. A
    config.json that is not a JSON object (a shipped model folder's own) declares none here; the
    component that reads it parses it strictly."""
    try:
        config = parse_json(data, root / rel)
    except CheckpointError:
        return {}
    if not isinstance(config, dict):
        return {}
    folder = rel[: -len(CONFIG_FILE)]
    return {folder + name: cap for name, cap in array_file_caps(config, root / rel, max_array_bytes).items()}


def read_folder(path: str | os.PathLike, *, trusted_key: str | os.PathLike | None = None,
                expect_sha256: str | None = None, max_array_bytes: int = MAX_ARRAY_BYTES) -> CheckpointFolder:
    """Integrity (and, with a pin or a key, authenticity) of a checkpoint folder; every file read once."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"{root}: checkpoint folder not found")
    pinned = None if expect_sha256 is None else normalise_sha256(expect_sha256)
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.exists() and not manifest_path.is_symlink():
        raise CheckpointError(f"{manifest_path}: missing (not a routecast checkpoint folder?)")
    manifest_bytes = read_capped(manifest_path, cap=MAX_MANIFEST_BYTES, expected_size=None, what="manifest")
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    if pinned is not None and not hmac.compare_digest(digest, pinned):
        raise CheckpointError(f"{manifest_path}: sha256 {digest} is not the pinned {pinned} (expect_sha256); "
                              "the checkpoint is not the one you pinned")
    signature_path = root / SIGNATURE_FILE
    signature = None
    if signature_path.exists() or signature_path.is_symlink():
        signature = read_capped(signature_path, cap=MAX_SIGNATURE_BYTES, expected_size=None, what="signature")
    signed_by = None
    if trusted_key is not None:
        from routecast.core.signing import verify_manifest_signature

        signed_by = verify_manifest_signature(manifest_bytes, signature, trusted_key, source=signature_path)
    manifest = parse_json(manifest_bytes, manifest_path)
    legacy = _legacy_manifest(manifest)
    if legacy is not None:
        raise CheckpointError(f"{manifest_path}: format {legacy!r} without 'format_version' was written before "
                              f"routecast's one checkpoint format (version {FORMAT_VERSION}) and is not read any "
                              "more; fit it again and save it with this routecast")
    listed = _listed_files(root, manifest, manifest_path)

    def read_listed(rel: str, cap: int) -> bytes:
        entry = listed[rel]
        file = root / rel
        data = read_capped(file, cap=cap, expected_size=entry["size"], what="listed file")
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), entry["sha256"].lower()):
            raise CheckpointError(f"{file}: sha256 does not match {MANIFEST_FILE}; the file was modified")
        return data

    cfg_path = root / CONFIG_FILE
    blobs = {CONFIG_FILE: read_listed(CONFIG_FILE, MAX_CONFIG_BYTES)}
    config = parse_json(blobs[CONFIG_FILE], cfg_path)
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path}: expected a JSON object")
    check_version(config.get("format_version"), cfg_path)
    caps = array_file_caps(config, cfg_path, max_array_bytes)
    for rel in sorted(r for r in listed if r.endswith("/" + CONFIG_FILE)):  # components in subfolders
        blobs[rel] = read_listed(rel, MAX_CONFIG_BYTES)
        caps.update(_component_caps(root, rel, blobs[rel], max_array_bytes))
    for rel in sorted(listed):
        if rel not in blobs:
            blobs[rel] = read_listed(rel, caps.get(rel, MAX_OTHER_FILE_BYTES))
    return CheckpointFolder(root=root, manifest_bytes=manifest_bytes, manifest_sha256=digest,
                            config=restore_tagged(config), blobs=blobs, signature=signature, signed_by=signed_by)
