"""``prior-residual``: a group prior (``cluster-prior`` or ``task-prior``) plus a learned per-prompt
residual, ``quality = prior(x) + w * residual(x)``.

The priors capture what a prompt's group says (its benchmark's best model); what a learned
router adds beyond that is per-prompt signal. Modelling that signal explicitly as the residual
``score - prior`` lets a kNN or ridge model spend its capacity on it rather than on relearning the
group means, and the blend weight ``w`` (``blend="auto"``: from a small grid by the masked Brier
score on a seeded internal validation share of the training log) lets it fall back to the prior
(``w = 0``) where the residual does not generalise. The test split is never seen.

The residual model is an ordinary registered router (``knn`` or ``linear``) trained on the
residual mapped into [0, 1] (``(score - prior + 1) / 2``), so it needs no code of its own; both
sub-routers' learned state is stored as prefixed arrays and JSON in the checkpoint. With the task
prior, training uses each prompt's logged task, and :meth:`PriorResidualRouter.predict_quality_for_tasks`
routes prompts whose task is known the same way (plain ``route`` classifies the task from the
embedding).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from routecast.errors import CheckpointError, ConfigError, RoutingError
from routecast.router.base import Router
from routecast.router.encoders.default import DEFAULT_ENCODER
from routecast.router.group_prior import masked_brier
from routecast.router.inner_split import split_validation
from routecast.router.registry import get_router_class, make_router, register_router
from routecast.router.search_space import Categorical, Float, Int
from routecast.router.tags import RouterTags
from routecast.router.task_prior import TaskPriorRouter, task_labels

PRIORS = ("cluster-prior", "task-prior")
RESIDUALS = ("knn", "linear")
#: blend weights tried by ``blend="auto"``
BLEND_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
_PARTS = ("prior", "residual")


def to_unit(residual: np.ndarray) -> np.ndarray:
    """A residual in [-1, 1] as a [0, 1] target (what a quality router predicts)."""
    return (residual + 1.0) / 2.0


def from_unit(quality: np.ndarray) -> np.ndarray:
    return 2.0 * np.asarray(quality, dtype=np.float64) - 1.0


@register_router("prior-residual")
class PriorResidualRouter(Router):
    """Group prior plus a kNN/ridge residual on the embedding, blended on internal validation."""

    family = "a1"
    uses_embeddings = True
    tags = RouterTags(quick_params={"prior": "task-prior", "k": 10})
    search_space = {"prior": Categorical(list(PRIORS)), "residual": Categorical(list(RESIDUALS)),
                    "k": Int(5, 200, log=True), "alpha": Float(1e-1, 1e3, log=True)}

    def __init__(self, prior: str = "cluster-prior", residual: str = "knn", k: int = 50, alpha: float = 10.0,
                 blend: Any = "auto", val_fraction: float = 0.2, encoder: str = DEFAULT_ENCODER, seed: int = 0):
        self.prior = prior
        self.residual = residual
        self.k = k
        self.alpha = alpha
        self.blend = blend
        self.val_fraction = val_fraction
        self.encoder = encoder
        self.seed = seed

    # ----------------------------------------------------------------- fit
    def _check(self) -> list[float]:
        if self.prior not in PRIORS:
            raise ConfigError(f"prior-residual: prior must be one of {', '.join(PRIORS)}, got {self.prior!r}")
        if self.residual not in RESIDUALS:
            raise ConfigError(f"prior-residual: residual must be one of {', '.join(RESIDUALS)}, "
                              f"got {self.residual!r}")
        if self.blend == "auto":
            return list(BLEND_GRID)
        try:
            weight = float(self.blend)
        except (TypeError, ValueError):
            weight = float("nan")
        if not np.isfinite(weight) or weight < 0:
            raise ConfigError(f"prior-residual: blend must be 'auto' or a number >= 0, got {self.blend!r}")
        return [weight]

    def _make(self, part: str) -> Router:
        if part == "prior":
            params = {"encoder": self.encoder}
            if self.prior == "cluster-prior":
                params["seed"] = self.seed
            return make_router(self.prior, **params)
        params = {"k": int(self.k)} if self.residual == "knn" else {"alpha": float(self.alpha)}
        return make_router(self.residual, encoder=self.encoder, **params)

    @staticmethod
    def _logged_base(prior: Router, log, X: np.ndarray) -> np.ndarray:
        """The prior's prediction for prompts of a log: a task prior uses their logged task (the
        residual is then what the prompt adds to its benchmark's mean), a cluster prior the
        embedding."""
        if isinstance(prior, TaskPriorRouter):
            return prior.predict_quality_for_tasks(task_labels(log.meta[prior.column_]), embeddings=X)
        return prior.predict_quality(embeddings=X)

    def _fit_parts(self, log, X) -> tuple[Router, Router]:
        prior = self._make("prior").fit(log, X)
        base = self._logged_base(prior, log, X)
        scores = log.scores
        target = np.where(np.isnan(scores), np.nan, to_unit(scores - base))
        residual = self._make("residual").fit(dataclasses.replace(log, scores=target), X)
        return prior, residual

    def _blend(self, base: np.ndarray, X: np.ndarray) -> np.ndarray:
        """The prior's prediction ``base`` plus the blended residual of embeddings ``X``."""
        if self.blend_ == 0:
            return base
        return np.clip(base + self.blend_ * from_unit(self.residual_router_.predict_quality(embeddings=X)), 0.0, 1.0)

    def _fit(self, log, X):
        weights = self._check()
        self.selection_: dict[str, float] = {}
        weight = weights[0]
        if len(weights) > 1:
            inner, held = split_validation(log.n_prompts, float(self.val_fraction), int(self.seed))
            if len(held) == 0:
                raise ConfigError(f"prior-residual: {log.n_prompts} training prompts leave no internal "
                                  f"validation share (val_fraction={self.val_fraction}); give blend")
            prior, residual = self._fit_parts(log.subset(inner), X[inner])
            base = self._logged_base(prior, log.subset(held), X[held])
            delta = from_unit(residual.predict_quality(embeddings=X[held]))
            best = np.inf
            for w in weights:
                brier = masked_brier(np.clip(base + w * delta, 0.0, 1.0), log.scores[held])
                self.selection_[f"blend={w:g}"] = brier
                if brier < best - 1e-12:
                    best, weight = brier, w
        self.blend_ = float(weight)
        self.prior_router_, self.residual_router_ = self._fit_parts(log, X)
        self._record_parts()

    def _predict_quality(self, X, texts):
        return self._blend(self.prior_router_.predict_quality(embeddings=X), X)

    def predict_quality_for_tasks(self, tasks: Sequence, texts: Sequence[str] | None = None, *,
                                  embeddings: np.ndarray | None = None) -> np.ndarray:
        """Predicted quality when each prompt's task is known (``prior="task-prior"`` only): the
        task's shrunk mean plus the blended residual, as in training; ``texts`` or
        ``embeddings`` are needed for the residual."""
        self._check_fitted()
        if not isinstance(self.prior_router_, TaskPriorRouter):
            raise RoutingError(f"prior-residual with prior={self.prior!r} takes no tasks; use predict_quality")
        if texts is None and embeddings is None:
            raise RoutingError("give texts or embeddings: the residual is predicted from the prompt")
        X = self._embeddings_for(None if texts is None else list(texts), embeddings)
        return self._blend(self.prior_router_.predict_quality_for_tasks(tasks, embeddings=X), X)

    # ------------------------------------------------------ serialisation
    def _record_parts(self) -> None:
        """JSON side of both sub-routers' state (their arrays travel via :meth:`_extra_arrays`)."""
        self.parts_ = {}
        for part in _PARTS:
            router = getattr(self, f"{part}_router_")
            meta, arrays = router.get_state()
            self.parts_[part] = {"name": router.name, "params": router.get_params(), "meta": meta,
                                 "arrays": sorted(arrays)}

    def _state_skip(self) -> set[str]:
        return {"prior_router_", "residual_router_"}

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for part in _PARTS:
            _, arrays = getattr(self, f"{part}_router_").get_state()
            out.update({f"{part}.{key}": value for key, value in arrays.items()})
        return out

    def _extra_array_names(self) -> set[str]:
        parts = getattr(self, "parts_", None) or {}
        return {f"{part}.{key}" for part, info in parts.items() for key in info["arrays"]}

    def _load_extra_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        parts = getattr(self, "parts_", None)
        if not parts or set(parts) != set(_PARTS):
            raise CheckpointError("prior-residual: checkpoint lacks the state of its prior and residual")
        for part in _PARTS:
            info = parts[part]
            if info["name"] not in PRIORS + RESIDUALS:
                raise CheckpointError(f"prior-residual: unexpected {part} router {info['name']!r}")
            prefix = f"{part}."
            own = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
            if set(own) != set(info["arrays"]):
                raise CheckpointError(f"prior-residual: stored {part} arrays do not match its recorded names")
            router = get_router_class(info["name"])(**info["params"]).set_state(info["meta"], own)
            setattr(self, f"{part}_router_", router)
