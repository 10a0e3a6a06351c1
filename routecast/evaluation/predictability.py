"""Which models' outcomes a router can predict beyond a lookup table: AUC and Brier score of its
predicted quality against the observed success, per benchmark and model.

A router that only learned each benchmark's average (a "dataset oracle") predicts one value per
benchmark and model: within a benchmark its AUC is 0.5. An AUC clearly above 0.5 within a
benchmark is per-prompt signal. Success is ``score >= 0.5`` (scores are in [0, 1]); the Brier score
is the mean squared error of the predicted quality against the score itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["auc", "predictability"]


def auc(predicted: np.ndarray, success: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN without both classes."""
    predicted = np.asarray(predicted, dtype=np.float64)
    success = np.asarray(success, dtype=bool)
    n_pos, n_neg = int(success.sum()), int((~success).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(predicted, kind="mergesort")
    ranks = np.empty(len(predicted))
    sorted_pred = predicted[order]
    # average ranks over ties
    start = 0
    for end in np.concatenate([np.flatnonzero(np.diff(sorted_pred) != 0) + 1, [len(sorted_pred)]]):
        ranks[order[start:end]] = (start + end + 1) / 2.0
        start = end
    return float((ranks[success].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def predictability(quality: np.ndarray, scores: np.ndarray, models, groups: np.ndarray | None = None,
                   *, min_prompts: int = 20) -> list[dict[str, Any]]:
    """One row per (benchmark, model) with ``auc`` and ``brier``; groups with fewer than
    ``min_prompts`` prompts are left out (their AUC is noise). ``groups`` None: one group "all"."""
    quality = np.asarray(quality, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.full(len(quality), "all", dtype=object) if groups is None else np.asarray(groups, dtype=object)
    rows = []
    for group in sorted(set(labels.tolist()), key=str):
        idx = np.flatnonzero(labels == group)
        if idx.size < min_prompts:
            continue
        for j, model in enumerate(models):
            q, s = quality[idx, j], scores[idx, j]
            keep = np.isfinite(s)
            if keep.sum() < min_prompts:
                continue
            rows.append({"benchmark": str(group), "model": model, "n_prompts": int(keep.sum()),
                         "auc": auc(q[keep], s[keep] >= 0.5),
                         "brier": float(np.mean((q[keep] - s[keep]) ** 2))})
    return rows
