"""The router contract and the one decision rule every router shares.

A router predicts, for a batch of prompts, the expected quality of each candidate model
(:meth:`Router.predict_quality`, shape ``(n_prompts, n_models)``). Turning predictions into a
choice is the same for every router and lives once, in :mod:`routecast.core.policy`: pick the
model maximising ``predicted quality - lam * expected cost``. A budget ($ per query), a share of
calls to the strong model or a quality target is translated into ``lam`` on a calibration split
(:meth:`Router.calibrate`), or, for an uncalibrated router, on the batch being routed.

Subclasses implement two small methods, ``_fit`` and ``_predict_quality``, and keep to the
scikit-learn convention: ``__init__`` stores hyperparameters only, learned attributes end in
``_`` and are set by ``fit``, which returns ``self``.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from routecast.errors import RoutingError
from routecast.core.curve import SPEND_MEAN, SPEND_UPPER, Curve
from routecast.core.estimator import Estimator
from routecast.core.operating_points import CURVE_KNOBS, OperatingPoints
from routecast.core.policy import CALIBRATION_POINTS, StrongWeak, chosen, decide, strong_weak, utility_ranking
from routecast.core.tags import policy_tags

if TYPE_CHECKING:  # pragma: no cover
    from routecast.data.outcome_log import OutcomeLog
    from routecast.router.encoders.base import Encoder


#: the keys of one decision (:meth:`RouteResult.records`), in Python, batch JSONL and HTTP alike
RESULT_FIELDS = ("model", "rank", "predicted_quality", "expected_cost", "lam", "operating_point", "ranking")


@dataclass
class RouteResult:
    """Decisions for a batch of prompts."""

    models: tuple[str, ...]
    choice: np.ndarray  # (n,) int: index into ``models``
    quality: np.ndarray  # (n, m) predicted quality
    expected_cost: np.ndarray  # (n,) expected cost of the chosen model
    lam: float
    operating_point: str | None = None  # the named point lam came from, if any
    #: (m,) or (n, m) per-call costs the decision used; orders ``ranking`` (None: quality alone)
    costs: np.ndarray | None = None

    @property
    def chosen(self) -> list[str]:
        return [self.models[i] for i in self.choice]

    def __len__(self) -> int:
        return len(self.choice)

    def records(self) -> list[dict[str, Any]]:
        """One JSON-able dict per prompt: THE result shape of Python, batch JSONL and HTTP alike.

        ``model`` (chosen); ``rank`` (1-based rank of the chosen model by predicted quality: 1 = the
        model predicted best, more = quality traded for cost); ``predicted_quality`` (model ->
        quality); ``expected_cost`` (of the chosen model); ``lam``; ``operating_point``; ``ranking``
        (every model, the chosen one first, then by utility ``quality - lam * cost``, ties to the
        cheaper: the proxy's fallback order).
        """
        lam = float(self.lam)
        point = self.operating_point
        models = self.models
        quality = np.asarray(self.quality, dtype=np.float64)
        choice = np.asarray(self.choice, dtype=np.int64)
        cost = np.zeros(len(models)) if self.costs is None else np.asarray(self.costs, dtype=np.float64)
        cost = np.broadcast_to(cost, quality.shape)
        picked = quality[np.arange(len(choice)), choice]
        ranks = ((quality > picked[:, None]).sum(axis=1) + 1).tolist()
        orders = utility_ranking(quality, cost, lam).tolist()
        # tolist() once per array: per-element numpy scalar conversion dominated batch routing
        return [
            {"model": models[c], "rank": rank, "predicted_quality": dict(zip(models, row)), "expected_cost": expected,
             "lam": lam, "operating_point": point, "ranking": [models[c]] + [models[j] for j in order if j != c]}
            for c, rank, row, expected, order in zip(choice.tolist(), ranks, quality.tolist(),
                                                     np.asarray(self.expected_cost, dtype=np.float64).tolist(), orders)
        ]


class Router(Estimator, OperatingPoints, ABC):
    """Base class of every router: a1 (learned) and a2 (baseline).

    Hyperparameters, ``clone``, tags, the registry name and the fitted check are the kernel's
    estimator contract (:class:`routecast.core.estimator.Estimator`)."""

    kind: ClassVar[str] = "router"
    #: "a1" learns a quality model from outcomes; "a2" is a non-pretrained baseline
    family: ClassVar[str] = "a1"
    #: whether ``_fit``/``_predict_quality`` consume sentence embeddings (else texts only)
    uses_embeddings: ClassVar[bool] = True
    #: tunable hyperparameters -> ranges (see routecast.router.search_space)
    search_space: ClassVar[dict[str, Any]] = {}
    #: evaluation-only routers (the oracle) are never exported or served
    evaluation_only: ClassVar[bool] = False

    def _describe(self) -> str:
        return f"router {self.name or type(self).__name__!r}"

    # ----------------------------------------------------------------- fit
    def fit(self, log: "OutcomeLog", embeddings: np.ndarray | None = None) -> "Router":
        """Learn from ``log``. ``embeddings`` (n, dim), if given, must be of ``log.prompts``
        by this router's encoder; otherwise they are computed (and cached on disk).
        A pairwise preference log (``PairwiseLog``, embeddings one row per pair) fits routers that
        learn from pairs; see :mod:`routecast.router.from_pairs`."""
        if _is_pairwise(log):
            from routecast.router.from_pairs import fit_from_pairs

            return fit_from_pairs(self, log, embeddings)
        if log.n_prompts == 0:
            raise RoutingError(f"cannot fit router {self.name!r} on an empty log ({log.source})")
        if log.n_models < 2:
            raise RoutingError(
                f"routing needs at least two candidate models; {log.source} has {log.n_models} "
                f"({', '.join(log.models)})")
        if policy_tags(self).needs_shared_prompts and log.is_traffic():
            raise shared_prompts_error(self.name or type(self).__name__, log)
        self.models_ = tuple(log.models)
        self.costs_ = log.mean_costs()
        self.mean_quality_ = np.nan_to_num(log.mean_scores(), nan=0.0)
        X = None
        if self.uses_embeddings:
            X = self._embeddings_for(log.prompts, embeddings)
        self.calibration_ = None
        self.operating_points_ = {}
        self.default_operating_point_ = None
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
              operating_point: str | None = None, costs: np.ndarray | None = None) -> RouteResult:
        """Choose a model per prompt.

        Give at most one of: ``lam`` (quality points per $), ``budget`` ($ per query on
        average), ``strong_share`` (share of calls to the strong model), ``target_quality`` (mean
        quality to reach at the lowest cost) or ``operating_point`` (the name of a point stored by
        calibration, e.g. ``"budget-0.0002"``). None of them: the router's default operating
        point when calibration set one, else best predicted quality (lam = 0). ``costs`` overrides
        the expected per-call costs, (m,) or (n, m). Budgets and targets use the calibration curve
        when the router was calibrated (:meth:`calibrate`), otherwise they are met on this batch's
        predictions.
        """
        quality = self.predict_quality(texts, embeddings=embeddings)
        return self.route_from_quality(quality, lam=lam, budget=budget, strong_share=strong_share,
                                       target_quality=target_quality, operating_point=operating_point,
                                       costs=costs)

    def route_from_quality(self, quality: np.ndarray, *, lam: float | None = None,
                           budget: float | None = None, strong_share: float | None = None,
                           target_quality: float | None = None, operating_point: str | None = None,
                           costs: np.ndarray | None = None) -> RouteResult:
        """The decision half of :meth:`route`, for predictions already made."""
        self._check_fitted()
        request = {"lam": lam, "budget": budget, "strong_share": strong_share, "target_quality": target_quality,
                   "operating_point": operating_point}
        n = quality.shape[0]
        lam, point_name = self.resolve_lam(
            request, curve=lambda: self.operating_curve(quality, self._route_costs(costs, n, required=True)))
        # unknown costs are an error only when they change the decision: lam > 0, or a knob read off the curve
        by_curve = any(request[k] is not None for k in CURVE_KNOBS)
        cost = self._route_costs(costs, n, required=by_curve or lam != 0)
        choice = decide(quality, cost, lam)
        expected = chosen(cost, choice)
        return RouteResult(self.models_, choice, quality, expected, float(lam), point_name, costs=cost)

    # ----------------------------------------------------- operating points
    # operating_points, add_operating_point, lam_for and the knob -> lam resolution: routecast.core.operating_points

    def operating_curve(self, quality: np.ndarray | None = None, cost: np.ndarray | None = None) -> Curve:
        """The curve budgets and targets are read from: the one measured by :meth:`calibrate`
        when there is one, else the one this batch's predictions give (optimistic)."""
        if self.calibration_ is not None:
            return Curve.from_dict(self.calibration_)
        if quality is None:
            raise RoutingError("an uncalibrated router needs the batch's predictions to meet a budget")
        cost = self.costs_ if cost is None else cost
        return Curve.predicted(quality, cost, strong=self.strong_weak().strong)

    def strong_weak(self) -> StrongWeak:
        """The strong and weak models on the training split (see :func:`routecast.core.policy.strong_weak`)."""
        self._check_fitted()
        means = getattr(self, "mean_quality_", None)
        if means is None:  # checkpoints written before mean_quality_ existed
            means = np.zeros(len(self.models_))
        return strong_weak(np.asarray(self.costs_, dtype=np.float64), means, models=self.models_)

    # --------------------------------------------------------- calibration
    def calibrate(self, log: "OutcomeLog", embeddings: np.ndarray | None = None, *,
                  spend: str = SPEND_MEAN) -> "Router":
        """Measure, on a held-out calibration log, the realised cost, quality and strong share
        reached at each lam, so budgets and targets given to :meth:`route` map to a lam that
        was measured on real outcomes rather than on the router's own predictions.

        The measurement is evaluation's (:func:`routecast.evaluation.measure.sweep_router` on
        the dense calibration grid): only prompts with every score logged count, and strong
        shares count this router's strong model (:meth:`strong_weak`, the best single model of
        its training split), the model a strong share means everywhere else for this router.
        ``spend="upper"`` (conservative) meets budgets by the upper end of a bootstrap interval
        of the validation spend (:func:`routecast.evaluation.measure.upper_spend`) instead of
        its mean, so a budget also holds on unseen prompts. On a pairwise log the curve is
        measured on the judged pairs (win rates; costs from its price table), as defined in
        :mod:`routecast.evaluation.pairwise`.
        """
        from routecast.evaluation.measure import sweep_router, upper_spend

        if spend not in (SPEND_MEAN, SPEND_UPPER):
            raise RoutingError(f"spend must be {SPEND_MEAN!r} or {SPEND_UPPER!r}, got {spend!r}")
        if _is_pairwise(log):
            if spend != SPEND_MEAN:
                raise RoutingError("a conservative (upper) spend needs per-prompt logged outcomes; "
                                   "a pairwise log is calibrated on its mean spend only")
            from routecast.router.from_pairs import calibrate_from_pairs

            return calibrate_from_pairs(self, log, embeddings)
        self._check_fitted()
        cost = self._route_costs(None, log.n_prompts, required=True)
        curve = sweep_router(self, log, embeddings=embeddings, n_points=CALIBRATION_POINTS, costs=cost,
                             strong=self.strong_weak().strong, diagnostics=False)
        if spend == SPEND_UPPER:
            curve = upper_spend(curve)
        self.calibration_ = curve.to_dict()
        return self

    # ------------------------------------------------------------ helpers
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

    # ------------------------------------------- save_pretrained / from_pretrained
    def save_pretrained(self, save_directory: str | os.PathLike, **options: Any) -> Path:
        """Write this fitted router as a checkpoint folder (config.json + safetensors + sha256 manifest).

        The Hugging Face-style name for :func:`routecast.core.checkpoint.save_checkpoint` (same
        format, same ``options``: ``extra``, ``onnx``, ``sign_key``), so users find the habit they know.
        """
        from routecast.core.checkpoint import save_checkpoint

        return save_checkpoint(self, save_directory, **options)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **trust: Any) -> "Router":
        """Verify every file's sha256 and load the router of a checkpoint folder (never unpickles).

        ``trust``: ``expect_sha256`` or ``trusted_key`` as in :func:`routecast.core.checkpoint.open_checkpoint`.
        Called on a subclass (``KnnRouter.from_pretrained``) it refuses a checkpoint of another router.
        For serving, :func:`routecast.from_pretrained` returns the runtime instead.
        """
        from routecast.core.checkpoint import load_checkpoint
        from routecast.errors import CheckpointError

        router = load_checkpoint(path, **trust)
        if cls is not Router and not isinstance(router, cls):
            raise CheckpointError(f"checkpoint {path} holds a {type(router).name!r} router, "
                                  f"not {cls.name or cls.__name__!r}")
        return router

    def checkpoint_state(self, folder: Path, *, onnx: bool = False) -> dict[str, Any]:
        """The checkpoint format's save hook: write this router's files into ``folder`` and return
        its ``config.json`` entries (:func:`routecast.router.checkpoint_state.router_state`)."""
        from routecast.router.checkpoint_state import router_state

        return router_state(self, folder, onnx=onnx)

    @classmethod
    def from_checkpoint(cls, folder: Any) -> "Router":
        """The checkpoint format's load hook: the router of a verified folder, its meaning checked
        (:func:`routecast.router.checkpoint_state.build_router`)."""
        from routecast.router.checkpoint_state import build_router

        return build_router(folder)

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


def shared_prompts_error(router: str, log: "OutcomeLog", learns: str = "comparisons of two or more models' "
                         "scores on the same prompt") -> RoutingError:
    """The one error of a router that cannot train on a traffic log (one model per request): it
    learns from ``learns``, which such a log does not hold. Says what is missing and what fixes
    it (fill a second model's answers on some prompts, or a router that fits logged cells)."""
    one = float(((~np.isnan(log.scores)).sum(axis=1) <= 1).mean()) if log.n_prompts else 1.0
    return RoutingError(
        f"router {router!r} learns from {learns}, and {log.source} is a traffic log ({one:.0%} of its prompts "
        "have one model's score at most): fill a second model's answers on some prompts with "
        "`routecast collect --fill LOG --budget USD -e endpoints.yaml` (then `routecast score`), or train a "
        "router that fits from the logged cells (linear, knn, mlp, mf, task-prior, cluster-prior)")


def _is_pairwise(log: Any) -> bool:
    from routecast.data.preferences import PairwiseLog

    return isinstance(log, PairwiseLog)


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return False
    return True
