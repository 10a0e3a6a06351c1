"""Cascade routing: choose, at every step, which model to call next or to stop.

After Dekoninck et al., "A Unified Approach to Routing and Cascading for LLMs" (ICML 2025).
A router picks one model before any answer exists; a cascade calls models in a fixed order and
stops on a threshold. Cascade routing does both: at each step, given the answers obtained so
far (the called set ``S``), it either stops - returning the called answer with the highest
posterior quality - or calls one more model ``j``, whichever maximises expected quality minus
lam times cost. The value of calling ``j`` looks one decision ahead: after ``j``'s answer the
policy may stop, or commit to a further set ``M`` of models (at most ``max_calls`` in all),
worth

    E[ max_{l in S + j + M} q_l ]  -  lam * cost(j and M)

where ``q_l`` is model ``l``'s quality on this prompt (the expected maximum quality of the set of
answers obtained, minus the cost still to pay). Sunk costs never count. Then it decides again
with the new evidence, so a cheap first call that turns out good ends the cascade.

Quality estimates. Before any call: a router's ex-ante prediction. After each answer:
:class:`~routecast.cascade.posterior.PosteriorQuality` maps (ex-ante prediction, answer scorer
rating, final-answer agreement, embedding agreement, answer format and length) to each model's
posterior quality. For a model not called yet, the expected maximum accounts for what its answer
could reveal: its posterior after the call is taken as normal around the current estimate with
the spread ``kappa * tau[j, j]`` measured on training prompts (``kappa = 0``: point estimates).
Its answer also moves the posteriors of the models already called - a second answer that agrees
with the first is evidence on both - so those are drawn with the spread ``kappa * tau[j, l]``
measured the same way. That is what makes "call a second cheap model and accept on agreement,
escalate otherwise" worth its cost in the look-ahead. The posterior reads agreement per pair
of models (agree / disagree / one answer missing, one weight per partner), so agreeing with a
good partner can count for more than agreeing with a weak one.

Training (honest by construction): ex-ante predictions and answer ratings for the posterior
model are cross-fitted on train (each fold predicted by models that never saw it); ``kappa`` is
chosen on validation by AIQ; lam is the operating point, set on validation from a budget, a
strong-call share or a quality target through :class:`routecast.router.policy.OperatingCurve`,
on a grid refined on validation wherever the curve jumps (the base grid is far too coarse for a
cascade, whose decisions all change within about one decade of lam).
The choice among the actions (stop, call ``j``) is the kernel's decision rule
(:func:`routecast.router.policy.decide`, actions in place of models, each at its own cost).

Offline, :meth:`CascadeRouter.simulate` replays the policy from logged responses; online,
:meth:`CascadeRouter.run` does the same with a live ``call(model, prompt) -> answer``. Both walk
the same :class:`_Planner`, so on a logged prompt they call the same models and return the same
answer.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from routecast.cascade.posterior import AnswerFacts, PosteriorQuality, compute_facts, feature_names, logit, rate, \
    state_features
from routecast.errors import CheckpointError, ConfigError, NotFittedError, RoutingError
from routecast.router.encoders.default import DEFAULT_ENCODER
from routecast.router.policy import OperatingCurve, RoutecastWarning, check_one_knob, decide, lam_grid, \
    strong_weak

if TYPE_CHECKING:  # pragma: no cover
    from routecast.data.outcome_log import OutcomeLog

FORMAT = "routecast-cascade-router"
FORMAT_VERSION = 2
CONFIG_FILE, WEIGHTS_FILE, MANIFEST_FILE, ROUTER_DIR = "config.json", "weights.safetensors", "manifest.json", "router"


@dataclass
class CascadeRoutingOutcome:
    """What one live run did: the returned answer, its model, every model called (in order) and
    the posterior quality of each called model when the policy stopped."""

    answer: str
    model: str
    models_called: list[str]
    posterior: dict[str, float] = field(default_factory=dict)


def frontier_models(log: "OutcomeLog", max_models: int = 5) -> list[str]:
    """Models on the mean cost-quality frontier of ``log`` (no other model is both cheaper and
    better), cheapest first; at most ``max_models``, keeping the best ones."""
    cost, quality = log.mean_costs(), log.mean_scores()
    if np.isnan(cost).all():
        cost = np.zeros_like(quality)
    order = sorted(range(log.n_models), key=lambda j: (cost[j], -quality[j], j))
    frontier, best = [], -np.inf
    for j in order:
        if quality[j] > best + 1e-12:
            frontier.append(j)
            best = quality[j]
    return [log.models[j] for j in frontier[-max_models:]]


def response_notes(log: "OutcomeLog", models: Sequence[str]) -> list[str]:
    """What is missing for answer evidence, one sentence per fact (empty: nothing missing)."""
    if log.responses is None:
        return [f"no responses logged in {log.source}: cascade routing uses ex-ante predictions only "
                "(answer scorer, answer agreement and Smoothie signals need a response column)"]
    notes = []
    for name in models:
        column = log.responses[:, log.model_index(name)]
        missing = int(sum(not isinstance(r, str) for r in column))
        if missing:
            notes.append(f"model {name!r} has no response on {missing} of {len(column)} prompts of {log.source}: "
                         "on those prompts its answer evidence is unknown (kept, marked as missing)")
    return notes


class CascadeRouter:
    """Cascade routing over the frontier models of a log (see the module docstring).

    Parameters
    ----------
    router: registry name of the ex-ante router (``linear``, ``knn``, ...).
    encoder: encoder of the router, the answer scorer and the response embeddings.
    max_calls: most models called per prompt.
    max_models: logs with at most this many models cascade over all of them; larger logs over the
        training split's cost-quality frontier (at most this many models).
    kappas: candidate uncertainty scales, chosen on validation.
    n_folds: folds of the cross-fitting on train.
    n_draws: fixed normal draws for the expected maximum.
    n_lams: points of the base lam grid (:func:`routecast.router.policy.lam_grid`).
    max_lams: most points after refining the grid where the validation curve jumps.
    refine_step: a gap in validation mean cost larger than this share of the cost range is refined.
    C: inverse regularisation of the posterior model.
    seed: folds and draws.
    """

    def __init__(self, router: str = "linear", encoder: str = DEFAULT_ENCODER, max_calls: int = 3,
                 max_models: int = 5, kappas: Sequence[float] = (0.0, 0.5, 1.0), n_folds: int = 3,
                 n_draws: int = 32, n_lams: int = 41, max_lams: int = 121, refine_step: float = 0.02,
                 C: float = 1.0, seed: int = 0):
        self.router = router
        self.encoder = encoder
        self.max_calls = max_calls
        self.max_models = max_models
        self.kappas = tuple(float(k) for k in kappas)
        self.n_folds = n_folds
        self.n_draws = n_draws
        self.n_lams = n_lams
        self.max_lams = max_lams
        self.refine_step = refine_step
        self.C = C
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {"router": self.router, "encoder": self.encoder, "max_calls": self.max_calls,
                "max_models": self.max_models, "kappas": list(self.kappas), "n_folds": self.n_folds,
                "n_draws": self.n_draws, "n_lams": self.n_lams,
                "max_lams": self.max_lams, "refine_step": self.refine_step, "C": self.C, "seed": self.seed}

    def __repr__(self) -> str:
        return f"CascadeRouter({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # ------------------------------------------------------------------ fit
    def fit(self, train: "OutcomeLog", val: "OutcomeLog", *, budget: float | None = None,
            strong_share: float | None = None, target_quality: float | None = None) -> "CascadeRouter":
        """Posterior model on ``train`` (cross-fitted), kappa and the operating point on ``val``.

        Prompts without a logged score for every pool model are left out of both (the one rule for
        unlogged cells); missing responses are kept and warned about.
        """
        knob = check_one_knob(budget=budget, strong_share=strong_share, target_quality=target_quality)
        self._check_params()
        full = train.complete()
        if full.n_prompts < 2 * self.n_folds or full.n_models < 2:
            raise RoutingError(f"cascade routing needs at least two models and {2 * self.n_folds} training "
                               f"prompts with every score logged; {train.source} has {full.n_models} models, "
                               f"{full.n_prompts} complete prompts")
        pool = list(full.models) if full.n_models <= self.max_models else frontier_models(full, self.max_models)
        if len(pool) < 2:
            raise RoutingError(f"the cost-quality frontier of {train.source} has one model ({pool[0]}) among "
                               f"{full.n_models}: give max_models >= {full.n_models} to cascade over all of them")
        tr = full.select_models(pool)
        self.pool_ = tuple(pool)
        self.max_calls_ = int(min(self.max_calls, len(pool)))
        self.costs_ = _mean_unit_costs(tr)
        self.mean_quality_ = tr.mean_scores()
        self.strong_ = strong_weak(self.costs_, self.mean_quality_, models=pool).strong
        self.notes_ = response_notes(tr, pool)
        for note in self.notes_:
            warnings.warn(note, RoutecastWarning, stacklevel=2)
        binary = bool(np.isin(tr.scores, (0.0, 1.0)).all())
        self.scorer_head_ = "logistic" if binary else "ridge"
        self.has_answers_ = tr.responses is not None and any(isinstance(r, str) for r in tr.responses.reshape(-1))

        # cross-fitted ex-ante predictions and answer ratings on train
        rng = np.random.default_rng(self.seed)
        fold = rng.permutation(tr.n_prompts) % self.n_folds
        prior = np.zeros((tr.n_prompts, len(pool)))
        encoder = self._fit_encoder_and_router(tr)
        facts = compute_facts(list(tr.prompts), self._responses(tr), pool, scorer=None,
                              encoder=encoder if self.has_answers_ else None)
        for f in range(self.n_folds):
            inside, outside = fold == f, fold != f
            router = self._make_router().fit(tr.subset(outside))
            prior[inside] = router.predict_quality(list(tr.prompts[inside]))
            scorer = self._fit_scorer(tr.subset(outside))
            if scorer is not None:
                facts.scorer[inside] = rate(scorer, list(tr.prompts[inside]), self._responses(tr)[inside], pool)
        self.scorer_ = self._fit_scorer(tr)
        if self.scorer_ is not None:
            self.scorer_.encoder_ = encoder

        masks = _masks(len(pool), self.max_calls_, with_empty=True)
        feats = np.stack([[state_features(logit(prior[i]), facts.row(i), _members(mask, len(pool)))
                           for mask in masks] for i in range(tr.n_prompts)])  # (n, S, P, F)
        n, s, p, nf = feats.shape
        targets = np.repeat(tr.scores[:, None, :], s, axis=1)
        self.posterior_ = PosteriorQuality(C=self.C).fit(feats.reshape(n * s, p, nf), targets.reshape(n * s, p))
        post = self.posterior_.predict(feats)  # (n, S, P)
        self.tau_ = _spread(post, masks, len(pool), self.max_calls_)
        self.draws_ = np.random.default_rng(self.seed).standard_normal((self.n_draws, len(pool)))

        # kappa and the operating curve on validation
        vl = val.complete()
        if vl.n_prompts == 0:
            raise RoutingError(f"no prompt of the validation split {val.source} has every score logged")
        vl = vl.select_models(pool)
        self.lams_ = lam_grid(self.costs_, n_points=self.n_lams)
        planners = self._planners(vl)
        unit = self._unit_costs(vl)
        lo, hi = float(unit.mean(axis=0).min()), float(unit.mean(axis=0).max())
        from routecast.router.evaluation.metrics import aiq

        best = None
        self.val_aiq_ = {}
        for kappa in self.kappas:
            self.kappa_ = kappa
            called, chosen_idx = self._walk_all(planners, self.lams_, reset=True)
            cost, quality = _outcomes(called, chosen_idx, unit, vl.scores)
            value = float(aiq(cost.mean(axis=1), quality.mean(axis=1), lo, hi))
            self.val_aiq_[kappa] = value
            if best is None or value > best[0] + 1e-9:
                best = (value, kappa, called, cost, quality)
        _, self.kappa_, called, cost, quality = best
        self.lams_, called, cost, quality = self._refine_grid(planners, unit, vl.scores, self.lams_, called, cost,
                                                             quality)
        strong_called = (called >> self.strong_) & 1
        self.curve_ = OperatingCurve(lams=self.lams_.copy(), cost=cost.mean(axis=1), quality=quality.mean(axis=1),
                                     strong_share=strong_called.mean(axis=1), strong=int(self.strong_),
                                     measured=True, n_prompts=vl.n_prompts, n_dropped=val.n_prompts - vl.n_prompts)
        request = {"budget": budget, "strong_share": strong_share, "target_quality": target_quality}
        self.lam_ = float(self.curve_.lam_for(**({knob: request[knob]} if knob else {})))
        return self

    def _refine_grid(self, planners, unit, scores, lams, called, cost, quality):
        """Insert lams where the validation curve jumps, so an operating point exists near every cost.

        The base grid spans seven decades of lam, but a cascade's decisions all change within about
        one: between two neighbouring grid points the validation cost can jump from the cheapest
        model to the dearest, and a budget then lands far below it. Geometric midpoints are added
        wherever the mean cost moves by more than ``refine_step`` of the cost range, until no such
        gap remains, the gap is a tie (neighbours within 0.1 %) or the grid holds ``max_lams`` points.
        """
        span = float(np.ptp(cost.mean(axis=1)))
        while span > 0 and len(lams) < self.max_lams:
            order = np.argsort(lams)
            lams, called, cost, quality = lams[order], called[order], cost[order], quality[order]
            mean_cost = cost.mean(axis=1)
            gaps = np.flatnonzero(np.abs(np.diff(mean_cost)) > self.refine_step * span)
            lo, hi = lams[gaps], lams[gaps + 1]
            new = np.where(lo > 0, np.sqrt(np.maximum(lo, 1e-300) * hi), hi / 10.0)
            fresh = (new > lo * 1.001) & (new < hi / 1.001)
            new = new[fresh][: self.max_lams - len(lams)]
            if new.size == 0:
                break
            c_new, i_new = self._walk_all(planners, new, reset=True)
            cost_new, quality_new = _outcomes(c_new, i_new, unit, scores)
            lams, called = np.concatenate([lams, new]), np.concatenate([called, c_new])
            cost, quality = np.concatenate([cost, cost_new]), np.concatenate([quality, quality_new])
        order = np.argsort(lams)
        return lams[order], called[order], cost[order], quality[order]

    def _check_params(self) -> None:
        if int(self.max_calls) < 1:
            raise ConfigError(f"max_calls must be >= 1, got {self.max_calls!r}")
        if int(self.max_models) < 2:
            raise ConfigError(f"max_models must be >= 2, got {self.max_models!r}")
        if not 0 < float(self.refine_step) <= 1:
            raise ConfigError(f"refine_step must be in (0, 1], got {self.refine_step!r}")
        if int(self.max_lams) < int(self.n_lams):
            raise ConfigError(f"max_lams must be >= n_lams ({self.n_lams}), got {self.max_lams!r}")
        if int(self.n_folds) < 2:
            raise ConfigError(f"n_folds must be >= 2, got {self.n_folds!r}")
        if not self.kappas or any(not np.isfinite(k) or k < 0 for k in self.kappas):
            raise ConfigError(f"kappas must be finite numbers >= 0, got {self.kappas!r}")

    def _make_router(self):
        from routecast.router.registry import get_router_class, make_router

        params = {"encoder": self.encoder} if "encoder" in get_router_class(self.router).param_names() else {}
        return make_router(self.router, **params)

    def _fit_encoder_and_router(self, tr: "OutcomeLog"):
        self.router_ = self._make_router().fit(tr)
        return self._encoder()

    def _encoder(self):
        """The one encoder of router, scorer and response embeddings (the router's, shipped in its
        checkpoint)."""
        if getattr(self.router_, "uses_embeddings", False):
            return self.router_.get_encoder()
        from routecast.router.encoders import get_encoder

        return get_encoder(self.encoder)

    def _fit_scorer(self, log: "OutcomeLog"):
        """An answer scorer on the prompts where every pool model has a response (None: no such prompt)."""
        if not self.has_answers_:
            return None
        from routecast.cascade.answer_scorer import AnswerScorer

        rows = np.array([all(isinstance(r, str) for r in row) for row in log.responses])
        if rows.sum() < 2:
            return None
        return AnswerScorer(encoder=self.encoder, head=self.scorer_head_).fit(log.subset(rows))

    @staticmethod
    def _responses(log: "OutcomeLog") -> np.ndarray:
        return log.responses if log.responses is not None else np.full(log.scores.shape, None, dtype=object)

    def _unit_costs(self, log: "OutcomeLog") -> np.ndarray:
        """(n, P) cost of every call on ``log`` (NaN cells: the training mean cost of that model)."""
        costs = np.asarray(log.costs, dtype=np.float64)
        return np.where(np.isnan(costs), self.costs_[None, :], costs)

    # ------------------------------------------------------------ planning
    def _planners(self, log: "OutcomeLog") -> list["_Planner"]:
        """One planner per prompt of ``log`` (columns: the pool), from logged responses."""
        sub = log.select_models(self.pool_)
        prior = self.router_.predict_quality(list(sub.prompts))[:, [self.router_.models_.index(m) for m in self.pool_]]
        facts = compute_facts(list(sub.prompts), self._responses(sub), self.pool_, scorer=self.scorer_,
                              encoder=self._encoder() if self.has_answers_ else None)
        return [_Planner(self, logit(prior[i]), facts.row(i)) for i in range(sub.n_prompts)]

    def _walk_all(self, planners: list["_Planner"], lams: np.ndarray, *, reset: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(k, n) called-set bit masks and (k, n) index (into the pool) of the returned answer."""
        k, n = len(lams), len(planners)
        called = np.zeros((k, n), dtype=np.int64)
        chosen_idx = np.zeros((k, n), dtype=np.int64)
        for i, planner in enumerate(planners):
            if reset:
                planner.tables.clear()
            for a in range(k):
                mask = 0
                while True:
                    nxt = planner.next_model(mask, lams, a)
                    if nxt is None:
                        break
                    mask |= 1 << nxt
                called[a, i] = mask
                chosen_idx[a, i] = planner.answer(mask)
        return called, chosen_idx

    # ------------------------------------------------------------- offline
    def simulate(self, log: "OutcomeLog", lams: Sequence[float] | None = None) -> dict[str, np.ndarray]:
        """Replay the policy on logged responses at each lam (default: the fitted operating point).

        Returns (k, n) arrays: ``cost`` (sum of the logged costs of the called models), ``quality``
        (logged score of the returned answer), ``called`` (bit masks over the pool) and ``chosen``
        (pool index of the returned answer).
        """
        self._check_fitted()
        grid = np.array([self.lam_] if lams is None else lams, dtype=np.float64).reshape(-1)
        sub = log.select_models(self.pool_)
        called, chosen_idx = self._walk_all(self._planners(sub), grid)
        cost, quality = _outcomes(called, chosen_idx, self._unit_costs(sub), sub.scores)
        return {"lams": grid, "cost": cost, "quality": quality, "called": called, "chosen": chosen_idx}

    def curve(self, log: "OutcomeLog", label: str = "cascade-routing"):
        """The policy at every lam of the validation grid on ``log``, as an evaluation ``Curve``."""
        from routecast.router.evaluation.curves import RELATIVE, USD, Curve

        sim = self.simulate(log, self.lams_)
        shares = np.zeros((len(self.lams_), log.n_models))
        for p, name in enumerate(self.pool_):
            shares[:, log.model_index(name)] = ((sim["called"] >> p) & 1).mean(axis=1)
        strong_share = None
        if log.n_models == 2:
            strong_share = shares[:, log.model_index(self.pool_[self.strong_])]
        unit = RELATIVE if np.isnan(log.costs).all() else USD
        return Curve.from_points(sim["cost"], sim["quality"], [f"lam={x:.4g}" for x in self.lams_], label=label,
                                 models=log.models, family="cascade", strong_share=strong_share,
                                 call_shares=shares, cost_unit=unit,
                                 meta={"pool": list(self.pool_), "kappa": self.kappa_, "max_calls": self.max_calls_})

    def lam_for(self, **request) -> float:
        """lam meeting a ``budget``, ``strong_share`` or ``target_quality`` on validation."""
        self._check_fitted()
        knob = check_one_knob(**request)
        return self.lam_ if knob is None else float(self.curve_.lam_for(**request))

    # -------------------------------------------------------------- online
    def run(self, prompt: str, call: Callable[[str, str], str], *, lam: float | None = None,
            budget: float | None = None, strong_share: float | None = None,
            target_quality: float | None = None) -> CascadeRoutingOutcome:
        """Answer one live prompt: decide, call, score, maybe call again, return the chosen answer.

        ``call(model, prompt) -> response text``. The operating point is the fitted one unless one
        of ``lam``, ``budget``, ``strong_share``, ``target_quality`` is given.
        """
        self._check_fitted()
        if not isinstance(prompt, str):
            raise RoutingError(f"prompt must be a string, got {type(prompt).__name__}")
        knob = check_one_knob(lam=lam, budget=budget, strong_share=strong_share, target_quality=target_quality)
        value = self.lam_ if knob is None else float(lam) if knob == "lam" else \
            float(self.curve_.lam_for(**{knob: {"budget": budget, "strong_share": strong_share,
                                                "target_quality": target_quality}[knob]}))
        lams = np.array([value])
        p = len(self.pool_)
        prior = self.router_.predict_quality([prompt])[0, [self.router_.models_.index(m) for m in self.pool_]]
        responses = np.full((1, p), None, dtype=object)
        planner = _Planner(self, logit(prior), AnswerFacts.empty(1, p))
        mask, order = 0, []
        while True:
            nxt = planner.next_model(mask, lams, 0)
            if nxt is None:
                break
            model = self.pool_[nxt]
            response = call(model, prompt)
            if not isinstance(response, str):
                raise RoutingError(f"call returned {type(response).__name__} for model {model!r}; "
                                   "expected the response text")
            responses[0, nxt] = response
            order.append(model)
            mask |= 1 << nxt
            planner.facts = compute_facts([prompt], responses, self.pool_, scorer=self.scorer_,
                                          encoder=self._encoder() if self.has_answers_ else None)
            planner.tables.clear()
            planner.posteriors.clear()
        best = planner.answer(mask)
        post = planner.posterior(mask)
        return CascadeRoutingOutcome(answer=responses[0, best], model=self.pool_[best], models_called=order,
                                     posterior={self.pool_[j]: float(post[j]) for j in range(p) if mask >> j & 1})

    def _check_fitted(self) -> None:
        if not hasattr(self, "lam_"):
            raise NotFittedError("the cascade router is not fitted; call fit(train_log, val_log) first")

    # ---------------------------------------------------------- checkpoint
    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write a checkpoint folder: config.json + weights.safetensors + the ex-ante router's own
        checkpoint (with its encoder) in ``router/`` + manifest.json (sha256 of every file).
        Built next to ``out_dir`` and renamed into place; no pickle."""
        from routecast.jsonable import to_jsonable
        from routecast.router.checkpoint import _replace_dir, _save_arrays, save_checkpoint, sha256_file
        from routecast.atomic import write_text

        self._check_fitted()
        out_dir = Path(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
        os.chmod(tmp, 0o755)
        try:
            arrays = {"posterior.coef": self.posterior_.coef_, "posterior.intercept": self.posterior_.intercept_,
                      "tau": self.tau_, "draws": self.draws_, "costs": self.costs_, "mean_quality": self.mean_quality_}
            scorer_meta = None
            if self.scorer_ is not None:
                scorer_meta, scorer_arrays = self.scorer_.get_state()
                scorer_meta["hyperparameters"] = {"encoder": self.scorer_.encoder, "head": self.scorer_.head,
                                                  "shared": self.scorer_.shared, "max_chars": self.scorer_.max_chars,
                                                  "good_threshold": self.scorer_.good_threshold}
                arrays.update({f"scorer.{k}": v for k, v in scorer_arrays.items()})
            arrays = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}
            _save_arrays(tmp / WEIGHTS_FILE, arrays, what="cascade router")
            save_checkpoint(self.router_, tmp / ROUTER_DIR)
            config = {"format": FORMAT, "format_version": FORMAT_VERSION, "hyperparameters": self.get_params(),
                      "pool": list(self.pool_), "max_calls": self.max_calls_, "kappa": self.kappa_,
                      "lam": self.lam_, "strong": int(self.strong_), "features": feature_names(len(self.pool_)),
                      "scorer": scorer_meta, "has_answers": bool(self.has_answers_),
                      "operating_curve": self.curve_.to_dict(), "notes": list(self.notes_),
                      "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}
            write_text(tmp / CONFIG_FILE, json.dumps(to_jsonable(config), indent=2, sort_keys=True))
            files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            write_text(tmp / MANIFEST_FILE, json.dumps({"format": FORMAT, "files": files}, indent=2, sort_keys=True))
            _replace_dir(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out_dir

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CascadeRouter":
        """Verify every file's sha256 and load strictly (unknown format or version: refused)."""
        from routecast.cascade.answer_scorer import AnswerScorer
        from safetensors.numpy import load_file

        from routecast.router.checkpoint import load_checkpoint, sha256_file

        root = Path(path)
        try:
            manifest = json.loads((root / MANIFEST_FILE).read_text())
            config = json.loads((root / CONFIG_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{root}: not a cascade router checkpoint ({exc})") from None
        if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{root / CONFIG_FILE}: format {config.get('format')!r} version "
                                  f"{config.get('format_version')!r}; this routecast reads {FORMAT!r} "
                                  f"version {FORMAT_VERSION}")
        listed = manifest.get("files", {})
        present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {MANIFEST_FILE}
        if set(listed) != present:
            raise CheckpointError(f"{root}: files {sorted(present ^ set(listed))} disagree with {MANIFEST_FILE}")
        for rel, digest in listed.items():
            if sha256_file(root / rel) != digest:
                raise CheckpointError(f"{root / rel}: sha256 does not match {MANIFEST_FILE}")
        try:
            arrays = load_file(str(root / WEIGHTS_FILE))
        except Exception as exc:  # safetensors raises its own error types for a damaged file
            raise CheckpointError(f"{root / WEIGHTS_FILE}: unreadable ({exc})") from None
        if set(arrays) != set(config["arrays"]):
            raise CheckpointError(f"{root / WEIGHTS_FILE}: arrays {sorted(arrays)} disagree with {CONFIG_FILE}")
        self = cls(**config["hyperparameters"])
        self.router_ = load_checkpoint(root / ROUTER_DIR)
        self.pool_ = tuple(config["pool"])
        self.max_calls_ = int(config["max_calls"])
        self.kappa_ = float(config["kappa"])
        self.lam_ = float(config["lam"])
        self.strong_ = int(config["strong"])
        self.has_answers_ = bool(config["has_answers"])
        self.notes_ = list(config.get("notes", []))
        if list(config["features"]) != feature_names(len(self.pool_)):
            raise CheckpointError(f"{root / CONFIG_FILE}: posterior features {config['features']} are not this "
                                  f"routecast's {feature_names(len(self.pool_))}")
        self.posterior_ = PosteriorQuality(C=self.C)
        self.posterior_.coef_, self.posterior_.intercept_ = arrays["posterior.coef"], arrays["posterior.intercept"]
        self.tau_, self.draws_, self.costs_ = arrays["tau"], arrays["draws"], arrays["costs"]
        self.mean_quality_ = arrays["mean_quality"]
        self.scorer_ = None
        if config["scorer"] is not None:
            meta = config["scorer"]
            self.scorer_ = AnswerScorer(**meta["hyperparameters"]).set_state(
                meta, {k[len("scorer."):]: v for k, v in arrays.items() if k.startswith("scorer.")})
            self.scorer_.encoder_ = self._encoder()
        self.curve_ = OperatingCurve.from_dict(config["operating_curve"])
        self.lams_ = self.curve_.lams.copy()
        return self


class _Planner:
    """The policy on one prompt: posterior per called set, the decision table per called set.

    Everything depends on the called set only (never on lam), so both are cached; a lam only
    selects a column of the decision table.
    """

    def __init__(self, owner: CascadeRouter, prior_logit: np.ndarray, facts: AnswerFacts):
        self.owner = owner
        self.prior_logit = prior_logit
        self.facts = facts
        self.tables: dict[tuple[int, bytes], tuple[np.ndarray, np.ndarray]] = {}
        self.posteriors: dict[int, np.ndarray] = {}
        self._candidates = _masks(len(owner.pool_), owner.max_calls_, with_empty=False)

    def posterior(self, mask: int) -> np.ndarray:
        if mask not in self.posteriors:
            p = len(self.owner.pool_)
            self.posteriors[mask] = self.owner.posterior_.predict(
                state_features(self.prior_logit, self.facts, _members(mask, p)))
        return self.posteriors[mask]

    def table(self, mask: int, lams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actions at called set ``mask`` (-1 = stop, else the pool index to call) and the one
        chosen at each lam (cached: it depends on the called set only)."""
        key = (mask, lams.tobytes())
        if key in self.tables:
            return self.tables[key]
        o = self.owner
        p = len(o.pool_)
        q = self.posterior(mask)
        called = _members(mask, p)
        actions = ([-1] if mask else []) + [j for j in range(p) if not called[j]]
        if bin(mask).count("1") >= o.max_calls_:
            actions = [-1]
        k = len(lams)
        value = np.empty((k, len(actions)))
        cost = np.zeros(len(actions))
        for a, j in enumerate(actions):
            if j < 0:
                value[:, a] = q[called].max()
            else:
                value[:, a] = self._value_of_calling(mask, j, q, lams)
                cost[a] = o.costs_[j]
        # the kernel's rule at every lam at once: utilities given, lam 0, ties to the cheaper action
        choice = decide(value - lams[:, None] * cost[None, :], np.broadcast_to(cost, value.shape), 0.0)
        self.tables[key] = (np.array(actions), choice)
        return self.tables[key]

    def _value_of_calling(self, mask: int, j: int, q: np.ndarray, lams: np.ndarray) -> np.ndarray:
        """(k,) expected utility, before paying for ``j``, of calling ``j`` and then deciding again.

        After the call, ``j``'s posterior is drawn around ``q[j]`` with spread kappa * tau[j]; the
        policy then stops or commits to a further set ``M`` (kappa-spread draws for its new
        models), maximising E[max quality] - lam * cost of ``M``'s new models, per draw.
        """
        o = self.owner
        p = len(o.pool_)
        after = mask | 1 << j
        spread = o.kappa_ * np.diag(o.tau_)
        # j's answer moves every called model's posterior too (agreement is evidence on both
        # answers): each is drawn around its current estimate with the spread measured on train
        moved = np.clip(q[None, :] + o.kappa_ * o.tau_[j][None, :] * o.draws_, 0.0, 1.0)  # (R, P)
        best_now = np.where(_members(after, p)[None, :], moved, -np.inf).max(axis=1)  # (R,)
        follow = [0]
        if bin(after).count("1") < o.max_calls_:
            follow += [c & ~after for c in self._candidates if c & after == after and c != after]
        # per follow-up set: the new models' best drawn quality (R',) (none: -inf) and their cost
        inner_draws = np.clip(q[None, :] + spread[None, :] * o.draws_[::-1], 0.0, 1.0)  # independent of R
        new_best = np.stack([np.where(_members(c, p)[None, :], inner_draws, -np.inf).max(axis=1) for c in follow])
        new_cost = np.array([o.costs_[_members(c, p)].sum() for c in follow])
        # E over R' of max(best_now[r], new_best[m, r']) -> (R, M)
        expected = np.maximum(best_now[:, None, None], new_best[None, :, :]).mean(axis=2)
        utility = expected[None, :, :] - lams[:, None, None] * new_cost[None, None, :]  # (k, R, M)
        return utility.max(axis=2).mean(axis=1)

    def next_model(self, mask: int, lams: np.ndarray, a: int) -> int | None:
        """Pool index of the next model to call at lam ``lams[a]``, or None to stop."""
        if bin(mask).count("1") >= self.owner.max_calls_:
            return None
        actions, choice = self.table(mask, lams)
        action = int(actions[int(choice[a])])
        return None if action < 0 else action

    def answer(self, mask: int) -> int:
        """Pool index of the called model whose answer has the highest posterior quality."""
        q = self.posterior(mask)
        called = _members(mask, len(self.owner.pool_))
        return int(np.argmax(np.where(called, q, -np.inf)))


# ----------------------------------------------------------------- helpers
def _members(mask: int, p: int) -> np.ndarray:
    return np.array([(mask >> j) & 1 for j in range(p)], dtype=bool)


def _masks(p: int, max_calls: int, *, with_empty: bool) -> list[int]:
    """Bit masks of the model sets of size <= max_calls (by size, then lexicographic)."""
    out = [0] if with_empty else []
    for size in range(1, max_calls + 1):
        for combo in itertools.combinations(range(p), size):
            out.append(sum(1 << j for j in combo))
    return out


def _spread(post: np.ndarray, masks: list[int], p: int, max_calls: int) -> np.ndarray:
    """(P, P) std, over train states, of the change in model ``l``'s posterior when ``j`` is
    called (``[j, l]``; the diagonal: a model's own answer; off it: ``l`` already called)."""
    index = {m: s for s, m in enumerate(masks)}
    tau = np.zeros((p, p))
    for j in range(p):
        for l in range(p):
            diffs = [post[:, index[m | 1 << j], l] - post[:, index[m], l]
                     for m in masks if not (m >> j) & 1 and bin(m).count("1") < max_calls
                     and (l == j or (m >> l) & 1)]
            tau[j, l] = float(np.std(np.concatenate(diffs))) if diffs else 0.0
    return tau


def _outcomes(called: np.ndarray, chosen_idx: np.ndarray, unit_costs: np.ndarray, scores: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """(k, n) realised cost (sum over the called models) and quality (score of the returned answer)."""
    p = unit_costs.shape[1]
    bits = (called[..., None] >> np.arange(p)) & 1  # (k, n, P)
    cost = (bits * unit_costs[None, :, :]).sum(axis=2)
    rows = np.arange(called.shape[1])
    return cost, scores[rows[None, :], chosen_idx]


def _mean_unit_costs(log: "OutcomeLog") -> np.ndarray:
    """(P,) mean cost per call on the training split; a log without costs uses the relative scale."""
    from routecast.router.evaluation.curves import realised_costs

    return realised_costs(log)[0].mean(axis=0)
