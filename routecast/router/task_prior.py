"""``task-prior``: the "dataset oracle" - every prompt of a benchmark/task goes by that task's
shrunk mean score per model on the training split.

Published router benchmarks (LLMRouterBench, "Routing Plateau") find most learned routers sit
next to this table: they learn which benchmark a prompt is from, and each benchmark's best model,
rather than anything about the prompt. So it is the baseline a learned router's gain is measured
against.

The task of a prompt is the log's ``benchmark`` column (``column="auto"``; else ``task``). When a
prompt's task is known at routing time, :meth:`TaskPriorRouter.predict_quality_for_tasks` uses
it; otherwise (``route``/``predict_quality`` on plain texts, and any task the training split
never saw) the task is the nearest task centroid of the prompt's embedding, a classifier trained
on the training split, so the router also routes prompts it has never seen.

On a traffic log (:meth:`OutcomeLog.is_sparse`) each logged cell is weighed by its inverse
propensity and a (task, model) mean is shrunk by at least the empirical-Bayes strength
(:func:`routecast.router.group_prior.sparse_strength`): a task where a model served two prompts
says little about that model. A complete log is fitted exactly as before (``shrinkage`` alone).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from routecast.errors import ConfigError, RoutingError
from routecast.router.base import Router
from routecast.router.encoders.default import DEFAULT_ENCODER
from routecast.router.group_prior import (check_strength, group_centroids, nearest_group, shrunk_group_means,
                                          sparse_strength)
from routecast.core.registry import register_router
from routecast.router.search_space import Float

#: meta columns that name a prompt's task, in the order ``column="auto"`` tries them
TASK_COLUMNS = ("benchmark", "task")
_MISSING = "<no task>"


def task_column(log, column: str = "auto") -> str:
    """The meta column holding each prompt's task; RoutingError when the log has none."""
    if column == "auto":
        for name in TASK_COLUMNS:
            if name in log.meta.columns:
                return name
        raise RoutingError(f"task-prior needs a task column ({' or '.join(TASK_COLUMNS)}) in the log's "
                           f"metadata; {log.source} has {list(log.meta.columns) or 'none'}")
    if column not in log.meta.columns:
        raise RoutingError(f"task-prior: column {column!r} is not in the metadata of {log.source} "
                           f"(columns: {list(log.meta.columns) or 'none'})")
    return column


def task_labels(values) -> list[str]:
    """Task values as strings; a missing value is its own task. (Plain iteration, no pandas: the lean
    runtime install loads task-prior and prior-residual checkpoints.)"""
    return [_MISSING if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in list(values)]


@register_router("task-prior")
class TaskPriorRouter(Router):
    """Per-task shrunk mean score per model; tasks from metadata or a nearest-centroid classifier."""

    family = "a2"
    uses_embeddings = True
    search_space = {"shrinkage": Float(0.0, 100.0)}

    def __init__(self, column: str = "auto", shrinkage: float = 2.0, encoder: str = DEFAULT_ENCODER):
        self.column = column
        self.shrinkage = shrinkage
        self.encoder = encoder

    def _fit(self, log, X):
        strength = check_strength(self.shrinkage, router="task-prior")
        self.column_ = task_column(log, self.column)
        labels = task_labels(log.meta[self.column_])
        self.tasks_ = sorted(set(labels))
        index = {t: i for i, t in enumerate(self.tasks_)}
        groups = np.array([index[t] for t in labels], dtype=np.int64)
        # a traffic log: logged cells weighed by inverse propensity, shrunk at least empirical-Bayes strong
        weights = log.propensity_weights()
        strength = sparse_strength(strength, groups, log.scores, len(self.tasks_), weights, log.is_sparse())
        self.table_ = shrunk_group_means(groups, log.scores, len(self.tasks_), strength, weights=weights)
        self.centroids_ = group_centroids(X, groups, len(self.tasks_)).astype(np.float32)
        self.task_sizes_ = np.bincount(groups, minlength=len(self.tasks_)).astype(np.int64)

    def _predict_quality(self, X, texts):
        return self.table_[nearest_group(X, self.centroids_)]

    # ------------------------------------------------------------ known tasks
    def predict_quality_for_tasks(self, tasks: Sequence, texts: Sequence[str] | None = None, *,
                                  embeddings: np.ndarray | None = None) -> np.ndarray:
        """Predicted quality (n, m) when each prompt's task is known: ``tasks`` holds one entry
        per prompt. A None entry, or a task the training split never saw, is classified from
        the prompt's embedding (then ``texts`` or ``embeddings`` of all n prompts are needed)."""
        return np.clip(self.table_[self.task_index(tasks, texts, embeddings=embeddings)], 0.0, 1.0)

    def task_index(self, tasks: Sequence, texts: Sequence[str] | None = None, *,
                   embeddings: np.ndarray | None = None) -> np.ndarray:
        """Index into ``tasks_`` of each prompt's task: its logged ``tasks`` entry where the
        training split knew it, else the nearest task centroid of its embedding (see
        :meth:`predict_quality_for_tasks`). ``tasks=None`` classifies every prompt."""
        self._check_fitted()
        if tasks is None:
            return nearest_group(self._embeddings_for(None if texts is None else list(texts), embeddings),
                                 self.centroids_)
        known = {t: i for i, t in enumerate(self.tasks_)}
        index = np.array([-1 if t is None else known.get(str(t), -1) for t in tasks], dtype=np.int64)
        unknown = np.flatnonzero(index < 0)
        if unknown.size:
            if texts is None and embeddings is None:
                raise RoutingError(f"{unknown.size} prompt(s) have no task the training split knew "
                                   f"(first: {tasks[int(unknown[0])]!r}); give texts or embeddings to classify them")
            given = len(texts) if texts is not None else len(embeddings)
            if given != len(index):
                raise ConfigError(f"tasks has {len(index)} entries but {given} prompts were given")
            X = self._embeddings_for(None if texts is None else [texts[i] for i in unknown],
                                     None if embeddings is None else np.asarray(embeddings)[unknown])
            index[unknown] = nearest_group(X, self.centroids_)
        return index
