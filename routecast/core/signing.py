"""Ed25519 signatures of checkpoint manifests: authenticity, not just integrity.

WHY: the sha256 table in ``manifest.json`` only shows that the files agree with the manifest.
Whoever can rewrite the files can rewrite the manifest too, so by default a checkpoint is
checked for *integrity* (no accidental corruption, no unlisted or missing file) but not for
*authenticity*. Authenticity needs something the attacker cannot forge: either the manifest's
sha256 pinned out of band (``expect_sha256``) or an ed25519 signature of the manifest bytes
(``manifest.sig``) checked against a public key the loader trusts (``trusted_key``).

Keys are PEM files (PKCS#8 private key, written 0600; SubjectPublicKeyInfo public key, 0644) made
by :func:`generate_keypair` (``routecast keygen``). The signature covers the exact bytes of
``manifest.json``, which lists the sha256 of every other file, so one signature covers the folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from routecast.atomic import write_bytes
from routecast.errors import CheckpointError, ConfigError, FileAccessError
from routecast.jsonable import dumps

SIGNATURE_FILE = "manifest.sig"
ALGORITHM = "ed25519"
#: a key or signature file is a few hundred bytes; refuse to read anything large
_MAX_SMALL_FILE = 64 * 1024


def _read_small(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_SMALL_FILE + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: {what} is a folder, expected a PEM file") from None
    except PermissionError:
        raise FileAccessError(f"{path}: permission denied reading the {what}") from None
    if len(data) > _MAX_SMALL_FILE:
        raise ConfigError(f"{path}: {what} is larger than {_MAX_SMALL_FILE} bytes; not a key file")
    return data


def load_private_key(path: str | os.PathLike):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    path = Path(path)
    try:
        key = load_pem_private_key(_read_small(path, "private key"), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: a {type(key).__name__}; routecast signs with ed25519 keys "
                          "(make one with `routecast keygen`)")
    return key


def load_public_key(path: str | os.PathLike):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    path = Path(path)
    try:
        key = load_pem_public_key(_read_small(path, "public key"))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: a {type(key).__name__}; routecast verifies ed25519 keys only")
    return key


def key_id(public_key) -> str:
    """Short fingerprint of a public key (sha256 of its raw 32 bytes, first 16 hex digits)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(private_path: str | os.PathLike, public_path: str | os.PathLike) -> str:
    """Write a new ed25519 key pair; returns its key id. Never overwrites an existing private key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (Encoding, NoEncryption, PrivateFormat,
                                                              PublicFormat)

    private_path, public_path = Path(private_path), Path(public_path)
    if private_path.resolve() == public_path.resolve():
        raise ConfigError("the private and the public key need two different files")
    if private_path.exists():
        raise ConfigError(f"{private_path}: already exists; refusing to overwrite a private key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL + 0600: the private key is never readable by others, not even for an instant
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
        handle.flush()
        os.fsync(handle.fileno())
    write_bytes(public_path, public_pem)
    os.chmod(public_path, 0o644)
    return key_id(key.public_key())


def sign_manifest(manifest_bytes: bytes, private_key_path: str | os.PathLike) -> bytes:
    """The ``manifest.sig`` content (JSON) for ``manifest_bytes``, signed with the key at the path."""
    key = load_private_key(private_key_path)
    record = {"algorithm": ALGORITHM, "key_id": key_id(key.public_key()),
              "signature": base64.b64encode(key.sign(manifest_bytes)).decode("ascii")}
    return (dumps(record) + "\n").encode("utf-8")


def verify_manifest_signature(manifest_bytes: bytes, signature_bytes: bytes | None, public_key_path: str | os.PathLike,
                              *, source: Path) -> str:
    """Check ``manifest.sig`` against a trusted public key; returns the key id. ``source`` is the
    signature file's path, named in every refusal."""
    from cryptography.exceptions import InvalidSignature

    key = load_public_key(public_key_path)
    expected_id = key_id(key)
    if signature_bytes is None:
        raise CheckpointError(f"{source}: missing; a trusted key was given, so the checkpoint must be signed "
                              "(export it with a sign_key)")
    record = _parse_signature(signature_bytes, source)
    if record["key_id"] != expected_id:
        raise CheckpointError(f"{source}: field 'key_id': signed by key {record['key_id']}, not by the trusted "
                              f"key {expected_id} ({public_key_path})")
    try:
        signature = base64.b64decode(record["signature"], validate=True)
    except ValueError:
        raise CheckpointError(f"{source}: field 'signature' is not base64") from None
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise CheckpointError(f"{source}: field 'signature' does not verify against manifest.json with the "
                              f"trusted key {expected_id}; the checkpoint was modified after signing") from None
    return expected_id


def _parse_signature(data: bytes, source: Path) -> dict[str, Any]:
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{source}: not a JSON signature record") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{source}: expected a JSON object")
    if record.get("algorithm") != ALGORITHM:
        raise CheckpointError(f"{source}: field 'algorithm' is {record.get('algorithm')!r}; only {ALGORITHM!r} "
                              "is accepted")
    for field in ("key_id", "signature"):
        if not isinstance(record.get(field), str):
            raise CheckpointError(f"{source}: field {field!r} must be a string")
    return record


__all__ = ["SIGNATURE_FILE", "generate_keypair", "load_private_key", "load_public_key", "key_id",
           "sign_manifest", "verify_manifest_signature"]
