"""Encoders by spec string: ``hashing[:dim=N]``, ``minilm``, ``st:/path/to/folder``, ...

``get_encoder(spec)`` is the only way configs, the CLI and checkpoints build an encoder.
"""

from __future__ import annotations

from routecast.errors import ConfigError
from routecast.router.encoders.base import Encoder


def _parse(spec: str) -> tuple[str, dict[str, str]]:
    kind, _, rest = spec.partition(":")
    opts: dict[str, str] = {}
    if rest:
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq:
                raise ConfigError(f"encoder spec {spec!r}: expected key=value, got {part!r}")
            opts[key.strip()] = value.strip()
    return kind.strip(), opts


def get_encoder(spec: str) -> Encoder:
    kind, opts = _parse(spec)
    if kind == "hashing":
        from routecast.router.encoders.hashing import HashingEncoder

        return HashingEncoder(dim=int(opts.get("dim", 512)))
    raise ConfigError(f"unknown encoder {spec!r}; known: hashing[:dim=N]")


__all__ = ["Encoder", "get_encoder"]
