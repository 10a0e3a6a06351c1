"""``sw-ranking``: RouteLLM's similarity-weighted ranking router, batch-first.

For each query, every training comparison (prompt, model a, model b, who won) is weighted by
how similar its prompt is to the query, and a Bradley–Terry model (the MLE behind Elo ratings)
is fitted on the weighted comparisons; the query's predicted quality of model ``j`` is the
Bradley–Terry probability that ``j`` beats a model of average strength *on prompts like this
one*: ``sigmoid(theta_j - mean_k theta_k)``. It is a win rate in [0, 1] that orders models per
prompt; it is not an expected benchmark score (calibrate before routing on budgets).

Weighting (RouteLLM ``SWRankingRouter.get_weightings``): ``w = gamma * gamma ** (sim / max_sim)``
with ``sim`` the cosine similarity to each training prompt and ``max_sim`` the largest one for
this query (RouteLLM uses gamma = 10). The constant factor cancels in the MLE; we normalise
the weights to mean 1 so the L2 prior ``l2`` (absent in RouteLLM, which fits an unregularised
logistic regression) has the same meaning for every query and only keeps models that never
appear, or never lose, finite. Ties count half a win each way, as in RouteLLM.

Speed: the comparisons are reduced to sufficient statistics per training prompt and model
pair (how many comparisons, how many wins), so one query costs a similarity row, two small
matrix products and a few batched Newton steps on ``(n_models, n_models)`` systems; queries
are processed in blocks. ``max_prompts`` caps the stored training prompts (seeded subsample).
"""

from __future__ import annotations

import numpy as np

from routecast.errors import RoutingError
from routecast.router.base import Router
from routecast.router.mf import cost_vector, pair_embeddings, preference_arrays
from routecast.core.registry import register_router
from routecast.router.search_space import Float, Int
from routecast.core.tags import PolicyTags
from routecast.router.encoders.default import DEFAULT_ENCODER

_BLOCK = 256  # queries per block: bounds the (block, n_train) similarity matrix


def comparisons_from_scores(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every model pair (a < b) on every prompt where both were logged: the higher score wins,
    equal scores tie. Returns (pair_a, pair_b, counts (n, T), wins of a (n, T))."""
    m = scores.shape[1]
    pair_a, pair_b = np.triu_indices(m, k=1)
    sa, sb = scores[:, pair_a], scores[:, pair_b]
    logged = ~(np.isnan(sa) | np.isnan(sb))
    with np.errstate(invalid="ignore"):
        wins = np.where(sa > sb, 1.0, np.where(sa == sb, 0.5, 0.0))
    counts = logged.astype(np.float32)
    return pair_a.astype(np.int64), pair_b.astype(np.int64), counts, (wins * logged).astype(np.float32)


def bradley_terry_strengths(counts: np.ndarray, wins: np.ndarray, pair_a: np.ndarray, pair_b: np.ndarray,
                            n_models: int, l2: float, steps: int) -> np.ndarray:
    """Batched L2-regularised Bradley–Terry MLE by Newton's method.

    ``counts``/``wins`` are (B, T): the weighted number of comparisons of each model pair and
    the weighted wins of its first model. Returns strengths theta (B, n_models) in logits
    (P(a beats b) = sigmoid(theta_a - theta_b)). The objective is convex; steps are clipped to
    2 logits per coordinate so near-separable data cannot overshoot.
    """
    B, T = counts.shape
    A = np.zeros((T, n_models))
    A[np.arange(T), pair_a] = 1.0
    A[np.arange(T), pair_b] = -1.0
    outer = np.einsum("ti,tj->tij", A, A)
    eye = np.eye(n_models) * max(l2, 1e-9)
    theta = np.zeros((B, n_models))
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(theta @ A.T)))
        grad = (counts * p - wins) @ A + l2 * theta
        hess = np.einsum("bt,tij->bij", counts * p * (1.0 - p), outer) + eye
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        theta -= np.clip(step, -2.0, 2.0)
        if np.abs(step).max() < 1e-6:
            break
    return theta


@register_router("sw-ranking")
class SimilarityWeightedRankingRouter(Router):
    """Per-query Bradley–Terry ranking on similarity-weighted training comparisons."""

    family = "a1"
    uses_embeddings = True
    # numpy only (routecast.router.mf, whose preference helpers it uses, imports torch only to train)
    #: learns from two models compared on one prompt: a traffic log has no such pair
    tags = PolicyTags(needs_shared_prompts=True, quick_params={"newton_steps": 5, "max_prompts": 200})
    search_space = {
        "gamma": Float(1.5, 1e4, log=True),
        "l2": Float(1e-3, 10.0, log=True),
        "max_prompts": Int(500, 20000, log=True),
    }

    def __init__(self, *, gamma: float = 10.0, l2: float = 1.0, max_prompts: int = 10000,
                 newton_steps: int = 20, encoder: str = DEFAULT_ENCODER, seed: int = 0):
        self.gamma = gamma
        self.l2 = l2
        self.max_prompts = max_prompts
        self.newton_steps = newton_steps
        self.encoder = encoder
        self.seed = seed

    # ----------------------------------------------------------------- fit
    def _fit(self, log, X: np.ndarray) -> None:
        pair_a, pair_b, counts, wins = comparisons_from_scores(log.scores)
        self._store(X, pair_a, pair_b, counts, wins)
        self.trained_on_ = "scores"

    def fit_preferences(self, pairs, embeddings: np.ndarray | None = None,
                        costs: dict[str, float] | None = None) -> "SimilarityWeightedRankingRouter":
        """Learn from pairwise preferences (a ``routecast.data.PairwiseLog``: ``prompts``,
        ``model_a``, ``model_b``, ``winner``, ``models``). ``embeddings``: one row per pair;
        computed (once per distinct prompt) when omitted. ``costs``: USD per call per model."""
        if len(pairs.model_a) == 0:
            raise RoutingError("cannot fit router 'sw-ranking' on an empty preference log")
        models, a, b, y = preference_arrays(pairs)
        X = pair_embeddings(self, pairs, embeddings)
        # orient every comparison as (lower index, higher index) so each model pair is one column
        swap = a > b
        lo, hi = np.where(swap, b, a), np.where(swap, a, b)
        y = np.where(swap, 1.0 - y, y)
        keep = lo != hi  # a model compared with itself says nothing
        lo, hi, y, X = lo[keep], hi[keep], y[keep], X[keep]
        prompts = np.asarray([str(p) for p in pairs.prompts], dtype=object)[keep]
        if len(lo) == 0:
            raise RoutingError("the preference log compares no two different models")
        types, type_idx = np.unique(np.stack([lo, hi], axis=1), axis=0, return_inverse=True)
        keys, first, prompt_idx = np.unique(prompts, return_index=True, return_inverse=True)
        counts = np.zeros((len(keys), len(types)), dtype=np.float32)
        wins = np.zeros_like(counts)
        np.add.at(counts, (prompt_idx, type_idx.reshape(-1)), 1.0)
        np.add.at(wins, (prompt_idx, type_idx.reshape(-1)), y)
        self.models_ = models
        self.costs_ = cost_vector(models, costs)
        self.calibration_ = None
        self._store(X[first], types[:, 0].astype(np.int64), types[:, 1].astype(np.int64), counts, wins)
        self.trained_on_ = "preferences"
        return self

    def _store(self, X, pair_a, pair_b, counts, wins) -> None:
        has = counts.sum(axis=1) > 0
        rows = np.flatnonzero(has)
        if len(rows) == 0:
            raise RoutingError("no prompt has two logged models to compare; sw-ranking learns from comparisons "
                               "(a one-model-per-request log has none: collect a second model's answers on "
                               "some prompts with routecast collect, or use another router)")
        if len(rows) > self.max_prompts:
            pick = np.random.default_rng(self.seed).choice(len(rows), int(self.max_prompts), replace=False)
            rows = rows[np.sort(pick)]
        emb = np.asarray(X, dtype=np.float32)[rows]
        self.train_emb_ = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        self.pair_a_ = np.asarray(pair_a, dtype=np.int64)
        self.pair_b_ = np.asarray(pair_b, dtype=np.int64)
        self.pair_counts_ = np.ascontiguousarray(counts[rows], dtype=np.float32)
        self.pair_wins_ = np.ascontiguousarray(wins[rows], dtype=np.float32)

    # ------------------------------------------------------------- predict
    def similarity_weights(self, X: np.ndarray) -> np.ndarray:
        """(n, n_train) weights of the training prompts for queries X, normalised to mean 1."""
        Q = np.asarray(X, dtype=np.float32)
        Q = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
        sims = (Q @ self.train_emb_.T).astype(np.float64)
        max_sim = sims.max(axis=1, keepdims=True)
        ratio = np.where(max_sim > 1e-9, sims / np.where(max_sim > 1e-9, max_sim, 1.0), 0.0)
        # gamma ** (1 + ratio), divided by its maximum gamma**2 for range safety (cancels below)
        w = np.exp(np.log(float(self.gamma)) * (np.clip(ratio, -1.0, 1.0) - 1.0))
        return w / w.mean(axis=1, keepdims=True)

    def _predict_quality(self, X: np.ndarray, texts) -> np.ndarray:
        m = len(self.models_)
        out = np.empty((len(X), m))
        counts = self.pair_counts_.astype(np.float64)
        wins = self.pair_wins_.astype(np.float64)
        for start in range(0, len(X), _BLOCK):
            w = self.similarity_weights(X[start:start + _BLOCK])
            theta = bradley_terry_strengths(w @ counts, w @ wins, self.pair_a_, self.pair_b_, m,
                                            float(self.l2), int(self.newton_steps))
            out[start:start + _BLOCK] = 1.0 / (1.0 + np.exp(-(theta - theta.mean(axis=1, keepdims=True))))
        return out
