"""On-disk embedding cache: each prompt is encoded once per encoder, ever.

Why: training sweeps, evaluations and the CLI embed the same prompts again and again, and MiniLM
needs ~13 ms a prompt on 2 cores. Vectors are stored under
``<cache_dir>/<encoder name>/shard-*.npz``, keyed by sha256 of the full prompt text; ``encoder.name``
identifies weights and settings (incl. ``max_chars``), so a changed model never gets stale vectors.

Layout and safety:

* a shard is an ``.npz`` with ``keys`` (``S64``: hex sha256) and ``vectors`` (float32 ``(n, dim)``),
  written to a temporary file and renamed into place, under a name unique to the writing process
  (time, pid, random): concurrent processes never overwrite each other, and readers only ever see
  whole shards. A process that dies mid-way loses at most the unflushed chunk (shards are flushed
  every ``flush_every`` vectors).
* shards are read with ``allow_pickle=False``; an unreadable or inconsistent shard is skipped with a
  warning (its prompts are simply re-encoded), never a crash.
* ``compact()`` merges many small shards into one; it runs by itself once a directory holds more
  than ``COMPACT_AFTER`` shards.
* encoders with ``cacheable = False`` (the hashing encoder: recomputing is cheaper than a disk
  read) bypass the disk entirely; ``cache_dir=False`` disables the disk for any encoder.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from routecast.atomic import atomic_open, write_json
from routecast.errors import DataError

#: above this many texts to encode, ``show_progress=None`` shows a progress bar
PROGRESS_THRESHOLD = 256
#: a call that adds a shard merges all shards once there are more than this many (routing one new
#: prompt at a time would otherwise leave thousands of tiny files)
COMPACT_AFTER = 64
_KEY_DTYPE = "S64"


def default_cache_dir() -> Path:
    """Root of routecast's caches: ``$ROUTECAST_CACHE_DIR`` or ``~/.cache/routecast``."""
    env = os.environ.get("ROUTECAST_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "routecast"


def text_key(text: str) -> bytes:
    """Cache key of one prompt: hex sha256 of its UTF-8 bytes (64 ASCII bytes, never a NUL)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest().encode("ascii")


class EmbeddingCache:
    """Vectors of one encoder on disk. ``get`` / ``put`` / ``embed``; keeps an in-memory index of read shards."""

    def __init__(self, encoder, cache_dir: str | os.PathLike | None = None, *, compact_after: int = COMPACT_AFTER):
        self.encoder = encoder
        self.compact_after = compact_after
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "embeddings"
        self.directory = root / _dir_name(encoder.name)
        self._vectors: dict[bytes, np.ndarray] = {}
        self._seen_shards: set[str] = set()

    # -- reading --------------------------------------------------------------------------------
    def shard_paths(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("shard-*.npz"))

    def refresh(self) -> None:
        """Load shards written since the last refresh (by this or any other process)."""
        for path in self.shard_paths():
            if path.name in self._seen_shards:
                continue
            self._seen_shards.add(path.name)
            loaded = self._read_shard(path)
            if loaded is not None:
                keys, vectors = loaded
                self._vectors.update(zip(keys.tolist(), vectors))

    def _read_shard(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            with np.load(path, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
        except FileNotFoundError:  # compacted away by another process between glob and read
            return None
        except Exception as exc:  # noqa: BLE001 - zip/npz/format errors all mean "corrupt shard"
            warnings.warn(f"embedding cache: ignoring unreadable shard {path} ({type(exc).__name__}: {exc}); "
                          "its prompts will be re-encoded", RuntimeWarning, stacklevel=3)
            return None
        dim = int(self.encoder.dim)
        if (keys.dtype != np.dtype(_KEY_DTYPE) or keys.ndim != 1 or vectors.dtype != np.float32
                or vectors.shape != (len(keys), dim)):
            warnings.warn(f"embedding cache: ignoring inconsistent shard {path} (keys {keys.dtype}{keys.shape}, "
                          f"vectors {vectors.dtype}{vectors.shape}, expected dim {dim})", RuntimeWarning, stacklevel=3)
            return None
        return keys, vectors

    def __len__(self) -> int:
        return len(self._vectors)

    # -- writing --------------------------------------------------------------------------------
    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> Path | None:
        """Write one new shard (atomic, uniquely named) and index it."""
        if len(keys) == 0:
            return None
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.directory.mkdir(parents=True, exist_ok=True)
        marker = self.directory / "encoder.json"
        if not marker.exists():
            write_json(marker, {"name": self.encoder.name, "spec": getattr(self.encoder, "spec", None),
                                "dim": int(self.encoder.dim)})
        path = self.directory / f"shard-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
        with atomic_open(path, "wb") as handle:
            np.savez(handle, keys=np.asarray(keys, dtype=_KEY_DTYPE), vectors=vectors)
        self._seen_shards.add(path.name)
        self._vectors.update(zip(keys, vectors))
        return path

    def compact(self) -> int:
        """Merge all readable shards into one; returns how many shard files were replaced."""
        self.refresh()
        old = [p for p in self.shard_paths() if p.name in self._seen_shards]
        if len(old) < 2:
            return 0
        keys = list(self._vectors)
        self.put(keys, np.stack([self._vectors[k] for k in keys]))
        for path in old:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        return len(old)

    # -- the main entry point -------------------------------------------------------------------
    def embed(self, texts: Iterable[str], *, show_progress: bool | None = None, batch_size: int | None = None,
              flush_every: int = 4096) -> np.ndarray:
        texts = _check_texts(texts)
        dim = int(self.encoder.dim)
        keys = [text_key(t) for t in texts]
        if not all(key in self._vectors for key in keys):  # all in memory: no disk access at all
            self.refresh()
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts):
            if key not in self._vectors and key not in missing:
                missing[key] = text
        if missing:
            pending_keys: list[bytes] = []
            pending_vectors: list[np.ndarray] = []
            for chunk_keys, chunk_vectors in _encode_missing(self.encoder, missing, show_progress, batch_size):
                pending_keys.extend(chunk_keys)
                pending_vectors.append(chunk_vectors)
                if len(pending_keys) >= flush_every:
                    self.put(pending_keys, np.concatenate(pending_vectors))
                    pending_keys, pending_vectors = [], []
            self.put(pending_keys, np.concatenate(pending_vectors) if pending_vectors else np.zeros((0, dim)))
            if len(self.shard_paths()) > self.compact_after:
                self.compact()
        out = np.empty((len(texts), dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = self._vectors[key]
        return out


def embed(encoder, texts: Iterable[str], *, cache_dir: str | os.PathLike | None | bool = None,
          show_progress: bool | None = None, batch_size: int | None = None) -> np.ndarray:
    """``(n, encoder.dim)`` float32 embeddings of ``texts``, encoding only prompts not cached yet.

    ``cache_dir``: None = ``default_cache_dir()/embeddings``; a path = that directory; False = no disk
    cache (identical texts are still encoded once). ``show_progress``: None = a bar when more than
    ``PROGRESS_THRESHOLD`` texts must be encoded.
    """
    if cache_dir is False or not getattr(encoder, "cacheable", True):
        texts = _check_texts(texts)
        unique = dict.fromkeys(texts)
        if not unique:
            return np.zeros((0, int(encoder.dim)), dtype=np.float32)
        chunks = list(_encode_missing(encoder, {t: t for t in unique}, show_progress, batch_size))
        vectors = dict(zip((k for ks, _ in chunks for k in ks), np.concatenate([v for _, v in chunks])))
        return np.stack([vectors[t] for t in texts]).astype(np.float32, copy=False)
    return open_cache(encoder, None if cache_dir is True else cache_dir).embed(
        texts, show_progress=show_progress, batch_size=batch_size)


#: attribute of an encoder object holding its open caches ((cache directory, encoder name) -> cache)
_OPEN_CACHES = "_routecast_embedding_caches"


def open_cache(encoder, cache_dir: str | os.PathLike | None = None) -> EmbeddingCache:
    """The cache of ``encoder`` in ``cache_dir``, opened once per encoder object and kept on it.

    Why: a live cascade embeds one prompt per call; a new cache per call re-read every shard
    (about 90 % of a 318 ms decision with 22 shards, growing with the cache). Kept on the encoder
    (not in a module-level registry), the cache lives as long as the router holding the encoder,
    and a lookup of a cached prompt touches no disk (:meth:`EmbeddingCache.embed` refreshes only
    when a text is missing). An encoder that refuses attributes gets a fresh cache each call.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "embeddings"
    caches = getattr(encoder, _OPEN_CACHES, None)
    if caches is None:
        caches = {}
        try:
            setattr(encoder, _OPEN_CACHES, caches)
        except AttributeError:
            return EmbeddingCache(encoder, root)
    key = (str(root.resolve()), encoder.name)  # a trained encoder changes its name with its weights
    if key not in caches:
        caches[key] = EmbeddingCache(encoder, root)
    return caches[key]


def _encode_missing(encoder, missing: dict, show_progress: bool | None, batch_size: int | None):
    """Yield (keys, vectors) per batch; texts sorted by length so batches pad little, with a progress bar."""
    items = sorted(missing.items(), key=lambda kv: len(kv[1]))
    if batch_size is None:
        batch_size = 4096 if not getattr(encoder, "cacheable", True) else 64
    show = len(items) > PROGRESS_THRESHOLD if show_progress is None else bool(show_progress)
    from routecast.progress import Progress

    with Progress(f"embedding ({getattr(encoder, 'spec', encoder.name)})", total=len(items), unit="prompts",
                  enabled=show) as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            vectors = np.asarray(encoder.encode([t for _, t in chunk], batch_size=batch_size), dtype=np.float32)
            if vectors.shape != (len(chunk), int(encoder.dim)):
                raise RuntimeError(f"encoder {encoder.name} returned shape {vectors.shape} for {len(chunk)} texts")
            bar.advance(len(chunk))
            yield [k for k, _ in chunk], vectors


def _check_texts(texts: Iterable[str]) -> list[str]:
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"prompt {i + 1} is {type(text).__name__}, not text", row=i + 1, column="prompt")
    return texts


def _dir_name(name: str) -> str:
    """A readable, filesystem-safe and collision-free directory name for an encoder name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def embedding_table(ids: Sequence[Any], prompts: Sequence[str], vectors: np.ndarray):
    """The one output shape of embedded prompt files (local and Ray engines alike): ``id``, ``key``
    (this cache's key of the prompt), ``embedding`` (fixed-size float32 list)."""
    import pyarrow as pa

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    embedding = pa.FixedSizeListArray.from_arrays(flat, int(vectors.shape[1]))
    keys = pa.array([text_key(str(p)).decode("ascii") for p in prompts], type=pa.string())
    return pa.table({"id": pa.array(list(ids)), "key": keys, "embedding": embedding})


__all__ = ["EmbeddingCache", "embed", "default_cache_dir", "text_key", "embedding_table", "PROGRESS_THRESHOLD"]
