"""Label-free answer selection by embedding agreement (after Smoothie, Guha et al., NeurIPS 2024).

When several models have answered, the answer that sits closest to the others in embedding
space is the one most of them "agree" with; Smoothie shows that this choice, made without any
label, beats picking a fixed model on many generation tasks. routecast uses the same quantity
twice:

* :func:`smoothie_select` - a c1 baseline: call every model, return the response with the highest
  mean cosine similarity to the other responses (no training, no labels);
* :func:`agreement_weights` - the per-answer similarity that cascade routing
  (:mod:`routecast.cascade.cascade_router`) feeds to its posterior quality model as one more
  signal, over the answers obtained so far.

Responses are embedded from their last ``max_chars`` characters, where the final answer sits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from routecast.router.encoders.default import DEFAULT_ENCODER

if TYPE_CHECKING:  # pragma: no cover
    from routecast.cascade.ensembles import EnsembleResult
    from routecast.data.outcome_log import OutcomeLog


def embed_responses(encoder, responses: Sequence[object], *, max_chars: int = 1000) -> np.ndarray:
    """(k, dim) unit-norm embeddings of response texts (zeros for a missing response)."""
    from routecast.router.embedding_cache import embed

    texts = [r[-max_chars:] if isinstance(r, str) else "" for r in responses]
    if not texts:
        return np.zeros((0, encoder.dim))
    emb = np.asarray(embed(encoder, texts), dtype=np.float64)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = np.where(norms > 0, emb / np.maximum(norms, 1e-12), 0.0)
    missing = np.array([not isinstance(r, str) or not r.strip() for r in responses])
    emb[missing] = 0.0
    return emb


def similarity_matrix(embeddings: np.ndarray) -> np.ndarray:
    """(..., k, k) cosine similarities of unit-norm embeddings (..., k, dim)."""
    return np.einsum("...id,...jd->...ij", embeddings, embeddings)


def agreement_weights(similarities: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(k,) mean similarity of each present answer to the other present answers (0 when alone)."""
    present = np.asarray(present, dtype=bool)
    sims = np.where(present[None, :] & present[:, None], similarities, 0.0)
    np.fill_diagonal(sims, 0.0)
    others = present.sum() - present.astype(int)
    return np.where(present & (others > 0), sims.sum(axis=1) / np.maximum(others, 1), 0.0)


def smoothie_select(log: "OutcomeLog", *, encoder: str = DEFAULT_ENCODER, models: Sequence[str] | None = None,
                    max_chars: int = 1000) -> "EnsembleResult":
    """Call every model of ``models`` (default: all), return the most central response.

    Cost = the sum of the logged costs; quality = the logged score of the chosen response; ties go
    to the earlier model. Needs a response of every model on every prompt.
    """
    from routecast.cascade.answer_scorer import require_responses
    from routecast.cascade.ensembles import EnsembleResult, prepare_pool
    from routecast.router.encoders import get_encoder

    sub, cost = prepare_pool(log, models)
    require_responses(sub, sub.models, why="the Smoothie selector")
    n, k = sub.n_prompts, sub.n_models
    emb = embed_responses(get_encoder(encoder), list(sub.responses.reshape(-1)), max_chars=max_chars)
    sims = similarity_matrix(emb.reshape(n, k, -1))
    present = np.ones(k, dtype=bool)
    weights = np.stack([agreement_weights(sims[i], present) for i in range(n)]) if n else np.zeros((0, k))
    choice = weights.argmax(axis=1) if n else np.zeros(0, dtype=int)
    return EnsembleResult("smoothie", sub.models, cost, sub.scores[np.arange(n), choice], choice)
