"""Client API keys: who may use the server.

Keys come from a file (``--api-keys FILE``: one key per line, or ``sha256:<64 hex>`` for a key
stored only as its hash; blank lines and ``#`` comments are skipped) and/or the
``ROUTECAST_API_KEYS`` environment variable (keys separated by commas or newlines). They are held
only as SHA-256 digests; a presented key is hashed and compared with every digest using
:func:`hmac.compare_digest` (no early exit), so neither the keys nor the timing of a comparison
tell an attacker how close a guess was.

A key is known to logs and ``/metrics`` only by its *key id*: the first 10 hex digits of its
SHA-256 (what ``printf %s KEY | sha256sum`` prints), never the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path
from typing import Iterable, Mapping

from routecast.errors import ConfigError

ENV_VAR = "ROUTECAST_API_KEYS"
#: shortest plain-text key accepted: a short key can be guessed however it is compared
MIN_KEY_CHARS = 16
_HASHED = re.compile(r"sha256:([0-9a-fA-F]{64})")


def key_id_of(digest: bytes) -> str:
    return digest.hex()[:10]


def hash_key(key: str) -> str:
    """The ``sha256:<hex>`` line that stands for ``key`` in a keys file."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeys:
    """The set of accepted keys, as digests. Build with :meth:`load` or :meth:`from_entries`."""

    def __init__(self, digests: Iterable[bytes]):
        self.digests: tuple[bytes, ...] = tuple(dict.fromkeys(digests))

    def __len__(self) -> int:
        return len(self.digests)

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[str, str]]) -> "ApiKeys":
        """``entries``: (where, text) pairs, ``where`` naming the file and line for errors."""
        digests = []
        for where, text in entries:
            text = text.strip()
            if not text or text.startswith("#"):
                continue
            hashed = _HASHED.fullmatch(text)
            if hashed:
                digests.append(bytes.fromhex(hashed.group(1)))
                continue
            if text.lower().startswith("sha256:"):
                raise ConfigError(f"{where}: a hashed key is 'sha256:' followed by 64 hex digits")
            if len(text) < MIN_KEY_CHARS or any(c.isspace() or not c.isprintable() for c in text):
                raise ConfigError(f"{where}: an API key must be at least {MIN_KEY_CHARS} printable characters "
                                  "without spaces")
            digests.append(hashlib.sha256(text.encode("utf-8")).digest())
        return cls(digests)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None,
             environ: Mapping[str, str] | None = None) -> "ApiKeys | None":
        """Keys from ``path`` and ``$ROUTECAST_API_KEYS``; None when neither gives any key."""
        environ = os.environ if environ is None else environ
        entries: list[tuple[str, str]] = []
        if path is not None:
            path = Path(path)
            try:
                lines = path.read_text(encoding="utf-8-sig").splitlines()
            except FileNotFoundError:
                raise ConfigError(f"API keys file {path} not found") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"API keys file {path}: cannot read ({type(exc).__name__})") from None
            entries += [(f"API keys file {path}, line {i}", line) for i, line in enumerate(lines, 1)]
            if not any(line.strip() and not line.strip().startswith("#") for line in lines):
                raise ConfigError(f"API keys file {path} holds no key")
        raw = environ.get(ENV_VAR, "")
        entries += [(f"${ENV_VAR}, entry {i}", part) for i, part in enumerate(re.split(r"[,\n]", raw), 1)]
        keys = cls.from_entries(entries)
        return keys if len(keys) else None

    def key_ids(self) -> frozenset[str]:
        return frozenset(key_id_of(d) for d in self.digests)

    def __or__(self, other: "ApiKeys") -> "ApiKeys":
        """Both key sets (the gate accepts client keys and admin keys alike)."""
        return ApiKeys(self.digests + other.digests)

    def identify(self, presented: str | bytes | None) -> str | None:
        """The key id of ``presented`` if it is an accepted key, else None (constant-time compare)."""
        if not presented:
            return None
        if isinstance(presented, str):
            presented = presented.encode("utf-8", "surrogateescape")
        digest = hashlib.sha256(presented).digest()
        found = None
        for known in self.digests:
            if hmac.compare_digest(known, digest):
                found = known
        return None if found is None else key_id_of(found)


def bearer_token(authorization: bytes | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.strip() or None
