"""Deferral scores: at stage i, how confident is the cascade that it may stop here?

A cascade stops at stage i when ``score_i >= threshold_i``. Higher means "good enough". Three
sources of that confidence, one class each:

* :class:`ExAnteDeferral` - from a router's predicted quality, *before* any answer exists:
  ``score_i = q(current model) - max q(models still to come)``. It needs no response text, so it
  works on every log and lets the cascade skip calls it predicts are pointless.
* :class:`ExPostDeferral` - from an :class:`~routecast.cascade.answer_scorer.AnswerScorer`
  reading the current model's answer (FrugalGPT). Needs responses.
* :class:`AgreementDeferral` - from stage 2 on, the share of earlier final answers equal to the
  current one. Needs responses. At stage 1 there is nothing to agree with; the score there comes
  from an optional ``first_stage`` deferral, else it is NaN (never reaches a threshold: escalate).

Every class computes per-model *signals* on a log once (:meth:`Deferral.signals`, shape
``(n, n_models)``) and turns them into per-stage scores for any chain
(:meth:`Deferral.stage_scores`), so searching over many chains costs one pass of the encoder.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from routecast.router.encoders.default import DEFAULT_ENCODER

from routecast.errors import ConfigError, NotFittedError

if TYPE_CHECKING:  # pragma: no cover
    from routecast.cascade.answer_scorer import AnswerScorer
    from routecast.data.outcome_log import OutcomeLog
    from routecast.router.base import Router

DEFERRAL_KINDS = ("ex-ante", "ex-post", "agreement")


class Deferral(ABC):
    """Per-stage stop confidence for a cascade (see the module docstring)."""

    kind: ClassVar[str] = ""
    needs_responses: ClassVar[bool] = False

    def fit(self, log: "OutcomeLog") -> "Deferral":
        """Learn whatever the score needs from a training log holding the candidate models."""
        self.models_ = tuple(log.models)
        self._fit(log)
        return self

    def _fit(self, log: "OutcomeLog") -> None:
        return None

    @abstractmethod
    def signals(self, log: "OutcomeLog") -> np.ndarray:
        """(n, n_models) per-model signal on ``log`` (columns in ``log.models`` order)."""

    @abstractmethod
    def stage_scores(self, signals: np.ndarray, chain: Sequence[int]) -> np.ndarray:
        """(n, len(chain) - 1) deferral score at each non-final stage of ``chain`` (column indices)."""

    @abstractmethod
    def online_score(self, prompt: str, chain: Sequence[str], responses: Sequence[str],
                     cache: dict[str, Any]) -> float:
        """Score at stage ``len(responses) - 1`` for one live prompt; ``cache`` lives for one prompt."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; fit the cascade first")


class ExAnteDeferral(Deferral):
    """Predicted quality of the current model minus the best predicted among those still to come.

    ``router`` is a fitted or unfitted :class:`~routecast.router.base.Router`, or a registry name
    (fitted on the training log with ``encoder``). A name that is not available falls back to
    :class:`~routecast.cascade.ridge_quality.RidgeQualityRouter`.
    """

    kind = "ex-ante"
    needs_responses = False

    def __init__(self, router: "Router | str" = "knn", encoder: str = DEFAULT_ENCODER):
        self.router = router
        self.encoder = encoder

    def _fit(self, log: "OutcomeLog") -> None:
        router = self.router
        if isinstance(router, str):
            router = _make_router(router, self.encoder)
        if not hasattr(router, "models_"):
            router.fit(log)
        missing = [m for m in log.models if m not in router.models_]
        if missing:
            raise ConfigError(f"the ex-ante router was fitted without model(s) {', '.join(missing)}; "
                              f"it knows {', '.join(router.models_)}")
        self.router_ = router

    def signals(self, log: "OutcomeLog") -> np.ndarray:
        self._check_fitted()
        quality = self.router_.predict_quality(list(log.prompts))
        cols = [self.router_.models_.index(m) for m in log.models]
        return quality[:, cols]

    def stage_scores(self, signals: np.ndarray, chain: Sequence[int]) -> np.ndarray:
        q = np.asarray(signals, dtype=np.float64)[:, list(chain)]
        # best predicted quality among the models after stage i
        later_best = np.maximum.accumulate(q[:, ::-1], axis=1)[:, ::-1]
        return q[:, :-1] - later_best[:, 1:]

    def online_score(self, prompt, chain, responses, cache) -> float:
        if "quality" not in cache:
            quality = self.router_.predict_quality([prompt])[0]
            cache["quality"] = np.array([quality[self.router_.models_.index(m)] for m in chain])
        i = len(responses) - 1
        q = cache["quality"]
        return float(q[i] - q[i + 1:].max())


class ExPostDeferral(Deferral):
    """The answer scorer's predicted quality of the current model's response."""

    kind = "ex-post"
    needs_responses = True

    def __init__(self, scorer: "AnswerScorer | None" = None, encoder: str = DEFAULT_ENCODER,
                 head: str = "logistic"):
        self.scorer = scorer
        self.encoder = encoder
        self.head = head

    def _fit(self, log: "OutcomeLog") -> None:
        from routecast.cascade.answer_scorer import AnswerScorer

        scorer = self.scorer if self.scorer is not None else AnswerScorer(encoder=self.encoder, head=self.head)
        if not hasattr(scorer, "heads_"):
            scorer.fit(log)
        self.scorer_ = scorer

    def signals(self, log: "OutcomeLog") -> np.ndarray:
        self._check_fitted()
        return self.scorer_.score_log(log, log.models)

    def stage_scores(self, signals: np.ndarray, chain: Sequence[int]) -> np.ndarray:
        return np.asarray(signals, dtype=np.float64)[:, list(chain)[:-1]]

    def online_score(self, prompt, chain, responses, cache) -> float:
        i = len(responses) - 1
        return float(self.scorer_.predict([prompt], [responses[i]], chain[i])[0])


class AgreementDeferral(Deferral):
    """Share of earlier normalised final answers equal to the current one (stage 2 on)."""

    kind = "agreement"
    needs_responses = True

    def __init__(self, first_stage: Deferral | None = None):
        self.first_stage = first_stage

    def _fit(self, log: "OutcomeLog") -> None:
        from routecast.cascade.answer_scorer import require_responses

        require_responses(log, log.models, why="agreement deferral")
        if self.first_stage is not None:
            self.first_stage.fit(log)

    def signals(self, log: "OutcomeLog") -> np.ndarray:
        """Object matrix of final answers, with the first-stage signal appended when present."""
        from routecast.cascade.agreement import answer_matrix
        from routecast.cascade.answer_scorer import require_responses

        self._check_fitted()
        require_responses(log, log.models, why="agreement deferral")
        answers = answer_matrix(log.responses)
        if self.first_stage is None:
            return answers
        first = self.first_stage.signals(log).astype(object)
        return np.concatenate([answers, first], axis=1)

    def stage_scores(self, signals: np.ndarray, chain: Sequence[int]) -> np.ndarray:
        from routecast.cascade.agreement import agreement_matrix

        signals = np.asarray(signals, dtype=object)
        # columns: one answer per model, then (with a first-stage scorer) one signal per model
        m = signals.shape[1] if self.first_stage is None else signals.shape[1] // 2
        chain = list(chain)
        answers = np.asarray(signals, dtype=object)[:, :m][:, chain]
        scores = agreement_matrix(answers)[:, :-1]
        if self.first_stage is not None:
            first = np.asarray(signals[:, m:], dtype=np.float64)
            scores[:, 0] = self.first_stage.stage_scores(first, chain)[:, 0]
        return scores

    def online_score(self, prompt, chain, responses, cache) -> float:
        from routecast.cascade.agreement import agreement_score
        from routecast.cascade.answers import final_answer

        if len(responses) == 1 and self.first_stage is not None:
            return self.first_stage.online_score(prompt, chain, responses, cache)
        return agreement_score([final_answer(r) for r in responses])


def make_deferral(kind: "str | Deferral", *, router: "Router | str" = "knn", encoder: str = DEFAULT_ENCODER,
                  scorer: "AnswerScorer | None" = None) -> Deferral:
    """A deferral by name: ``ex-ante``, ``ex-post`` or ``agreement`` (a Deferral passes through)."""
    if isinstance(kind, Deferral):
        return kind
    if kind == "ex-ante":
        return ExAnteDeferral(router=router, encoder=encoder)
    if kind == "ex-post":
        return ExPostDeferral(scorer=scorer, encoder=encoder)
    if kind == "agreement":
        return AgreementDeferral()
    raise ConfigError(f"unknown deferral {kind!r}; choose one of {', '.join(DEFERRAL_KINDS)}")


def _make_router(name: str, encoder: str) -> "Router":
    """A registry router by name, or the ridge fallback when that router is not available."""
    from routecast.cascade.ridge_quality import RidgeQualityRouter

    if name in ("ridge", "ridge-quality"):
        return RidgeQualityRouter(encoder=encoder)
    from routecast.core.registry import get_router_class

    try:
        cls = get_router_class(name)
    except (ConfigError, ModuleNotFoundError, ImportError) as exc:
        import warnings

        warnings.warn(f"router {name!r} is not available ({exc}); ex-ante deferral uses the ridge "
                      "quality fallback", stacklevel=3)
        return RidgeQualityRouter(encoder=encoder)
    params = {"encoder": encoder} if "encoder" in cls.param_names() else {}
    return cls(**params)
