"""Static token-embedding encoder distilled from a sentence transformer (model2vec-style, our own code).

Why: MiniLM costs ~15-50 ms per prompt on a laptop CPU; a router that must decide in well under a
millisecond needs an encoder that is a table lookup. Distillation (no data needed):

1. every vocabulary token ``t`` is run through the transformer as the tiny input ``[SEP] t [CLS]``
   (model2vec found the reversed special tokens work better) and the 3 output vectors are averaged;
2. PCA reduces the vectors to ``dim`` components (decorrelates them and drops noise directions);
3. SIF weighting with Zipf-estimated token frequencies (vocabulary order ~ frequency rank, as in
   model2vec: ``p(rank) ~ 1/(rank+2)``, weight ``a / (a + p)``, ``a = 1e-4``) damps very common tokens
   the way a sentence transformer's attention does.

Encoding is then: fast HF ``tokenizers`` tokenisation (no transformers/torch import) -> sum of token
vectors -> L2 normalisation, in numpy. Texts with no known token get the distilled embedding of the
empty input, so every output row has unit norm.

On disk (sentence-transformers style, strict loading): ``config.json`` + ``model.safetensors``
(``embeddings`` float16 (vocab, dim), ``empty`` float32 (dim,)) + ``tokenizer.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from routecast.atomic import atomic_folder, write_bytes, write_json, write_text
from routecast.errors import CheckpointError, ConfigError
from routecast.router.encoders.base import Encoder, l2_normalise

FORMAT = "routecast-static-v1"
DEFAULT_DIM = 256
#: same cut as the transformer encoders, so static and MiniLM see the same text by default
DEFAULT_MAX_CHARS = 2000
_UNUSED = re.compile(r"^\[unused\d+\]$")
#: token vectors gathered at once when summing a batch (bounds the (tokens, dim) block to ~4 MB)
_GATHER_MAX_TOKENS = 4096


class StaticEncoder(Encoder):
    """Mean of distilled token vectors, L2-normalised; numpy + ``tokenizers`` only."""

    def __init__(self, config: Mapping[str, Any], embeddings: np.ndarray, empty: np.ndarray, tokenizer_json: str,
                 *, max_chars: int | None = DEFAULT_MAX_CHARS, spec: str | None = None):
        from tokenizers import Tokenizer

        if config.get("format") != FORMAT:
            raise CheckpointError(f"static encoder: unknown format {config.get('format')!r} (expected {FORMAT!r})")
        embeddings = np.asarray(embeddings)
        empty = np.asarray(empty, dtype=np.float32)
        if embeddings.ndim != 2 or empty.shape != (embeddings.shape[1],):
            raise CheckpointError(f"static encoder: bad shapes embeddings {embeddings.shape}, empty {empty.shape}")
        if int(config.get("dim", -1)) != embeddings.shape[1] or int(config.get("vocab_size", -1)) != embeddings.shape[0]:
            raise CheckpointError("static encoder: config.json dim/vocab_size do not match model.safetensors")
        self.config = dict(config)
        self._stored = embeddings
        self._vectors = embeddings.astype(np.float32)
        self._stored_empty = empty
        self._empty = l2_normalise(empty[None, :])[0]
        self._tokenizer_json = tokenizer_json
        try:
            self._tokenizer = Tokenizer.from_str(tokenizer_json)
        except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exception subclasses
            raise CheckpointError(f"static encoder: tokenizer.json cannot be parsed ({exc})") from exc
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._known = np.linalg.norm(self._vectors, axis=1) > 0
        self.dim = int(embeddings.shape[1])
        self.max_chars = max_chars
        digest = hashlib.sha256()
        for part in (np.ascontiguousarray(embeddings).tobytes(), empty.tobytes(), tokenizer_json.encode()):
            digest.update(part)
        self.weights_sha256 = digest.hexdigest()
        self.name = f"static-{self.weights_sha256[:16]}-max{max_chars}"
        self.spec = spec or "static"

    # -- loading / saving -------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | os.PathLike, *, max_chars: int | None = DEFAULT_MAX_CHARS,
             spec: str | None = None) -> "StaticEncoder":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        folder = Path(folder).expanduser()
        paths = {name: folder / name for name in ("config.json", "model.safetensors", "tokenizer.json")}
        missing = [name for name, path in paths.items() if not path.is_file()]
        if missing:
            raise ConfigError(f"static encoder folder {str(folder)!r} lacks {', '.join(missing)}")
        try:
            config = json.loads(paths["config.json"].read_text(encoding="utf-8"))
        except ValueError as exc:
            raise CheckpointError(f"file {paths['config.json']}: not valid JSON ({exc})") from exc
        try:
            arrays = load_file(str(paths["model.safetensors"]))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"file {paths['model.safetensors']}: cannot be read ({exc})") from exc
        if set(arrays) != {"embeddings", "empty"}:
            raise CheckpointError(f"file {paths['model.safetensors']}: expected tensors embeddings, empty; got {sorted(arrays)}")
        return cls(config, arrays["embeddings"], arrays["empty"], paths["tokenizer.json"].read_text(encoding="utf-8"),
                   max_chars=max_chars, spec=spec or f"static:{folder.resolve()}")

    @classmethod
    def from_state(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                   tokenizer_json: str | None = None, *, spec: str | None = None) -> "StaticEncoder":
        """Rebuild from ``state_config()`` + ``state_arrays()`` (what a checkpoint stores)."""
        try:
            if tokenizer_json is None:
                tokenizer_json = np.asarray(arrays["tokenizer_json"], dtype=np.uint8).tobytes().decode("utf-8")
            embeddings, empty = arrays["embeddings"], arrays["empty"]
        except (KeyError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"static encoder state is incomplete or corrupt ({exc!r})") from exc
        max_chars = config.get("max_chars", DEFAULT_MAX_CHARS)
        return cls(config, embeddings, empty, tokenizer_json, max_chars=max_chars,
                   spec=spec or config.get("spec") or "static")

    def state_config(self) -> dict[str, Any]:
        return {**self.config, "max_chars": self.max_chars, "spec": self.spec}

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {"embeddings": self._stored, "empty": self._stored_empty,
                "tokenizer_json": np.frombuffer(self._tokenizer_json.encode("utf-8"), dtype=np.uint8).copy()}

    def save(self, folder: str | os.PathLike) -> Path:
        write_static_folder(folder, self.config, self._stored, self._stored_empty, self._tokenizer_json)
        return Path(folder)

    # -- encoding ---------------------------------------------------------------------------------
    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        # encode_batch_fast (tokenizers >= 0.21) skips character offsets we never use
        encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        return [enc.ids for enc in encode(list(texts), add_special_tokens=False)]

    def encode(self, texts: Sequence[str], *, batch_size: int = 1024, show_progress: bool = False) -> np.ndarray:
        """Sum of known token vectors per text, L2-normalised.

        The texts' token vectors are gathered and summed with ``np.add.reduceat`` in blocks of whole
        texts of at most ``_GATHER_MAX_TOKENS`` tokens (~0.1 ms for a request being routed; a large
        batch never materialises more than one small block). numpy only: the serving runtime has no
        scipy. Tokenisation dominates either way.
        """
        from itertools import chain

        texts = self.truncate(list(texts))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        n_vocab = len(self._known)
        for start in range(0, len(texts), max(1, batch_size)):
            chunk = texts[start:start + batch_size]
            ids = self.token_ids(chunk)
            lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
            rows = np.repeat(np.arange(len(chunk)), lengths)
            keep = flat < n_vocab  # keep only tokens that have a distilled vector
            keep[keep] = self._known[flat[keep]]
            flat, rows = flat[keep], rows[keep]
            counts = np.bincount(rows, minlength=len(chunk))
            nonempty = counts > 0
            sums = _sum_by_text(self._vectors, flat, counts)
            sums[~nonempty] = self._empty
            out[start:start + len(chunk)] = l2_normalise(sums)
        return out


def _sum_by_text(vectors: np.ndarray, flat: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Row ``i``: the sum of ``vectors[flat[j]]`` over text ``i``'s ``counts[i]`` consecutive tokens
    (rows without tokens are left unset). Blocks of whole texts of at most ``_GATHER_MAX_TOKENS``
    tokens (one text at least) are gathered and reduced at a time."""
    sums = np.empty((len(counts), vectors.shape[1]), dtype=np.float32)
    ends = np.cumsum(counts)
    starts = ends - counts
    first = 0
    while first < len(counts):
        last = max(first + 1, int(np.searchsorted(ends, starts[first] + _GATHER_MAX_TOKENS, side="right")))
        lo, hi = int(starts[first]), int(ends[last - 1])
        if hi > lo:
            block = counts[first:last] > 0
            offsets = starts[first:last][block] - lo
            sums[first:last][block] = np.add.reduceat(vectors[flat[lo:hi]], offsets, axis=0)
        first = last
    return sums


# -- distillation -------------------------------------------------------------------------------------
def distill_static(source_folder: str | os.PathLike | None, out_dir: str | os.PathLike, dim: int = DEFAULT_DIM, *,
                   vocab_limit: int | None = None, token_ids: Sequence[int] | None = None,
                   sif_coefficient: float | None = 1e-4, batch_size: int = 512, progress: bool = True) -> Path:
    """Distil a static encoder from a local sentence-transformers folder into ``out_dir``.

    ``source_folder`` None = the bundled MiniLM. ``vocab_limit`` (first N usable tokens by id) and
    ``token_ids`` (an explicit subset) exist so tests finish in seconds; tokens left out get no vector
    and are skipped at encoding time. The folder is written to a temporary sibling and renamed into
    place, so a crash never leaves a half-written encoder that ``get_encoder`` would load.
    """
    import torch
    from tokenizers import Tokenizer

    from routecast.router.encoders.sentence_transformer import (
        bundled_minilm_path, check_model_folder, folder_fingerprint, load_sentence_transformer)

    if dim < 2:
        raise ConfigError(f"static encoder dim must be >= 2, got {dim}")
    if sif_coefficient is not None and not 0 < sif_coefficient < 1:
        raise ConfigError(f"sif_coefficient must be in (0, 1), got {sif_coefficient}")
    source = check_model_folder(source_folder if source_folder is not None else bundled_minilm_path())
    if not (source / "tokenizer.json").is_file():
        raise ConfigError(f"{str(source)!r} has no tokenizer.json (a fast tokenizer is needed for static distillation)")
    tokenizer_json = (source / "tokenizer.json").read_text(encoding="utf-8")
    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    special_ids = {tid for tid, tok in tokenizer.get_added_tokens_decoder().items() if tok.special}
    with_specials = tokenizer.encode("a", add_special_tokens=True).ids
    plain = tokenizer.encode("a", add_special_tokens=False).ids
    if len(with_specials) != len(plain) + 2:
        raise ConfigError(f"{str(source)!r}: tokenizer does not add one start and one end token; cannot distil")
    bos, eos = with_specials[0], with_specials[-1]

    id_to_token = {i: t for t, i in tokenizer.get_vocab(with_added_tokens=True).items()}
    usable = [i for i in range(vocab_size) if i not in special_ids and not _UNUSED.match(id_to_token.get(i, ""))]
    if token_ids is not None:
        wanted = set(int(i) for i in token_ids)
        usable = [i for i in usable if i in wanted]
    if vocab_limit is not None:
        usable = usable[: int(vocab_limit)]
    if len(usable) < 2:
        raise ConfigError("static distillation needs at least 2 usable tokens")

    model = load_sentence_transformer(source)
    transformer = model[0].auto_model.eval()
    raw = np.empty((len(usable), int(transformer.config.hidden_size)), dtype=np.float32)
    from routecast.progress import Progress

    ids = torch.tensor(usable, dtype=torch.long)
    with torch.inference_mode(), Progress("distilling static encoder", total=len(usable), unit="tokens",
                                          enabled=progress) as bar:
        for start in range(0, len(usable), batch_size):
            batch = ids[start:start + batch_size]
            inputs = torch.stack([torch.full_like(batch, eos), batch, torch.full_like(batch, bos)], dim=1)
            hidden = transformer(input_ids=inputs, attention_mask=torch.ones_like(inputs),
                                 token_type_ids=torch.zeros_like(inputs)).last_hidden_state
            raw[start:start + len(batch)] = hidden.mean(dim=1).float().numpy()
            bar.advance(len(batch))
        empty_input = torch.tensor([[bos, eos]], dtype=torch.long)
        empty_raw = transformer(input_ids=empty_input, attention_mask=torch.ones_like(empty_input),
                                token_type_ids=torch.zeros_like(empty_input)).last_hidden_state.mean(dim=1).numpy()

    from sklearn.decomposition import PCA

    n_components = int(min(dim, raw.shape[1], raw.shape[0]))
    pca = PCA(n_components=n_components, svd_solver="full", random_state=0)
    reduced = pca.fit_transform(raw).astype(np.float32)
    empty = pca.transform(empty_raw)[0].astype(np.float32)
    if sif_coefficient is not None:
        inv_rank = 1.0 / np.arange(2, len(usable) + 2)
        proba = inv_rank / inv_rank.sum()
        reduced *= (sif_coefficient / (sif_coefficient + proba)).astype(np.float32)[:, None]
    # a distilled row must never be exactly zero: zero rows mean "unknown token" at encoding time
    reduced[np.linalg.norm(reduced, axis=1) == 0, 0] = 1e-6
    embeddings = np.zeros((vocab_size, n_components), dtype=np.float16)
    embeddings[usable] = reduced.astype(np.float16)

    config = {
        "format": FORMAT, "dim": n_components, "vocab_size": vocab_size, "n_distilled": len(usable),
        "source_fingerprint": folder_fingerprint(source), "source_folder": str(source),
        "sif_coefficient": sif_coefficient, "pca_explained_variance": float(pca.explained_variance_ratio_.sum()),
        "pooling": "mean of [SEP] t [CLS] outputs", "dtype": "float16",
    }
    out = Path(out_dir).expanduser()
    write_static_folder(out, config, embeddings, empty, tokenizer_json)
    return out


def write_static_folder(out: str | os.PathLike, config: Mapping[str, Any], embeddings: np.ndarray,
                        empty: np.ndarray, tokenizer_json: str) -> None:
    """Write a static encoder folder (config.json, model.safetensors, tokenizer.json) atomically:
    built in a temporary sibling and swapped into place (:func:`routecast.atomic.atomic_folder`)."""
    from safetensors.numpy import save

    with atomic_folder(Path(out)) as tmp:
        write_json(tmp / "config.json", dict(config))
        write_bytes(tmp / "model.safetensors", save({"embeddings": np.ascontiguousarray(embeddings),
                                                     "empty": np.asarray(empty, dtype=np.float32)}))
        write_text(tmp / "tokenizer.json", tokenizer_json)


def default_static_dir(dim: int = DEFAULT_DIM) -> Path:
    """Where ``get_encoder("static")`` keeps the encoder distilled from the bundled MiniLM."""
    from routecast.router.embedding_cache import default_cache_dir
    from routecast.router.encoders.sentence_transformer import bundled_minilm_path, folder_fingerprint

    return default_cache_dir() / "encoders" / f"static-minilm-{folder_fingerprint(bundled_minilm_path())[:12]}-d{dim}"


def default_static_encoder(dim: int = DEFAULT_DIM, *, max_chars: int | None = DEFAULT_MAX_CHARS,
                           progress: bool = True) -> StaticEncoder:
    """The bundled-MiniLM static encoder: distilled once into the cache dir (~tens of seconds), then loaded."""
    from routecast.router.encoders.build_lock import build_lock

    folder = default_static_dir(dim)
    if not (folder / "model.safetensors").is_file():
        with build_lock(folder):
            if not (folder / "model.safetensors").is_file():  # another process may have built it meanwhile
                distill_static(None, folder, dim=dim, progress=progress)
    spec = "static" if dim == DEFAULT_DIM else f"static:dim={dim}"
    if max_chars != DEFAULT_MAX_CHARS:
        spec += f"{',' if ':' in spec else ':'}max_chars={max_chars}"
    return StaticEncoder.load(folder, max_chars=max_chars, spec=spec)

