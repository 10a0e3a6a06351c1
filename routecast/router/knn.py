"""k-nearest-neighbour router (RouterBench's KNN): a model's expected quality on a prompt is its
mean score on the k most similar training prompts (cosine similarity of embeddings).

No training beyond storing the embeddings, so it is the reference every learned router must
beat. Prediction is a matrix product in chunks, so a batch of prompts costs one BLAS call per
chunk rather than a Python loop.

A server routes one prompt per call, so the per-call work is kept to the product, one
``argpartition`` and a (k, m) mean: whether the stored scores have any NaN ("not logged") is
decided once, in ``fit`` and on checkpoint load (``set_state``), and a complete score matrix skips
the (b, k, m) logged-masks, which give the same numbers when nothing is missing. The product and
the neighbour order are kept exactly as they were (``X @ train.T``, ``argpartition``): a float32
mean depends on the order it sums in, and a faster transposed copy of the matrix changed 1 of 300
single-prompt decisions on llmrouter_9models.

On a traffic log (:meth:`OutcomeLog.is_traffic`: one model per prompt, mostly) the k nearest
prompts hold about k / m logged scores of each model, often none. There each model takes its own
k nearest prompts *among those where it was logged*, each weighed by its inverse logging
propensity (:meth:`OutcomeLog.propensity_weights`, stored as ``train_weights_``), so every model's
estimate rests on k outcomes whatever the logging policy chose. Other logs (complete, or missing
some cells per prompt: the neighbours still carry most models' scores) keep the masked mean.
"""

from __future__ import annotations

import numpy as np

from routecast.router.base import Router
from routecast.router.encoders.base import l2_normalise
from routecast.core.registry import register_router
from routecast.router.search_space import Categorical, Int
from routecast.router.encoders.default import DEFAULT_ENCODER

_CHUNK = 2048
#: the train matrix starts on a cache line: BLAS then reads it ~12 % faster, with the same bits out
#: (numpy and safetensors give 16-byte alignment; measured on the llmrouter_9models matrix, 4186 x 256)
_ALIGN = 64


def _cache_aligned(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` as float32, C-contiguous, starting on a ``_ALIGN``-byte boundary (copied once if not)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.flags.c_contiguous and matrix.ctypes.data % _ALIGN == 0:
        return matrix
    buffer = np.empty(matrix.nbytes + _ALIGN, dtype=np.uint8)
    offset = -buffer.ctypes.data % _ALIGN
    out = buffer[offset:offset + matrix.nbytes].view(np.float32).reshape(matrix.shape)
    out[...] = matrix
    return out


@register_router("knn")
class KnnRouter(Router):
    search_space = {"k": Int(3, 200, log=True), "weighting": Categorical(["uniform", "similarity"])}
    #: NaN in the stored score matrix means "not logged"; checkpoint loading allows it there only
    nan_ok_arrays = frozenset({"train_scores_"})

    def __init__(self, k: int = 20, weighting: str = "uniform", encoder: str = DEFAULT_ENCODER):
        self.k = k
        self.weighting = weighting
        self.encoder = encoder

    def _fit(self, log, X):
        if self.weighting not in ("uniform", "similarity"):
            from routecast.errors import ConfigError

            raise ConfigError(f"knn: weighting must be 'uniform' or 'similarity', got {self.weighting!r}")
        self.train_embeddings_ = l2_normalise(X)
        self.train_scores_ = log.scores.astype(np.float32)
        self.prior_ = np.nan_to_num(log.mean_scores(), nan=0.0)
        vars(self).pop("train_weights_", None)
        if log.is_traffic():  # one model per prompt: per-model neighbours among logged cells, propensity-weighted
            weights = log.propensity_weights()
            self.train_weights_ = np.nan_to_num(weights if weights is not None else
                                                (~np.isnan(log.scores)).astype(np.float64), nan=0.0).astype(np.float32)
        self._set_derived()

    def set_state(self, meta, arrays):
        super().set_state(meta, arrays)
        self._set_derived()
        return self

    def _set_derived(self) -> None:
        """What prediction reads but the checkpoint does not store (private: ``get_state`` skips it):
        the train matrix as float32, C-contiguous and cache-line aligned (one BLAS product, no per-call
        copy) and whether every training score is logged."""
        self.train_embeddings_ = _cache_aligned(self.train_embeddings_)
        self._scores_complete = not bool(np.isnan(self.train_scores_).any())
        weights = getattr(self, "train_weights_", None)
        self._logged_rows = (None if weights is None else
                             [np.flatnonzero(~np.isnan(self.train_scores_[:, j])) for j in range(weights.shape[1])])

    def _predict_quality(self, X, texts):
        X = l2_normalise(X)
        train = self.train_embeddings_
        k = int(min(max(1, self.k), len(train)))
        similarity = self.weighting == "similarity"
        complete = self._scores_complete
        out = np.empty((len(X), self.train_scores_.shape[1]))
        for start in range(0, len(X), _CHUNK):
            sims = X[start:start + _CHUNK] @ train.T
            if self._logged_rows is not None:
                out[start:start + _CHUNK] = self._per_model_means(sims, similarity)
                continue
            if k < sims.shape[1]:
                top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            else:
                top = np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
            neighbour_scores = self.train_scores_[top]  # (b, k, m)
            if similarity:
                w = np.clip(np.take_along_axis(sims, top, axis=1), 1e-6, None)[:, :, None]
            elif complete:  # every neighbour logged, weight 1: the plain mean (same float32 sum)
                out[start:start + _CHUNK] = neighbour_scores.sum(axis=1) / np.float32(k)
                continue
            else:
                w = np.ones(top.shape + (1,), dtype=np.float32)
            if complete:  # the masks below would keep every cell: skip them (same numbers)
                num = (neighbour_scores * w).sum(axis=1)
                den = np.broadcast_to(w, neighbour_scores.shape).sum(axis=1)
                out[start:start + _CHUNK] = num / den
                continue
            logged = ~np.isnan(neighbour_scores)
            num = np.where(logged, neighbour_scores * w, 0.0).sum(axis=1)
            den = np.where(logged, w, 0.0).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = num / den
            out[start:start + _CHUNK] = np.where(den > 0, mean, self.prior_)
        return out

    def _per_model_means(self, sims: np.ndarray, similarity: bool) -> np.ndarray:
        """(b, m) each model's propensity-weighted mean score over its own k nearest logged prompts
        (a traffic log, see the module docstring); a model never logged keeps its mean."""
        out = np.empty((sims.shape[0], len(self._logged_rows)))
        for j, rows in enumerate(self._logged_rows):
            if rows.size == 0:
                out[:, j] = self.prior_[j]
                continue
            k = int(min(max(1, self.k), rows.size))
            local = sims[:, rows]
            top = np.argpartition(-local, k - 1, axis=1)[:, :k] if k < rows.size else \
                np.broadcast_to(np.arange(rows.size), local.shape)
            w = self.train_weights_[rows[top], j].astype(np.float64)
            if similarity:
                w = w * np.clip(np.take_along_axis(local, top, axis=1), 1e-6, None)
            num = (w * self.train_scores_[rows[top], j]).sum(axis=1)
            den = w.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[:, j] = np.where(den > 0, num / np.where(den > 0, den, 1.0), self.prior_[j])
        return out
