"""knn's single-prompt fast path gives exactly the numbers of the masked definition.

``KnnRouter`` decides once (fit, checkpoint load) whether its stored scores have any NaN, and a
complete score matrix skips the (b, k, m) logged-masks. The reference below is the masked
definition the router had before (mean over the *logged* neighbours, weight 1 or the clipped
similarity, the training mean where no neighbour is logged); the fast path must reproduce it
bit for bit, on a real slice of llmrouter_9models, for both weightings, with and without NaN.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from routecast.core.checkpoint import load_checkpoint, save_checkpoint
from routecast.router.encoders.base import l2_normalise
from routecast.core.registry import make_router

HASHING = "hashing:dim=256"


def _reference(router, X: np.ndarray) -> np.ndarray:
    """The masked kNN mean, written out once (the pre-fast-path implementation)."""
    X = l2_normalise(X)
    train, scores = router.train_embeddings_, router.train_scores_
    k = int(min(max(1, router.k), len(train)))
    sims = X @ train.T
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else \
        np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
    neighbour = scores[top]
    if router.weighting == "similarity":
        w = np.clip(np.take_along_axis(sims, top, axis=1), 1e-6, None)[:, :, None]
    else:
        w = np.ones(top.shape + (1,), dtype=np.float32)
    logged = ~np.isnan(neighbour)
    num = np.where(logged, neighbour * w, 0.0).sum(axis=1)
    den = np.where(logged, w, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = num / den
    return np.where(den > 0, mean, router.prior_)


def _with_missing(log, seed: int = 0):
    """The same log with 30 % of the cells unlogged, and one model never logged on the first 40 prompts."""
    scores = log.scores.copy()
    scores[np.random.default_rng(seed).random(scores.shape) < 0.3] = np.nan
    scores[:40, 0] = np.nan
    return dataclasses.replace(log, scores=scores)


@pytest.fixture(scope="module")
def embedded(small_split):
    from routecast.router.embedding_cache import embed
    from routecast.router.encoders import get_encoder

    train, test = small_split
    encoder = get_encoder(HASHING)
    return train, embed(encoder, list(train.prompts)), embed(encoder, list(test.prompts))


@pytest.mark.parametrize("missing", [False, True], ids=["complete", "with-nan"])
@pytest.mark.parametrize("weighting", ["uniform", "similarity"])
@pytest.mark.parametrize("k", [1, 7, 20, 10_000])
def test_fast_path_equals_masked_definition(embedded, weighting, k, missing):
    train, X_train, X_test = embedded
    log = _with_missing(train) if missing else train
    router = make_router("knn", k=k, weighting=weighting, encoder=HASHING).fit(log, X_train)
    assert router._scores_complete is (not missing)
    got = router.predict_quality(embeddings=X_test)
    expected = np.clip(_reference(router, X_test), 0.0, 1.0)
    assert np.array_equal(got, expected)  # bit for bit, not approximately
    # one prompt at a time (the server's call) is the same as the reference on that prompt
    for i in (0, 17, len(X_test) - 1):
        assert np.array_equal(router.predict_quality(embeddings=X_test[i:i + 1]),
                              np.clip(_reference(router, X_test[i:i + 1]), 0.0, 1.0))
    if missing:  # the prior fallback is reached: with k=1 some prompt's neighbour has model 0 unlogged
        if k == 1:
            assert np.isclose(got[:, 0], router.prior_[0]).any()


@pytest.mark.parametrize("missing", [False, True], ids=["complete", "with-nan"])
def test_checkpoint_load_sets_the_flag_and_stores_nothing_new(embedded, tmp_path, missing):
    train, X_train, X_test = embedded
    log = _with_missing(train) if missing else train
    router = make_router("knn", k=9, weighting="similarity", encoder=HASHING).fit(log, X_train)
    meta, arrays = router.get_state()
    assert set(arrays) >= {"train_embeddings_", "train_scores_", "prior_"}
    assert not any("complete" in key for key in [*meta, *arrays])  # derived, never serialised
    loaded = load_checkpoint(save_checkpoint(router, tmp_path / "knn"))
    assert loaded._scores_complete is (not missing)
    matrix = loaded.train_embeddings_
    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous and matrix.ctypes.data % 64 == 0
    assert np.array_equal(matrix, router.train_embeddings_)
    assert np.array_equal(loaded.predict_quality(embeddings=X_test), router.predict_quality(embeddings=X_test))
    lam = 50.0
    assert np.array_equal(loaded.route(embeddings=X_test, lam=lam).choice,
                          router.route(embeddings=X_test, lam=lam).choice)
