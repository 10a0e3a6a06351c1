"""The router contract and the one decision rule every router shares.

A router predicts, for a batch of prompts, the expected quality of each candidate model
(:meth:`Router.predict_quality`, shape ``(n_prompts, n_models)``). Turning predictions into a
choice is the same for every router and lives here, once: pick the model maximising

    predicted quality - lam * expected cost

where ``lam`` is the willingness to pay (quality points per dollar). A budget ($ per query, or a
share of calls to the most expensive model) or a quality target is translated into ``lam`` on a
calibration split (:meth:`Router.calibrate`), or, for an uncalibrated router, on the batch being
routed.

Subclasses implement two small methods, ``_fit`` and ``_predict_quality``, and keep to the
scikit-learn convention: ``__init__`` stores hyperparameters only, learned attributes end in
``_`` and are set by ``fit``, which returns ``self``.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from routecast.errors import NotFittedError, RoutingError

if TYPE_CHECKING:  # pragma: no cover
    from routecast.data.outcome_log import OutcomeLog
    from routecast.router.encoders.base import Encoder


@dataclass
class RouteResult:
    """Decisions for a batch of prompts."""

    models: tuple[str, ...]
    choice: np.ndarray  # (n,) int: index into ``models``
    quality: np.ndarray  # (n, m) predicted quality
    expected_cost: np.ndarray  # (n,) expected cost of the chosen model
    lam: float

    @property
    def chosen(self) -> list[str]:
        return [self.models[i] for i in self.choice]

    def __len__(self) -> int:
        return len(self.choice)

    def records(self) -> list[dict[str, Any]]:
        """One JSON-able dict per prompt (what batch routing and the HTTP API return)."""
        lam = float(self.lam)
        models = self.models
        # tolist() once per array: per-element numpy scalar conversion dominated batch routing
        return [
            {"model": models[c], "predicted_quality": dict(zip(models, row)), "expected_cost": cost, "lam": lam}
            for c, row, cost in zip(self.choice.tolist(), np.asarray(self.quality, dtype=np.float64).tolist(),
                                    np.asarray(self.expected_cost, dtype=np.float64).tolist())
        ]


def decide(quality: np.ndarray, costs: np.ndarray, lam: float) -> np.ndarray:
    """The decision rule: argmax over models of ``quality - lam * cost``.

    ``costs`` is ``(m,)`` or ``(n, m)``. Ties go to the cheaper model, then to the lower index,
    so ``lam = 0`` with equal predictions never pays for nothing.
    """
    quality = np.asarray(quality, dtype=np.float64)
    costs = np.broadcast_to(np.asarray(costs, dtype=np.float64), quality.shape)
    utility = quality - lam * costs if lam else quality.copy()
    best = utility.max(axis=1, keepdims=True)
    # tolerance so float noise does not break ties towards the expensive model
    tied = utility >= best - 1e-12
    masked_cost = np.where(tied, costs, np.inf)
    return masked_cost.argmin(axis=1)


def lam_grid(costs: np.ndarray, n_points: int = 241) -> np.ndarray:
    """Willingness-to-pay values that sweep from 'best quality' to 'cheapest'.

    Quality lives in [0, 1], so every decision changes between lam = 1e-4 / spread and
    lam = 1e4 / spread, where spread is the cost range between models. The grid is geometric
    over that span, with 0 (ignore cost) and a value large enough to always pick the cheapest.
    """
    costs = np.asarray(costs, dtype=np.float64)
    finite = costs[np.isfinite(costs)]
    spread = float(finite.max() - finite.min()) if finite.size else 0.0
    if spread <= 0:
        return np.array([0.0])
    inner = np.geomspace(1e-3, 1e4, n_points - 2) / spread
    return np.concatenate([[0.0], inner, [1e6 / spread]])


class Router(ABC):
    """Base class of every router: a1 (learned) and a2 (baseline)."""

    #: registry name, set by :func:`routecast.router.registry.register_router`
    name: ClassVar[str] = ""
    #: "a1" learns a quality model from outcomes; "a2" is a non-pretrained baseline
    family: ClassVar[str] = "a1"
    #: whether ``_fit``/``_predict_quality`` consume sentence embeddings (else texts only)
    uses_embeddings: ClassVar[bool] = True
    #: tunable hyperparameters -> ranges (see routecast.router.search_space)
    search_space: ClassVar[dict[str, Any]] = {}
    #: evaluation-only routers (the oracle) are never exported or served
    evaluation_only: ClassVar[bool] = False

    # ----------------------------------------------------------- parameters
    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as given to ``__init__`` (JSON-able)."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params) -> "Router":
        known = set(self.param_names())
        for key, value in params.items():
            if key not in known:
                from routecast.errors import ConfigError

                raise ConfigError(f"router {self.name!r} has no hyperparameter {key!r}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ----------------------------------------------------------------- fit
    def fit(self, log: "OutcomeLog", embeddings: np.ndarray | None = None) -> "Router":
        """Learn from ``log``. ``embeddings`` (n, dim), if given, must be of ``log.prompts``
        by this router's encoder; otherwise they are computed (and cached on disk)."""
        if log.n_prompts == 0:
            raise RoutingError(f"cannot fit router {self.name!r} on an empty log ({log.source})")
        if log.n_models < 2:
            raise RoutingError(
                f"routing needs at least two candidate models; {log.source} has {log.n_models} "
                f"({', '.join(log.models)})")
        self.models_ = tuple(log.models)
        self.costs_ = log.mean_costs()
        X = None
        if self.uses_embeddings:
            X = self._embeddings_for(log.prompts, embeddings)
        self.calibration_ = None
        self._fit(log, X)
        return self

    @abstractmethod
    def _fit(self, log: "OutcomeLog", X: np.ndarray | None) -> None:
        """Set learned attributes from the log (and embeddings X when ``uses_embeddings``)."""

    # ------------------------------------------------------------- predict
    def predict_quality(self, texts: Sequence[str] | None = None, *,
                        embeddings: np.ndarray | None = None) -> np.ndarray:
        """Expected quality of every candidate model, shape (n, n_models), in [0, 1]."""
        self._check_fitted()
        if texts is None and embeddings is None:
            raise RoutingError("give texts or embeddings to route")
        if texts is not None and isinstance(texts, str):
            texts = [texts]
        X = self._embeddings_for(texts, embeddings) if self.uses_embeddings else embeddings
        quality = np.asarray(self._predict_quality(X, None if texts is None else list(texts)),
                             dtype=np.float64)
        n = len(texts) if texts is not None else len(embeddings)
        if quality.shape != (n, len(self.models_)):  # pragma: no cover - a broken subclass
            raise RuntimeError(f"{type(self).__name__} predicted shape {quality.shape}, "
                               f"expected {(n, len(self.models_))}")
        return np.clip(quality, 0.0, 1.0)

    @abstractmethod
    def _predict_quality(self, X: np.ndarray | None, texts: list[str] | None) -> np.ndarray:
        """(n, m) predicted quality from embeddings X (or texts when not ``uses_embeddings``)."""

    # --------------------------------------------------------------- route
    def route(self, texts: Sequence[str] | None = None, *, embeddings: np.ndarray | None = None,
              lam: float | None = None, budget: float | None = None,
              strong_share: float | None = None, target_quality: float | None = None,
              costs: np.ndarray | None = None) -> RouteResult:
        """Choose a model per prompt.

        Give at most one of: ``lam`` (quality points per $), ``budget`` ($ per query on
        average), ``strong_share`` (share of calls to the most expensive model) or
        ``target_quality`` (mean quality to reach at the lowest cost). None of them: best
        predicted quality (lam = 0). ``costs`` overrides the expected per-call costs, (m,) or
        (n, m). Budgets and targets use the calibration curve when the router was calibrated
        (:meth:`calibrate`), otherwise they are met on this batch's predictions.
        """
        quality = self.predict_quality(texts, embeddings=embeddings)
        return self.route_from_quality(quality, lam=lam, budget=budget, strong_share=strong_share,
                                       target_quality=target_quality, costs=costs)

    def route_from_quality(self, quality: np.ndarray, *, lam: float | None = None,
                           budget: float | None = None, strong_share: float | None = None,
                           target_quality: float | None = None,
                           costs: np.ndarray | None = None) -> RouteResult:
        """The decision half of :meth:`route`, for predictions already made."""
        self._check_fitted()
        given = [k for k, v in (("lam", lam), ("budget", budget), ("strong_share", strong_share),
                                ("target_quality", target_quality)) if v is not None]
        if len(given) > 1:
            raise RoutingError(f"give at most one of lam, budget, strong_share, target_quality (got {given})")
        needs_cost = bool(given) and not (lam is not None and lam == 0)
        cost = self._route_costs(costs, quality.shape[0], required=needs_cost)
        if lam is None:
            lam = 0.0
            if budget is not None:
                lam = self._lam_for_budget(quality, cost, budget)
            elif strong_share is not None:
                lam = self._lam_for_strong_share(quality, cost, strong_share)
            elif target_quality is not None:
                lam = self._lam_for_target(quality, cost, target_quality)
        elif lam < 0 or not np.isfinite(lam):
            raise RoutingError(f"lam must be a finite number >= 0, got {lam}")
        choice = decide(quality, cost, lam)
        expected = np.take_along_axis(np.broadcast_to(cost, quality.shape), choice[:, None], 1)[:, 0]
        return RouteResult(self.models_, choice, quality, expected, float(lam))

    # --------------------------------------------------------- calibration
    def calibrate(self, log: "OutcomeLog", embeddings: np.ndarray | None = None) -> "Router":
        """Record, on a held-out calibration log, the realised cost, quality and strong share
        reached at each lam, so budgets and targets given to :meth:`route` map to a lam that
        was measured on real outcomes rather than on the router's own predictions."""
        self._check_fitted()
        if tuple(log.models) != tuple(self.models_):
            log = log.select_models(self.models_)
        quality = self.predict_quality(log.prompts, embeddings=embeddings)
        cost = self._route_costs(None, log.n_prompts, required=True)
        lams = lam_grid(cost)
        realised_cost = np.where(np.isnan(log.costs), cost, log.costs)
        realised_score = np.where(np.isnan(log.scores), quality, log.scores)
        strong = _strong_model(cost, log.mean_scores())
        rows = []
        for lam in lams:
            choice = decide(quality, cost, lam)
            pick = np.arange(log.n_prompts), choice
            rows.append((realised_cost[pick].mean(), realised_score[pick].mean(), (choice == strong).mean()))
        arr = np.asarray(rows)
        self.calibration_ = {"lam": lams.tolist(), "cost": arr[:, 0].tolist(),
                             "quality": arr[:, 1].tolist(), "strong_share": arr[:, 2].tolist(),
                             "n_prompts": int(log.n_prompts)}
        return self

    # ------------------------------------------------------------ helpers
    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise NotFittedError(f"router {self.name or type(self).__name__!r} is not fitted; call fit() first")

    def _embeddings_for(self, texts, embeddings):
        if embeddings is not None:
            X = np.asarray(embeddings, dtype=np.float32)
            if X.ndim != 2:
                raise RoutingError(f"embeddings must be 2-D (n, dim), got shape {X.shape}")
            return X
        if texts is None:
            raise RoutingError("give texts or embeddings")
        from routecast.router.embedding_cache import embed

        return embed(self.get_encoder(), list(texts))

    def get_encoder(self) -> "Encoder":
        """The encoder this router embeds prompts with (built from the ``encoder`` hyperparameter)."""
        enc = getattr(self, "encoder_", None)
        if enc is None:
            from routecast.router.encoders import DEFAULT_ENCODER, get_encoder

            enc = get_encoder(getattr(self, "encoder", DEFAULT_ENCODER))
            self.encoder_ = enc
        return enc

    def _route_costs(self, costs, n: int, *, required: bool) -> np.ndarray:
        cost = self.costs_ if costs is None else np.asarray(costs, dtype=np.float64)
        if cost.ndim == 2 and cost.shape != (n, len(self.models_)):
            raise RoutingError(f"costs must have shape (m,) or (n, m); got {cost.shape}")
        missing = np.isnan(cost).any(axis=0) if cost.ndim == 2 else np.isnan(cost)
        if missing.any():
            names = [m for m, bad in zip(self.models_, missing) if bad]
            if required:
                raise RoutingError(
                    f"no cost known for model(s) {', '.join(names)}: give per-model prices "
                    "(a price table) or costs=..., or route with lam=0 (best quality)")
            cost = np.where(np.isnan(cost), 0.0, cost)
        if (cost < 0).any():
            raise RoutingError("costs must be >= 0")
        return cost

    def _sweep(self, quality, cost):
        lams = lam_grid(cost)
        out = []
        for lam in lams:
            choice = decide(quality, cost, lam)
            expected = np.take_along_axis(np.broadcast_to(cost, quality.shape), choice[:, None], 1)[:, 0]
            predicted = np.take_along_axis(quality, choice[:, None], 1)[:, 0]
            out.append((lam, expected.mean(), predicted.mean(), choice))
        return out

    def _cheapest_cost(self, cost) -> float:
        per_prompt_min = np.broadcast_to(cost, (1, len(self.models_))).min(axis=1) if cost.ndim == 1 \
            else cost.min(axis=1)
        return float(per_prompt_min.mean())

    def _lam_for_budget(self, quality, cost, budget: float) -> float:
        if budget < 0 or not np.isfinite(budget):
            raise RoutingError(f"budget must be a finite number >= 0, got {budget}")
        cal = self.calibration_
        if cal is not None:
            ok = [i for i, c in enumerate(cal["cost"]) if c <= budget + 1e-15]
            if not ok:
                raise RoutingError(f"budget ${budget:.6g}/query is below the cheapest routing cost "
                                   f"${min(cal['cost']):.6g}/query measured on the calibration split")
            best = max(ok, key=lambda i: (cal["quality"][i], -cal["cost"][i]))
            return float(cal["lam"][best])
        cheapest = self._cheapest_cost(cost)
        if budget < cheapest - 1e-15:
            raise RoutingError(f"budget ${budget:.6g}/query is below the cheapest model's cost "
                               f"${cheapest:.6g}/query")
        sweep = [(lam, c, q) for lam, c, q, _ in self._sweep(quality, cost) if c <= budget + 1e-15]
        return float(max(sweep, key=lambda t: (t[2], -t[1]))[0])

    def _lam_for_strong_share(self, quality, cost, share: float) -> float:
        if not 0.0 <= share <= 1.0:
            raise RoutingError(f"strong_share must be in [0, 1], got {share}")
        cal = self.calibration_
        if cal is not None:
            ok = [i for i, s in enumerate(cal["strong_share"]) if s <= share + 1e-12]
            best = max(ok, key=lambda i: (cal["quality"][i], -cal["cost"][i]))
            return float(cal["lam"][best])
        strong = _strong_model(cost, quality.mean(axis=0))
        sweep = [(lam, (choice == strong).mean(), q) for lam, _, q, choice in self._sweep(quality, cost)]
        ok = [t for t in sweep if t[1] <= share + 1e-12]
        return float(max(ok, key=lambda t: (t[2], -t[1]))[0])

    def _lam_for_target(self, quality, cost, target: float) -> float:
        cal = self.calibration_
        if cal is not None:
            ok = [i for i, q in enumerate(cal["quality"]) if q >= target - 1e-12]
            if not ok:
                raise RoutingError(f"target quality {target} is unreachable: the best measured on "
                                   f"the calibration split is {max(cal['quality']):.4f}")
            best = min(ok, key=lambda i: (cal["cost"][i], -cal["quality"][i]))
            return float(cal["lam"][best])
        sweep = self._sweep(quality, cost)
        ok = [(lam, c, q) for lam, c, q, _ in sweep if q >= target - 1e-12]
        if not ok:
            best_q = max(q for _, _, q, _ in sweep)
            raise RoutingError(f"target quality {target} is unreachable: the best predicted is {best_q:.4f}")
        return float(min(ok, key=lambda t: (t[1], -t[2]))[0])

    # ------------------------------------------------------ serialisation
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Learned state as (JSON-able metadata, named float/int arrays), for safetensors
        checkpoints. The default covers learned attributes that are arrays or plain JSON
        values; routers holding torch modules override :meth:`_extra_arrays` and
        :meth:`_load_extra_arrays`. Never pickles."""
        self._check_fitted()
        meta: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for key, value in vars(self).items():
            if not key.endswith("_") or key.startswith("_") or key == "encoder_":
                continue
            if isinstance(value, np.ndarray) and value.dtype != object:
                arrays[key] = np.ascontiguousarray(value)
            elif _is_json(value):
                meta[key] = value
            elif key in self._state_skip():
                continue
            else:
                raise TypeError(f"{type(self).__name__}.{key} ({type(value).__name__}) is not "
                                "serialisable; override _extra_arrays/_state_skip")
        arrays.update(self._extra_arrays())
        return meta, arrays

    def set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "Router":
        for key, value in meta.items():
            if not key.endswith("_"):
                raise TypeError(f"state key {key!r} is not a learned attribute")
            setattr(self, key, tuple(value) if key == "models_" else value)
        extra = self._extra_array_names()
        for key, value in arrays.items():
            if key in extra:
                continue
            if not key.endswith("_"):
                raise TypeError(f"state array {key!r} is not a learned attribute")
            setattr(self, key, np.asarray(value))
        self._load_extra_arrays({k: v for k, v in arrays.items() if k in extra})
        return self

    def _state_skip(self) -> set[str]:
        """Learned attributes rebuilt from others (e.g. a torch module rebuilt from arrays)."""
        return set()

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _extra_array_names(self) -> set[str]:
        return set()

    def _load_extra_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        return None


def _strong_model(cost: np.ndarray, mean_scores: np.ndarray) -> int:
    """The 'strong' model for strong-share budgets: the most expensive one; among equally
    priced ones, the best-scoring (the same rule evaluation uses for APGR/CPT)."""
    mean_cost = cost if cost.ndim == 1 else cost.mean(axis=0)
    top = np.flatnonzero(mean_cost >= mean_cost.max() - 1e-15 * abs(mean_cost.max()))
    scores = np.nan_to_num(np.asarray(mean_scores, dtype=np.float64), nan=-np.inf)
    return int(top[np.argmax(scores[top])])


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return False
    return True
