"""The outcome log: what routecast learns from.

A log is a prompts x models table. For each prompt we know its text and id, and for each
candidate model the quality of its answer (``scores``, in [0, 1]; NaN where that model was not
run on that prompt), what the call cost in USD (``costs``; NaN where unknown) and optionally the
answer text (``responses``). Per-prompt metadata such as ``benchmark`` or ``split`` rides along
in ``meta``.

Everything downstream (splits, routers, cascades, evaluation) works on these dense matrices
because routing is a per-prompt choice among a handful of models: a (n_prompts, n_models)
float64 matrix is both the natural and the fastest representation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from routecast.data.best_model import best_model


#: a log with fewer complete rows than this share of its prompts is sparse (see OutcomeLog.is_sparse)
SPARSE_SHARE = 0.5
#: metadata columns that group prompts by task (estimated propensities, outcome models), in order
GROUP_COLUMNS = ("benchmark", "task")


@dataclass(frozen=True, eq=False)
class OutcomeLog:
    """Prompt x model outcomes.

    Attributes
    ----------
    prompt_ids: (n,) array of str, unique.
    prompts: (n,) array of str, the query text.
    models: tuple of m model names, in column order of the matrices.
    scores: (n, m) float64 in [0, 1]; NaN = not logged.
    costs: (n, m) float64 USD per call; NaN = unknown.
    responses: (n, m) object array of str or None, or None when the log has no responses.
    meta: DataFrame with n rows (positional index 0..n-1), one column per metadata field
        (``benchmark``, ``split``, ``task``...). May have no columns.
    source: where the log came from (a path or a built-in name), used in messages.
    counts: (n, m) float64 number of log rows merged into each cell (repeated prompts of a traffic
        log, see :mod:`routecast.data.loaders`), or None when every logged cell is one row.
    """

    prompt_ids: np.ndarray
    prompts: np.ndarray
    models: tuple[str, ...]
    scores: np.ndarray
    costs: np.ndarray
    responses: np.ndarray | None = None
    meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    source: str = "<memory>"
    counts: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, m = len(self.prompt_ids), len(self.models)
        object.__setattr__(self, "prompt_ids", np.asarray(self.prompt_ids, dtype=object))
        object.__setattr__(self, "prompts", np.asarray(self.prompts, dtype=object))
        object.__setattr__(self, "models", tuple(str(x) for x in self.models))
        object.__setattr__(self, "scores", np.asarray(self.scores, dtype=np.float64).reshape(n, m))
        object.__setattr__(self, "costs", np.asarray(self.costs, dtype=np.float64).reshape(n, m))
        if self.responses is not None:
            object.__setattr__(self, "responses", np.asarray(self.responses, dtype=object).reshape(n, m))
        if self.counts is not None:
            object.__setattr__(self, "counts", np.asarray(self.counts, dtype=np.float64).reshape(n, m))
        meta = self.meta if self.meta is not None else pd.DataFrame()
        if len(meta.columns) == 0:
            meta = pd.DataFrame(index=pd.RangeIndex(n))
        meta = meta.reset_index(drop=True)
        object.__setattr__(self, "meta", meta)
        if len(self.prompts) != n or len(meta) != n:
            raise ValueError("prompt_ids, prompts and meta must have the same length")
        if len(set(self.models)) != m:
            raise ValueError(f"duplicate model names in {self.models}")

    # ------------------------------------------------------------------ shape
    @property
    def n_prompts(self) -> int:
        return len(self.prompt_ids)

    @property
    def n_models(self) -> int:
        return len(self.models)

    def __len__(self) -> int:
        return self.n_prompts

    def __repr__(self) -> str:
        return (f"OutcomeLog(source={self.source!r}, prompts={self.n_prompts}, models={self.n_models}, "
                f"responses={'yes' if self.responses is not None else 'no'})")

    # -------------------------------------------------------------- selection
    def model_index(self, name: str) -> int:
        from routecast.data.names import model_name

        try:
            return self.models.index(model_name(name))
        except ValueError:
            from routecast.errors import DataError

            raise DataError(f"model {name!r} is not in the log; models are {list(self.models)}",
                            path=self.source, column="model") from None

    def subset(self, index: Sequence[int] | np.ndarray) -> "OutcomeLog":
        """Rows ``index`` (positions or a boolean mask), in that order."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return OutcomeLog(
            prompt_ids=self.prompt_ids[idx], prompts=self.prompts[idx], models=self.models,
            scores=self.scores[idx], costs=self.costs[idx],
            responses=None if self.responses is None else self.responses[idx],
            meta=self.meta.iloc[idx].reset_index(drop=True), source=self.source,
            counts=None if self.counts is None else self.counts[idx],
        )

    def select_models(self, names: Sequence[str]) -> "OutcomeLog":
        """Columns ``names`` in that order (names compared as :mod:`routecast.data.names` says)."""
        cols = [self.model_index(n) for n in names]
        return OutcomeLog(
            prompt_ids=self.prompt_ids, prompts=self.prompts, models=tuple(self.models[c] for c in cols),
            scores=self.scores[:, cols], costs=self.costs[:, cols],
            responses=None if self.responses is None else self.responses[:, cols],
            meta=self.meta, source=self.source, counts=None if self.counts is None else self.counts[:, cols],
        )

    def with_costs(self, costs: np.ndarray) -> "OutcomeLog":
        return OutcomeLog(self.prompt_ids, self.prompts, self.models, self.scores, costs,
                          self.responses, self.meta, self.source, self.counts)

    # ------------------------------------------------------------- summaries
    def mean_scores(self) -> np.ndarray:
        """(m,) mean logged score per model, NaN-ignoring (NaN for a model with no logged score)."""
        return _nanmean_cols(self.scores)

    def mean_costs(self) -> np.ndarray:
        """(m,) mean logged cost per call per model, NaN-ignoring."""
        return _nanmean_cols(self.costs)

    def best_single_model(self) -> str:
        """The strong model of this log: :func:`routecast.data.best_model.best_model` of its mean
        scores and costs (highest mean score; ties: the cheaper, then the first)."""
        return self.models[best_model(self.mean_scores(), self.mean_costs())]

    def oracle_quality(self) -> float:
        """Mean over prompts of the best logged score: the ceiling of any router on this log."""
        has_any = ~np.all(np.isnan(self.scores), axis=1)
        if not has_any.any():
            return float("nan")
        return float(np.nanmax(self.scores[has_any], axis=1).mean())

    def complete_rows(self) -> np.ndarray:
        """(n,) bool: prompts whose score is logged for every model.

        The one rule for unlogged score cells (see :mod:`routecast.core.policy`): a measured
        curve never guesses a score, it keeps only these prompts and reports how many it dropped.
        """
        return ~np.isnan(self.scores).any(axis=1)

    def is_sparse(self) -> bool:
        """True when fewer than :data:`SPARSE_SHARE` of the prompts have every model's score (a
        traffic log): its routing is then estimated from the logged cells, not measured, and its
        oracle is unknown."""
        return self.n_prompts > 0 and float(self.complete_rows().mean()) < SPARSE_SHARE

    def is_traffic(self) -> bool:
        """True when most prompts have at most one logged score: one model per request, the shape
        of a product's traffic log (a sparse log may instead miss a few cells per prompt)."""
        return self.n_prompts > 0 and float(((~np.isnan(self.scores)).sum(axis=1) <= 1).mean()) > SPARSE_SHARE

    def coverage(self) -> np.ndarray:
        """(m,) share of prompts on which each model's score is logged."""
        return (~np.isnan(self.scores)).mean(axis=0) if self.n_prompts else np.full(self.n_models, np.nan)

    def complete(self) -> "OutcomeLog":
        """This log restricted to :meth:`complete_rows` (itself when nothing is missing)."""
        keep = self.complete_rows()
        return self if keep.all() else self.subset(keep)

    def propensity_weights(self, *, max_weight: float = 20.0) -> np.ndarray | None:
        """(n, m) inverse-propensity weight ``1 / p`` of every logged score cell (NaN elsewhere),
        clipped at ``max_weight`` and scaled to mean 1 over the logged cells; None when every cell
        is logged and the log has no ``propensity`` column (nothing to reweight).

        Why: a router fitted on the cells a logging policy chose would learn that policy's
        preferences (a model logged mostly on easy prompts looks good); weighting each cell by
        one over its probability of being logged (:meth:`logging_propensities`: the logged
        ``propensity`` of a bandit log, else estimated per group) fits every model to the whole
        prompt distribution instead.
        """
        logged = ~np.isnan(self.scores)
        if "propensity" in self.meta.columns:
            p = pd.to_numeric(self.meta["propensity"], errors="coerce").to_numpy(dtype=np.float64)
            if not (np.isfinite(p).all() and (p > 0).all() and (p <= 1).all()):
                raise ValueError(f"{self.source}: propensity must be in (0, 1] on every row")
        elif logged.all():
            return None
        p, _ = self.logging_propensities()
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(logged, np.minimum(1.0 / np.where(logged, p, 1.0), max_weight), np.nan)
        return w / np.nanmean(w)

    def group_column(self) -> str | None:
        """The metadata column that groups prompts by task (:data:`GROUP_COLUMNS`), if the log has one."""
        return next((c for c in GROUP_COLUMNS if c in self.meta.columns), None)

    def logging_propensities(self, by: str | None = "auto") -> tuple[np.ndarray, str]:
        """(n, m) probability that each score cell was logged, and ``"logged"`` or ``"estimated"``.

        Why: a traffic log shows each prompt's answer from the model that served it, so a model's
        logged scores are a biased sample of its quality; an off-policy estimate reweights each
        logged cell by one over this probability. With a ``propensity`` column (the logging
        policy's probability of its choice) on a log holding one logged score per prompt, that
        value is the logged cell's probability. Otherwise it is estimated as the share of prompts
        of the same group (``by``: a metadata column such as ``benchmark``; ``"auto"``:
        :meth:`group_column`; None: the whole log)
        on which the model was logged; a 0 there means positivity fails (the model was never
        logged for that group).
        """
        logged = ~np.isnan(self.scores)
        if "propensity" in self.meta.columns and (logged.sum(axis=1) == 1).all():
            p = pd.to_numeric(self.meta["propensity"], errors="coerce").to_numpy(dtype=np.float64)
            if np.isfinite(p).all() and (p > 0).all() and (p <= 1).all():
                return np.where(logged, p[:, None], np.nan), "logged"
        by = self.group_column() if by == "auto" else by
        groups = (np.zeros(self.n_prompts, dtype=np.int64) if by is None or by not in self.meta.columns
                  else pd.factorize(self.meta[by].astype(str))[0])
        sizes = np.bincount(groups).astype(np.float64)
        shares = np.zeros((len(sizes), self.n_models))
        np.add.at(shares, groups, logged.astype(np.float64))
        return shares[groups] / sizes[groups][:, None], "estimated"

    def missing_cells(self) -> int:
        return int(np.isnan(self.scores).sum())

    def to_long(self) -> pd.DataFrame:
        """One row per logged (prompt, model): the interchange format of ../shared/data."""
        n, m = self.scores.shape
        rows = {
            "prompt_id": np.repeat(self.prompt_ids, m),
            "prompt": np.repeat(self.prompts, m),
            "model": np.tile(np.array(self.models, dtype=object), n),
            "score": self.scores.reshape(-1),
            "cost": self.costs.reshape(-1),
        }
        if self.responses is not None:
            rows["response"] = self.responses.reshape(-1)
        if self.counts is not None:
            rows["count"] = self.counts.reshape(-1)
        frame = pd.DataFrame(rows)
        for col in self.meta.columns:
            frame[col] = np.repeat(self.meta[col].to_numpy(), m)
        return frame[~np.isnan(frame["score"].to_numpy(dtype=float))].reset_index(drop=True)


def _nanmean_cols(matrix: np.ndarray) -> np.ndarray:
    counts = (~np.isnan(matrix)).sum(axis=0)
    sums = np.nansum(matrix, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
