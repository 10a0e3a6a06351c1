"""``prior-residual``: a group prior (``cluster-prior`` or ``task-prior``) plus a learned per-prompt
residual, ``quality = prior(x) + w * residual(x)``.

The priors capture what a prompt's group says (its benchmark's best model); what a learned
router adds beyond that is per-prompt signal. Modelling that signal explicitly as the residual
``score - prior`` lets a kNN or ridge model spend its capacity on it rather than on relearning the
group means, and the blend weight ``w`` (``blend="auto"``: from a small grid by the masked Brier
score on a seeded internal validation share of the training log, each logged cell weighted by its
inverse propensity on a traffic log) lets it fall back to the prior (``w = 0``) where the residual
does not generalise. The test split is never seen.

The residual model is an ordinary registered router (``knn`` or ``linear``) trained on the
residual mapped into [0, 1] (``(score - prior + 1) / 2``), so it needs no code of its own; both
sub-routers' learned state is stored as prefixed arrays and JSON in the checkpoint. With the task
prior, training uses each prompt's logged task, and :meth:`PriorResidualRouter.predict_quality_for_tasks`
routes prompts whose task is known the same way (plain ``route`` classifies the task from the
embedding).

``scope="group"`` learns one ridge residual per prior group (per task, or per k-means cluster)
instead of one for all prompts: what makes a prompt harder than its benchmark's mean differs
between benchmarks (a long GSM8K problem, a code prompt naming a library), and with a few thousand
prompts per benchmark that signal is learnable where a single global ridge averages it away (on
routellm_strong_weak and routerdc_7models at full size it was the variant validation picked;
benchmarks/results/plateau.md). A group with fewer than ``min_group_prompts`` training prompts keeps
the prior alone. The per-group coefficients are plain arrays (``group_coef_``, ``group_intercept_``).
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
from routecast.core.registry import get_router_class, make_router, register_router
from routecast.router.search_space import Categorical, Float, Int
from routecast.core.tags import PolicyTags
from routecast.router.task_prior import TaskPriorRouter, task_labels

PRIORS = ("cluster-prior", "task-prior")
RESIDUALS = ("knn", "linear")
#: where the residual is learned: one model for all prompts, or one ridge per prior group
SCOPES = ("global", "group")
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
    tags = PolicyTags(quick_params={"prior": "task-prior", "k": 10})
    search_space = {"prior": Categorical(list(PRIORS)), "residual": Categorical(list(RESIDUALS)),
                    "k": Int(5, 200, log=True), "alpha": Float(1e-1, 1e3, log=True)}
    # ``scope`` is not searched: scope="group" needs residual="linear", and the search space has no
    # conditional parameters (a trial drawing knn + group would only fail); set it with -p scope=group

    def __init__(self, prior: str = "cluster-prior", residual: str = "knn", k: int = 50, alpha: float = 10.0,
                 blend: Any = "auto", val_fraction: float = 0.2, encoder: str = DEFAULT_ENCODER, seed: int = 0,
                 scope: str = "global", min_group_prompts: int = 30, column: str = "auto"):
        self.prior = prior
        self.residual = residual
        self.k = k
        self.alpha = alpha
        self.scope = scope
        self.min_group_prompts = min_group_prompts
        self.column = column
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
        if self.scope not in SCOPES:
            raise ConfigError(f"prior-residual: scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        if self.scope == "group" and self.residual != "linear":
            raise ConfigError(f"prior-residual: scope='group' learns a ridge per group and needs "
                              f"residual='linear', got residual={self.residual!r}")
        if isinstance(self.min_group_prompts, bool) or not isinstance(self.min_group_prompts, (int, np.integer)) \
                or self.min_group_prompts < 2:
            raise ConfigError(f"prior-residual: min_group_prompts must be an integer >= 2, "
                              f"got {self.min_group_prompts!r}")
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
            else:
                params["column"] = self.column
            return make_router(self.prior, **params)
        params = {"k": int(self.k)} if self.residual == "knn" else {"alpha": float(self.alpha)}
        return make_router(self.residual, encoder=self.encoder, **params)

    @staticmethod
    def _logged_tasks(prior: Router, log) -> list[str] | None:
        """Each prompt's logged task when the prior is a task prior (None for a cluster prior)."""
        return task_labels(log.meta[prior.column_]) if isinstance(prior, TaskPriorRouter) else None

    @staticmethod
    def _logged_base(prior: Router, log, X: np.ndarray) -> np.ndarray:
        """The prior's prediction for prompts of a log: a task prior uses their logged task (the
        residual is then what the prompt adds to its benchmark's mean), a cluster prior the
        embedding."""
        if isinstance(prior, TaskPriorRouter):
            return prior.predict_quality_for_tasks(PriorResidualRouter._logged_tasks(prior, log), embeddings=X)
        return prior.predict_quality(embeddings=X)

    @staticmethod
    def _groups(prior: Router, X: np.ndarray, tasks: Sequence | None) -> np.ndarray:
        """Each prompt's prior group: its task (logged ``tasks`` where given, else classified from
        the embedding) or its k-means cluster."""
        if isinstance(prior, TaskPriorRouter):
            return prior.task_index(tasks, embeddings=X)
        return prior.cluster_of(X)

    @staticmethod
    def _n_groups(prior: Router) -> int:
        return len(prior.tasks_) if isinstance(prior, TaskPriorRouter) else int(prior.k_)

    def _fit_parts(self, log, X) -> tuple[Router, Any]:
        """The fitted prior and the residual: a router (``scope="global"``) or the per-group
        ridge coefficients ``(coef (G, m, d), intercept (G, m))`` (``scope="group"``)."""
        prior = self._make("prior").fit(log, X)
        base = self._logged_base(prior, log, X)
        scores = log.scores
        target = dataclasses.replace(log, scores=np.where(np.isnan(scores), np.nan, to_unit(scores - base)))
        if self.scope == "global":
            return prior, self._make("residual").fit(target, X)
        groups = self._groups(prior, X, self._logged_tasks(prior, log))
        n_groups, m = self._n_groups(prior), log.n_models
        coef = np.zeros((n_groups, m, X.shape[1]))
        intercept = np.full((n_groups, m), 0.5)  # 0.5 on the unit scale = no residual: the prior alone
        for g in range(n_groups):
            rows = np.flatnonzero(groups == g)
            if rows.size < int(self.min_group_prompts):
                continue
            ridge = self._make("residual").fit(target.subset(rows), X[rows])
            coef[g], intercept[g] = ridge.coef_, ridge.intercept_
        return prior, (coef, intercept)

    @staticmethod
    def _residual_of(residual, X: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        """The residual (in [-1, 1]) of embeddings ``X`` in prior ``groups``."""
        if isinstance(residual, Router):
            return from_unit(residual.predict_quality(embeddings=X))
        coef, intercept = residual
        X = np.asarray(X, dtype=np.float64)
        unit = np.empty((len(X), coef.shape[1]))
        for g in np.unique(groups):
            rows = groups == g
            unit[rows] = X[rows] @ coef[g].T + intercept[g]
        return from_unit(np.clip(unit, 0.0, 1.0))

    def _residual_part(self):
        return self.residual_router_ if self.scope == "global" else (self.group_coef_, self.group_intercept_)

    def _blend(self, base: np.ndarray, X: np.ndarray, tasks: Sequence | None = None) -> np.ndarray:
        """The prior's prediction ``base`` plus the blended residual of embeddings ``X`` (whose
        logged ``tasks``, where known, place them in their task's group)."""
        if self.blend_ == 0:
            return base
        groups = None if self.scope == "global" else self._groups(self.prior_router_, X, tasks)
        return np.clip(base + self.blend_ * self._residual_of(self._residual_part(), X, groups), 0.0, 1.0)

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
            held_log = log.subset(held)
            base = self._logged_base(prior, held_log, X[held])
            groups = None
            if self.scope == "group":
                groups = self._groups(prior, X[held], self._logged_tasks(prior, held_log))
            delta = self._residual_of(residual, X[held], groups)
            best = np.inf
            cell_weights = log.propensity_weights()  # a traffic log: score the blend on every prompt alike
            held_weights = None if cell_weights is None else cell_weights[held]
            for w in weights:
                brier = masked_brier(np.clip(base + w * delta, 0.0, 1.0), log.scores[held], held_weights)
                self.selection_[f"blend={w:g}"] = brier
                if brier < best - 1e-12:
                    best, weight = brier, w
        self.blend_ = float(weight)
        self.prior_router_, residual = self._fit_parts(log, X)
        if self.scope == "global":
            self.residual_router_ = residual
        else:
            self.residual_router_ = None
            self.group_coef_, self.group_intercept_ = residual
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
        return self._blend(self.prior_router_.predict_quality_for_tasks(tasks, embeddings=X), X, tasks)

    # ------------------------------------------------------ serialisation
    def _record_parts(self) -> None:
        """JSON side of both sub-routers' state (their arrays travel via :meth:`_extra_arrays`)."""
        self.parts_ = {}
        for part in self._parts():
            router = getattr(self, f"{part}_router_")
            meta, arrays = router.get_state()
            self.parts_[part] = {"name": router.name, "params": router.get_params(), "meta": meta,
                                 "arrays": sorted(arrays)}

    def _state_skip(self) -> set[str]:
        return {"prior_router_", "residual_router_"}

    def _parts(self) -> tuple[str, ...]:
        """The sub-routers held: the prior, and the residual unless it is per group (arrays)."""
        return _PARTS if getattr(self, "scope", "global") == "global" else ("prior",)

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for part in self._parts():
            _, arrays = getattr(self, f"{part}_router_").get_state()
            out.update({f"{part}.{key}": value for key, value in arrays.items()})
        return out

    def _extra_array_names(self) -> set[str]:
        parts = getattr(self, "parts_", None) or {}
        return {f"{part}.{key}" for part, info in parts.items() for key in info["arrays"]}

    def _load_extra_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        parts = getattr(self, "parts_", None)
        if not parts or set(parts) != set(self._parts()):
            raise CheckpointError("prior-residual: checkpoint lacks the state of its prior and residual")
        if self.scope == "group":
            self.residual_router_ = None
            n_groups = self._n_groups_stored(parts["prior"])
            coef, intercept = getattr(self, "group_coef_", None), getattr(self, "group_intercept_", None)
            if coef is None or intercept is None or coef.ndim != 3 or coef.shape[0] != n_groups \
                    or intercept.shape != coef.shape[:2]:
                raise CheckpointError("prior-residual: per-group residual arrays are missing or do not "
                                      "match the prior's groups")
        for part in self._parts():
            info = parts[part]
            if info["name"] not in PRIORS + RESIDUALS:
                raise CheckpointError(f"prior-residual: unexpected {part} router {info['name']!r}")
            prefix = f"{part}."
            own = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
            if set(own) != set(info["arrays"]):
                raise CheckpointError(f"prior-residual: stored {part} arrays do not match its recorded names")
            router = get_router_class(info["name"])(**info["params"]).set_state(info["meta"], own)
            setattr(self, f"{part}_router_", router)

    @staticmethod
    def _n_groups_stored(info: dict) -> int:
        """The number of groups of a stored prior (its tasks or its clusters)."""
        meta = info.get("meta", {})
        return len(meta["tasks_"]) if "tasks_" in meta else int(meta.get("k_", -1))
