"""Post-hoc ensembles: call several models on every prompt, then pick one answer.

These are the baselines a cascade must beat: they pay for *every* model they ask (cost = sum of
the logged costs), and their quality on a prompt is the logged score of the answer they return.

* :func:`majority_vote` - the most frequent normalised final answer
  (:func:`routecast.cascade.answers.final_answer`) among the models. **Tie rule:** among answers
  with the same number of votes, the one given by the earliest model in ``models`` wins (pass
  the models strongest-first to break ties toward the strongest). The returned answer's quality
  is the score of the earliest model in ``models`` that gave it. Models whose response has no
  extractable answer do not vote; if no model has one, the first model's answer is returned.
* :func:`best_of_n` - the response with the highest answer-scorer output (ties: earliest model).
* :func:`oracle_ensemble` - the best logged score, i.e. a perfect judge; an upper bound.

Each returns an :class:`EnsembleResult` of per-prompt cost and quality (and which model's answer
was returned), convertible to a one-point evaluation curve.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from routecast.errors import RoutingError

if TYPE_CHECKING:  # pragma: no cover
    from routecast.cascade.answer_scorer import AnswerScorer
    from routecast.data.outcome_log import OutcomeLog


@dataclass
class EnsembleResult:
    """Per-prompt outcome of an ensemble: ``cost`` and ``quality`` (n,), ``choice`` (n,) the index
    (into ``models``) of the model whose answer was returned."""

    name: str
    models: tuple[str, ...]
    cost: np.ndarray
    quality: np.ndarray
    choice: np.ndarray

    def point(self) -> tuple[float, float]:
        """(mean cost, mean quality)."""
        return float(self.cost.mean()), float(np.nanmean(self.quality))

    def to_curve(self, log: "OutcomeLog | None" = None, *, cost_unit: str | None = None):
        """A one-point ``routecast.evaluation.curves.Curve`` (every model is called: shares are 1)."""
        from routecast.core.curve import USD, Curve

        kwargs = {"label": self.name, "family": "ensemble", "cost_unit": cost_unit or USD}
        if log is not None:
            shares = np.array([[1.0 if m in self.models else 0.0 for m in log.models]])
            kwargs.update(models=log.models, call_shares=shares)
            if log.n_models == 2:
                kwargs["strong_share"] = [1.0]
        return Curve.from_points(self.cost[None], self.quality[None], [self.name], **kwargs)


def prepare_pool(log: "OutcomeLog", models: Sequence[str] | None) -> tuple["OutcomeLog", np.ndarray]:
    """``log`` restricted to ``models`` (None: all) and the (n,) cost of calling them all; every post-hoc selector
    (here and :mod:`routecast.cascade.smoothie`) pays for every model, so a missing cost is refused."""
    models = list(log.models if models is None else models)
    sub = log.select_models(models)
    if np.isnan(sub.costs).any():
        bad = [m for j, m in enumerate(models) if np.isnan(sub.costs[:, j]).any()]
        raise RoutingError(f"ensemble over {models}: no cost for model(s) {', '.join(bad)} on some prompts of "
                           f"{log.source}; give per-model prices (OutcomeLog.with_costs)")
    return sub, sub.costs.sum(axis=1)


def majority_vote(log: "OutcomeLog", models: Sequence[str] | None = None) -> EnsembleResult:
    """Vote over normalised final answers (see the module docstring for the tie rule)."""
    from routecast.cascade.agreement import answer_matrix
    from routecast.cascade.answer_scorer import require_responses

    sub, cost = prepare_pool(log, models)
    require_responses(sub, sub.models, why="majority vote")
    answers = answer_matrix(sub.responses)
    choice = np.zeros(sub.n_prompts, dtype=np.int64)
    for i, row in enumerate(answers):
        voted = [a for a in row if a is not None]
        if not voted:
            continue
        counts = Counter(voted)
        top = max(counts.values())
        # earliest model whose answer has the top count
        choice[i] = next(j for j, a in enumerate(row) if a is not None and counts[a] == top)
    quality = sub.scores[np.arange(sub.n_prompts), choice]
    return EnsembleResult("majority-vote", sub.models, cost, quality, choice)


def best_of_n(log: "OutcomeLog", scorer: "AnswerScorer | Callable", models: Sequence[str] | None = None
              ) -> EnsembleResult:
    """Return the response the scorer rates highest (ties: the earliest model).

    ``scorer`` is a fitted :class:`~routecast.cascade.answer_scorer.AnswerScorer` or a callable
    ``(prompts, responses, model) -> (n,) scores``.
    """
    from routecast.cascade.answer_scorer import require_responses

    sub, cost = prepare_pool(log, models)
    require_responses(sub, sub.models, why="best-of-n")
    predict = scorer.predict if hasattr(scorer, "predict") else scorer
    ratings = np.stack([np.asarray(predict(list(sub.prompts), list(sub.responses[:, j]), name), dtype=np.float64)
                        for j, name in enumerate(sub.models)], axis=1)
    choice = np.argmax(np.nan_to_num(ratings, nan=-np.inf), axis=1)
    quality = sub.scores[np.arange(sub.n_prompts), choice]
    return EnsembleResult("best-of-n", sub.models, cost, quality, choice)


def oracle_ensemble(log: "OutcomeLog", models: Sequence[str] | None = None) -> EnsembleResult:
    """Best logged score of any model, paying for all of them: the ceiling of post-hoc selection."""
    sub, cost = prepare_pool(log, models)
    filled = np.nan_to_num(sub.scores, nan=-np.inf)
    choice = np.argmax(filled, axis=1)
    quality = sub.scores[np.arange(sub.n_prompts), choice]
    return EnsembleResult("oracle-ensemble", sub.models, cost, quality, choice)
