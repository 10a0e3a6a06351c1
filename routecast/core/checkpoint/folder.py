"""Writing a checkpoint folder: built next to its target, manifested, signed, swapped into place.

:func:`write_folder` is the one writer of the format: the caller fills a temporary folder (each
component writes its own files and ``config.json``), then the manifest (and signature) are written,
modes are made shareable (0644/0755) and the folder is renamed over the target
(:func:`routecast.atomic.replace_folder`): a reader never sees half a checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from routecast.atomic import atomic_folder, make_shareable, write_bytes
from routecast.core.checkpoint.files import MANIFEST_FILE, SIGNATURE_FILE
from routecast.core.checkpoint.manifest import read_folder, write_manifest, write_signature


def write_folder(out_dir: str | os.PathLike, fill: Callable[[Path], Any], *,
                 sign_key: str | os.PathLike | None = None) -> Path:
    """Call ``fill(tmp)`` on a fresh sibling folder of ``out_dir``, write its manifest (signed with
    ``sign_key``), and swap it into place; on any error nothing at ``out_dir`` changes."""
    out_dir = Path(out_dir)
    with atomic_folder(out_dir) as tmp:
        fill(tmp)
        write_manifest(tmp, sign_key=sign_key)
        make_shareable(tmp)
    return out_dir


def copy_checkpoint(src: str | os.PathLike, out_dir: str | os.PathLike, *,
                    sign_key: str | os.PathLike | None = None, **trust: Any) -> Path:
    """Copy a verified checkpoint folder to ``out_dir`` atomically (only manifest-listed files).

    The bytes written are the bytes that were verified (read once); an existing ``manifest.sig``
    is kept, ``sign_key`` replaces it with a new signature. ``trust``: ``trusted_key`` /
    ``expect_sha256`` as in :func:`routecast.core.checkpoint.load_checkpoint`.
    """
    src = Path(src)
    verified = read_folder(src, **trust)
    out_dir = Path(out_dir)
    if out_dir.resolve() == src.resolve():
        if sign_key is not None:
            write_signature(src, verified.manifest_bytes, sign_key)
        return out_dir
    with atomic_folder(out_dir) as tmp:
        blobs = {**verified.blobs, MANIFEST_FILE: verified.manifest_bytes}
        if verified.signature is not None and sign_key is None:
            blobs[SIGNATURE_FILE] = verified.signature
        for rel, data in blobs.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            write_bytes(tmp / rel, data)
        if sign_key is not None:
            write_signature(tmp, verified.manifest_bytes, sign_key)
        make_shareable(tmp)
        read_folder(tmp, expect_sha256=verified.manifest_sha256)
    return out_dir
