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
rating, final-answer agreement, embedding agreement, answer format and length, and for worked
numeric answers the checks of :mod:`~routecast.cascade.math_checks`) to each model's
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
strong-call share or a quality target through :class:`routecast.core.policy.OperatingCurve`,
on a grid refined on validation wherever the curve jumps (the base grid is far too coarse for a
cascade, whose decisions all change within about one decade of lam).
The choice among the actions (stop, call ``j``) is the kernel's decision rule
(:func:`routecast.core.policy.decide`, actions in place of models, each at its own cost).

Offline, :meth:`CascadeRouter.simulate` replays the policy from logged responses; online,
:meth:`CascadeRouter.run` does the same with a live ``call(model, prompt) -> answer``. Both walk
the same :class:`_Planner`, so on a logged prompt they call the same models and return the same
answer. ``run`` is a loop over the step-wise interface (:meth:`CascadeRouter.start`,
:meth:`~CascadeRouter.next_model`, :meth:`~CascadeRouter.observe`, :meth:`~CascadeRouter.outcome`)
that the server (:mod:`routecast.serving.cascade_chat`) drives itself, one backend call at a time.
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

from routecast.cascade.evidence_gate import fit_gate, fit_twin, gate_state, gated, live_owner, set_gate_state, \
    unreadable_notes
from routecast.cascade.lookahead import LOOKAHEADS, empirical_shifts
from routecast.cascade.lookahead import value_of_calling as empirical_value_of_calling
from routecast.data.answers import check_format, declared_format
from routecast.cascade.posterior import AnswerFacts, PosteriorQuality, compute_facts, feature_names, logit, rate, \
    state_features
from routecast.errors import CheckpointError, ConfigError, NotFittedError, RoutingError
from routecast.router.encoders.default import DEFAULT_ENCODER
from routecast.core.operating_points import OperatingPoints
from routecast.core.policy import OperatingCurve, RoutecastWarning, check_one_knob, decide, lam_grid, \
    strong_weak

if TYPE_CHECKING:  # pragma: no cover
    from routecast.data.outcome_log import OutcomeLog

FORMAT = "routecast-cascade-router"
FORMAT_VERSION = 3  # 3: the answer scorer's encoder ships in scorer_encoder/; manifest.sig
CONFIG_FILE, WEIGHTS_FILE, MANIFEST_FILE, ROUTER_DIR = "config.json", "weights.safetensors", "manifest.json", "router"
#: the answer scorer's encoder, shipped like a router checkpoint's (config.json with its entry + files)
SCORER_ENCODER_DIR = "scorer_encoder"


@dataclass
class CascadeRoutingOutcome:
    """What one live run did: the returned answer, its model, every model called (in order) and
    the posterior quality of each called model when the policy stopped."""

    answer: str
    model: str
    models_called: list[str]
    posterior: dict[str, float] = field(default_factory=dict)


@dataclass
class CascadeState:
    """One live prompt in progress (:meth:`CascadeRouter.start`): its lam, ex-ante predictions
    (pool model -> quality), the answers so far and the models called, in order."""

    prompt: str
    lam: float
    prior: dict[str, float]
    planner: "_Planner"
    responses: np.ndarray
    mask: int = 0
    order: list[str] = field(default_factory=list)


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


class CascadeRouter(OperatingPoints):
    """Cascade routing over the frontier models of a log (see the module docstring).

    Parameters
    ----------
    router: registry name of the ex-ante router (``linear``, ``knn``, ...).
    encoder: encoder of the ex-ante router and of the response embeddings (Smoothie agreement).
    scorer_encoder: encoder of the answer scorer; None: the scorer's default, MiniLM
        (:data:`routecast.cascade.answer_scorer.SCORER_ENCODER`; it reads each answer once, after
        a model call, so a real encoder is affordable where the router's is not).
    max_calls: most models called per prompt.
    max_models: logs with at most this many models cascade over all of them; larger logs over the
        training split's cost-quality frontier (at most this many models).
    kappas: candidate uncertainty scales, chosen on validation.
    n_folds: folds of the cross-fitting on train.
    n_draws: fixed normal draws for the expected maximum.
    n_lams: points of the base lam grid (:func:`routecast.core.policy.lam_grid`).
    max_lams: most points after refining the grid where the validation curve jumps.
    refine_step: a gap in validation mean cost larger than this share of the cost range is refined.
    C: inverse regularisation of the posterior model.
    seed: folds and draws.
    lookaheads: candidate look-ahead modes, chosen on validation with kappa: ``normal`` (normal
        draws, one spread per model pair; the default) and ``empirical`` (joint, state-specific
        posterior shifts measured on training prompts, :mod:`routecast.cascade.lookahead`; opt-in:
        on a log where only agreement is informative it does not find "call two cheap models,
        escalate on disagreement", which the normal draws do, see the module docstring).
    """

    _POINTS_HINT = "add_operating_point first"
    _POINTS_OWNER = "cascade"

    def __init__(self, router: str = "linear", encoder: str = DEFAULT_ENCODER, max_calls: int = 3,
                 max_models: int = 5, kappas: Sequence[float] = (0.0, 0.5, 1.0), n_folds: int = 3,
                 n_draws: int = 32, n_lams: int = 41, max_lams: int = 121, refine_step: float = 0.02,
                 C: float = 1.0, seed: int = 0, scorer_encoder: str | None = None,
                 lookaheads: Sequence[str] = ("normal",), gate_min_prompts: int = 30):
        self.router = router
        self.encoder = encoder
        self.scorer_encoder = scorer_encoder
        self.lookaheads = tuple(lookaheads)
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
        self.gate_min_prompts = gate_min_prompts

    def get_params(self) -> dict[str, Any]:
        return {"router": self.router, "encoder": self.encoder, "scorer_encoder": self.scorer_encoder,
                "lookaheads": list(self.lookaheads),
                "max_calls": self.max_calls,
                "max_models": self.max_models, "kappas": list(self.kappas), "n_folds": self.n_folds,
                "n_draws": self.n_draws, "n_lams": self.n_lams,
                "max_lams": self.max_lams, "refine_step": self.refine_step, "C": self.C, "seed": self.seed,
                "gate_min_prompts": self.gate_min_prompts}

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
        unreadable, none_read = unreadable_notes(tr, pool)  # evidence_gate: unreadable answers are warned about
        for note in unreadable:
            warnings.warn(note, RoutecastWarning, stacklevel=2)
        self.notes_ += unreadable
        self.has_answers_ = self.has_answers_ and not none_read
        self.gate_ = self.twin_ = None
        self.answer_format_ = declared_format(tr.meta)  # the log's declared answer format (data.answers)

        # cross-fitted ex-ante predictions and answer ratings on train
        rng = np.random.default_rng(self.seed)
        fold = rng.permutation(tr.n_prompts) % self.n_folds
        prior = np.zeros((tr.n_prompts, len(pool)))
        encoder = self._fit_encoder_and_router(tr)
        facts = compute_facts(list(tr.prompts), self._responses(tr), pool, scorer=None,
                              encoder=encoder if self.has_answers_ else None, answer_format=self.answer_format_)
        for f in range(self.n_folds):
            inside, outside = fold == f, fold != f
            router = self._make_router().fit(tr.subset(outside))
            prior[inside] = router.predict_quality(list(tr.prompts[inside]))
            scorer = self._fit_scorer(tr.subset(outside))
            if scorer is not None:
                facts.scorer[inside] = rate(scorer, list(tr.prompts[inside]), self._responses(tr)[inside], pool)
        self.scorer_ = self._fit_scorer(tr)

        masks = _masks(len(pool), self.max_calls_, with_empty=True)
        feats = np.stack([[state_features(logit(prior[i]), facts.row(i), _members(mask, len(pool)))
                           for mask in masks] for i in range(tr.n_prompts)])  # (n, S, P, F)
        n, s, p, nf = feats.shape
        targets = np.repeat(tr.scores[:, None, :], s, axis=1)
        self.posterior_ = PosteriorQuality(C=self.C).fit(feats.reshape(n * s, p, nf), targets.reshape(n * s, p))
        post = self.posterior_.predict(feats)  # (n, S, P)
        self.tau_ = _spread(post, masks, len(pool), self.max_calls_)
        self.mask_index_ = {m: i for i, m in enumerate(masks)}
        self.shifts_ = empirical_shifts(post, masks, len(pool), self.max_calls_, self.n_draws, self.seed)
        self.draws_ = np.random.default_rng(self.seed).standard_normal((self.n_draws, len(pool)))
        if self.has_answers_:  # the ex-ante twin the evidence gate compares with (evidence_gate)
            self.twin_ = fit_twin(self, prior, tr.scores, masks, _members)

        # kappa and the operating curve on validation
        vl = val.complete()
        if vl.n_prompts == 0:
            raise RoutingError(f"no prompt of the validation split {val.source} has every score logged")
        vl = vl.select_models(pool)
        self.lams_ = lam_grid(self.costs_, n_points=self.n_lams)
        planners, exante = self._planners(vl, both=True)
        unit = self._unit_costs(vl)
        lo, hi = float(unit.mean(axis=0).min()), float(unit.mean(axis=0).max())
        from routecast.evaluation.metrics import aiq

        best = None
        self.val_aiq_ = {}
        # kappa 0 means point estimates, the same under every look-ahead: tried once
        candidates = [(mode, kappa) for mode in self.lookaheads for kappa in self.kappas
                      if kappa > 0 or mode == self.lookaheads[0]]
        for mode, kappa in candidates:
            self.lookahead_, self.kappa_ = mode, kappa
            called, chosen_idx = self._walk_all(planners, self.lams_, reset=True)
            cost, quality = _outcomes(called, chosen_idx, unit, vl.scores)
            value = float(aiq(cost.mean(axis=1), quality.mean(axis=1), lo, hi))
            self.val_aiq_[kappa if mode == "normal" else f"{mode}:{kappa}"] = value
            if best is None or value > best[0] + 1e-9:
                best = (value, (mode, kappa), called, cost, quality)
        _, (self.lookahead_, self.kappa_), called, cost, quality = best
        if self.twin_ is not None:  # answer evidence per slice only where it beats the ex-ante twin
            self.gate_, planners, called, chosen_idx = fit_gate(self, vl, tr, planners, exante, self._walk_all,
                                                                _outcomes, unit, lo, hi, self.gate_min_prompts)
            cost, quality = _outcomes(called, chosen_idx, unit, vl.scores)
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
        if not self.lookaheads or any(m not in LOOKAHEADS for m in self.lookaheads):
            raise ConfigError(f"lookaheads must be some of {', '.join(LOOKAHEADS)}, got {self.lookaheads!r}")

    def _make_router(self):
        from routecast.core.registry import get_router_class, make_router

        params = {"encoder": self.encoder} if "encoder" in get_router_class(self.router).param_names() else {}
        return make_router(self.router, **params)

    def _fit_encoder_and_router(self, tr: "OutcomeLog"):
        self.router_ = self._make_router().fit(tr)
        return self._encoder()

    def _encoder(self):
        """The one encoder of the router and the response embeddings (the router's, shipped in its
        checkpoint); the answer scorer builds its own (``scorer_encoder``)."""
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
        params = {} if self.scorer_encoder is None else {"encoder": self.scorer_encoder}
        return AnswerScorer(head=self.scorer_head_, **params).fit(log.subset(rows))

    @staticmethod
    def _responses(log: "OutcomeLog") -> np.ndarray:
        return log.responses if log.responses is not None else np.full(log.scores.shape, None, dtype=object)

    def _unit_costs(self, log: "OutcomeLog") -> np.ndarray:
        """(n, P) cost of every call on ``log`` (NaN cells: the training mean cost of that model)."""
        costs = np.asarray(log.costs, dtype=np.float64)
        return np.where(np.isnan(costs), self.costs_[None, :], costs)

    # ------------------------------------------------------------ planning
    def _planners(self, log: "OutcomeLog", *, both: bool = False):
        """One planner per prompt of ``log`` (columns: the pool), from logged responses: with answer
        evidence or ex ante as the evidence gate says (``both``: the two lists, before the gate)."""
        sub = log.select_models(self.pool_)
        prior = self.router_.predict_quality(list(sub.prompts))[:, [self.router_.models_.index(m) for m in self.pool_]]
        facts = compute_facts(list(sub.prompts), self._responses(sub), self.pool_, scorer=self.scorer_,
                              encoder=self._encoder() if self.has_answers_ else None, answer_format=self.answer_format_)
        planners = [_Planner(self, logit(prior[i]), facts.row(i)) for i in range(sub.n_prompts)]
        if self.twin_ is None:
            return (planners, planners) if both else planners
        empty = AnswerFacts.empty(1, len(self.pool_))
        exante = [_Planner(self.twin_, logit(prior[i]), empty) for i in range(sub.n_prompts)]
        return (planners, exante) if both else gated(self, list(sub.prompts), planners, exante)

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
        from routecast.evaluation.curves import RELATIVE, USD, Curve

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
        """lam meeting a ``budget``, ``strong_share`` or ``target_quality`` on validation, or the
        lam of a named ``operating_point``; no knob: the default point's lam, else the fitted one."""
        self._check_fitted()
        point = request.pop("operating_point", None)
        knob = check_one_knob(**request)
        if point is not None:
            if knob is not None:
                raise RoutingError(f"give an operating point or {knob}, not both")
            return float(self.operating_point(point)["lam"])
        if knob is None:
            default = self.default_operating_point()
            return self.lam_ if default is None else float(self.operating_point(default)["lam"])
        if knob == "lam":
            return float(request["lam"])
        return float(self.curve_.lam_for(**{knob: request[knob]}))

    # ---------------------------------------------------- operating points
    # operating_points / default_operating_point / operating_point: routecast.core.operating_points
    def add_operating_point(self, name: str, *, make_default: bool = False, **request) -> "CascadeRouter":
        """Store the lam of one knob (``lam``, ``budget``, ``strong_share`` or ``target_quality``,
        resolved now on the validation curve) under ``name``."""
        self._check_fitted()
        if not isinstance(name, str) or not name or not name.isprintable() or ":" in name or len(name) > 64:
            raise RoutingError(f"operating point name must be 1-64 printable characters without ':', got {name!r}")
        if check_one_knob(**request) is None:
            raise RoutingError("give one of lam, budget, strong_share, target_quality for the operating point")
        points = self.operating_points()
        points[name] = {"lam": self.lam_for(**request), "request": dict(request)}
        self.operating_points_ = points
        if make_default:
            self.default_operating_point_ = name
        return self

    # -------------------------------------------------------------- online
    def start(self, prompt: str, *, lam: float | None = None, budget: float | None = None,
              strong_share: float | None = None, target_quality: float | None = None,
              operating_point: str | None = None) -> "CascadeState":
        """Begin one live prompt: its ex-ante predictions and its lam (see :meth:`lam_for`).

        The step-wise interface - ``start``, then :meth:`next_model` / :meth:`observe` until
        ``next_model`` says stop, then :meth:`outcome` - lets a caller that cannot block (the
        server's event loop) make the calls itself; :meth:`run` is the same loop with a callback.
        """
        self._check_fitted()
        if not isinstance(prompt, str):
            raise RoutingError(f"prompt must be a string, got {type(prompt).__name__}")
        value = self.lam_for(lam=lam, budget=budget, strong_share=strong_share, target_quality=target_quality,
                             operating_point=operating_point)
        p = len(self.pool_)
        prior = self.router_.predict_quality([prompt])[0, [self.router_.models_.index(m) for m in self.pool_]]
        planner = _Planner(live_owner(self, prompt), logit(prior), AnswerFacts.empty(1, p))
        return CascadeState(prompt=prompt, lam=value, prior={m: float(q) for m, q in zip(self.pool_, prior)},
                            planner=planner, responses=np.full((1, p), None, dtype=object))

    def next_model(self, state: "CascadeState") -> str | None:
        """The model to call next on ``state``'s prompt, or None: stop and take :meth:`outcome`."""
        nxt = state.planner.next_model(state.mask, np.array([state.lam]), 0)
        return None if nxt is None else self.pool_[nxt]

    def is_last_call(self, state: "CascadeState", model: str) -> bool:
        """Whether calling ``model`` now certainly ends the cascade, whatever it answers: it brings
        the calls to ``max_calls`` (or exhausts the pool). Only this is known before the answer;
        whether the planner will stop depends on what the answer says."""
        return bin(state.mask).count("1") + (0 if model in state.order else 1) >= self.max_calls_

    def observe(self, state: "CascadeState", model: str, answer: str) -> None:
        """Record ``model``'s answer on ``state``'s prompt and update the evidence (answer scorer,
        agreement, format) every later decision and the outcome read. Any pool model not yet
        called may be observed (e.g. the one a server fell back to when the planned one failed)."""
        if model not in self.pool_:
            raise RoutingError(f"model {model!r} is not in the cascade's pool ({', '.join(self.pool_)})")
        j = self.pool_.index(model)
        if state.mask >> j & 1:
            raise RoutingError(f"model {model!r} was already called on this prompt")
        if not isinstance(answer, str):
            raise RoutingError(f"call returned {type(answer).__name__} for model {model!r}; "
                               "expected the response text")
        state.responses[0, j] = answer
        state.order.append(model)
        state.mask |= 1 << j
        planner = state.planner
        rated = planner.facts.scorer.copy()  # earlier answers keep their rating: only the new one is scored
        planner.facts = compute_facts([state.prompt], state.responses, self.pool_, scorer=None,
                                      encoder=self._encoder() if self.has_answers_ else None,
                                      answer_format=self.answer_format_)
        planner.facts.scorer[:] = rated
        if self.scorer_ is not None:
            planner.facts.scorer[0, j] = rate(self.scorer_, [state.prompt], state.responses[:, [j]], [model])[0, 0]
        planner.tables.clear()
        planner.posteriors.clear()

    def outcome(self, state: "CascadeState") -> CascadeRoutingOutcome:
        """The returned answer: the called model's answer with the highest posterior quality."""
        if not state.mask:
            raise RoutingError("no model has answered this prompt yet: nothing to return")
        p = len(self.pool_)
        best = state.planner.answer(state.mask)
        post = state.planner.posterior(state.mask)
        return CascadeRoutingOutcome(answer=state.responses[0, best], model=self.pool_[best],
                                     models_called=list(state.order),
                                     posterior={self.pool_[j]: float(post[j]) for j in range(p) if state.mask >> j & 1})

    def run(self, prompt: str, call: Callable[[str, str], str], *, lam: float | None = None,
            budget: float | None = None, strong_share: float | None = None,
            target_quality: float | None = None, operating_point: str | None = None) -> CascadeRoutingOutcome:
        """Answer one live prompt: decide, call, score, maybe call again, return the chosen answer.

        ``call(model, prompt) -> response text``. The operating point is the fitted one (or the
        default named point) unless one of ``lam``, ``budget``, ``strong_share``,
        ``target_quality``, ``operating_point`` is given.
        """
        state = self.start(prompt, lam=lam, budget=budget, strong_share=strong_share,
                           target_quality=target_quality, operating_point=operating_point)
        while (model := self.next_model(state)) is not None:
            self.observe(state, model, call(model, prompt))
        return self.outcome(state)

    def _check_fitted(self) -> None:
        if not hasattr(self, "lam_"):
            raise NotFittedError("the cascade router is not fitted; call fit(train_log, val_log) first")

    # ---------------------------------------------------------- checkpoint
    def save(self, out_dir: str | os.PathLike, *, sign_key: str | os.PathLike | None = None) -> Path:
        """Write a checkpoint folder: config.json + weights.safetensors + the ex-ante router's own
        checkpoint (with its encoder) in ``router/`` + the answer scorer's encoder in
        ``scorer_encoder/`` (weights or model folder, as a router ships its encoder: the checkpoint
        never reads a model from outside itself) + manifest.json (sha256 of every file).
        ``sign_key`` (an ed25519 private key file) adds ``manifest.sig``, as ``routecast export
        --sign`` does for routers. Built next to ``out_dir`` and renamed into place; no pickle."""
        from routecast.jsonable import to_jsonable
        from routecast.router.checkpoint import _replace_dir, _save_arrays, save_checkpoint, sha256_file, ship_encoder
        from routecast.core.signing import SIGNATURE_FILE, sign_manifest
        from routecast.atomic import write_bytes, write_text

        self._check_fitted()
        out_dir = Path(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
        os.chmod(tmp, 0o755)
        try:
            arrays = {"posterior.coef": self.posterior_.coef_, "posterior.intercept": self.posterior_.intercept_,
                      "tau": self.tau_, "draws": self.draws_, "costs": self.costs_, "mean_quality": self.mean_quality_,
                      "shifts": self.shifts_}
            gate_config, gate_arrays = gate_state(self)  # the evidence gate and its ex-ante twin
            arrays.update(gate_arrays)
            scorer_meta = None
            if self.scorer_ is not None:
                scorer_meta, scorer_arrays = self.scorer_.get_state()
                scorer_meta["hyperparameters"] = self.scorer_.get_params()
                arrays.update({f"scorer.{k}": v for k, v in scorer_arrays.items()})
                (tmp / SCORER_ENCODER_DIR).mkdir()
                entry = ship_encoder(_servable_encoder(self.scorer_.encoder_), tmp / SCORER_ENCODER_DIR)
                write_text(tmp / SCORER_ENCODER_DIR / CONFIG_FILE,
                           json.dumps(to_jsonable({"encoder": entry}), indent=2, sort_keys=True))
            arrays = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}
            _save_arrays(tmp / WEIGHTS_FILE, arrays, what="cascade router")
            save_checkpoint(self.router_, tmp / ROUTER_DIR)
            config = {"format": FORMAT, "format_version": FORMAT_VERSION, "hyperparameters": self.get_params(),
                      "pool": list(self.pool_), "max_calls": self.max_calls_, "kappa": self.kappa_,
                      "lookahead": self.lookahead_, "lam": self.lam_, "strong": int(self.strong_), "features": feature_names(len(self.pool_)),
                      "scorer": scorer_meta, "has_answers": bool(self.has_answers_),
                      "operating_curve": self.curve_.to_dict(), "notes": list(self.notes_),
                      "operating_points": self.operating_points(),
                      "default_operating_point": self.default_operating_point(), "evidence_gate": gate_config,
                      "answer_format": self.answer_format_,
                      "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}
            write_text(tmp / CONFIG_FILE, json.dumps(to_jsonable(config), indent=2, sort_keys=True))
            files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            manifest_text = json.dumps({"format": FORMAT, "files": files}, indent=2, sort_keys=True)
            write_text(tmp / MANIFEST_FILE, manifest_text)
            if sign_key is not None:
                write_bytes(tmp / SIGNATURE_FILE, sign_manifest(manifest_text.encode("utf-8"), sign_key))
            _replace_dir(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out_dir

    @classmethod
    def load(cls, path: str | os.PathLike, *, trusted_key: str | os.PathLike | None = None,
             expect_sha256: str | None = None) -> "CascadeRouter":
        """Verify every file's sha256 and load strictly (unknown format or version: refused).

        Trust options as for router checkpoints (:func:`routecast.router.checkpoint.open_checkpoint`):
        ``expect_sha256`` pins the sha256 of ``manifest.json``; ``trusted_key`` (an ed25519 public
        key file) requires a ``manifest.sig`` that verifies. The manifest lists every file, the
        ``router/`` checkpoint and the shipped scorer encoder included, so one signature covers all.
        Each file is read once; its hash is checked on the bytes that are then parsed (the router
        sub-checkpoint is re-read and re-verified by its own loader)."""
        import hashlib
        import hmac

        from routecast.cascade.answer_scorer import AnswerScorer
        from safetensors.numpy import load as load_arrays

        from routecast.router.checkpoint import MAX_MANIFEST_BYTES, MAX_OTHER_FILE_BYTES, MAX_SIGNATURE_BYTES, \
            _normalise_sha256, _read_capped, load_checkpoint, load_shipped_encoder
        from routecast.core.signing import SIGNATURE_FILE, verify_manifest_signature

        root = Path(path)
        if not root.is_dir():
            raise CheckpointError(f"{root}: cascade checkpoint folder not found")
        manifest_bytes = _read_capped(root / MANIFEST_FILE, cap=MAX_MANIFEST_BYTES, expected_size=None,
                                      what="manifest")
        digest = hashlib.sha256(manifest_bytes).hexdigest()
        if expect_sha256 is not None:
            pinned = _normalise_sha256(expect_sha256)
            if not hmac.compare_digest(digest, pinned):
                raise CheckpointError(f"{root / MANIFEST_FILE}: sha256 {digest} is not the pinned {pinned} "
                                      "(expect_sha256); the checkpoint is not the one you pinned")
        signature_path = root / SIGNATURE_FILE
        signed_by = None
        if trusted_key is not None:
            signature = None
            if signature_path.exists() or signature_path.is_symlink():
                signature = _read_capped(signature_path, cap=MAX_SIGNATURE_BYTES, expected_size=None,
                                         what="signature")
            signed_by = verify_manifest_signature(manifest_bytes, signature, trusted_key, source=signature_path)
        try:
            manifest = json.loads(manifest_bytes.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{root / MANIFEST_FILE}: not a cascade router manifest ({exc})") from None
        listed = manifest.get("files", {}) if isinstance(manifest, dict) else None
        if not isinstance(listed, dict) or not all(isinstance(v, str) for v in listed.values()):
            raise CheckpointError(f"{root / MANIFEST_FILE}: field 'files' must map file names to sha256 strings")
        present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()}
        present -= {MANIFEST_FILE, SIGNATURE_FILE}
        if set(listed) != present:
            raise CheckpointError(f"{root}: files {sorted(present ^ set(listed))} disagree with {MANIFEST_FILE}")
        blobs = {}
        for rel, expected in sorted(listed.items()):
            data = _read_capped(root / rel, cap=MAX_OTHER_FILE_BYTES, expected_size=None, what="listed file")
            if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), expected.lower()):
                raise CheckpointError(f"{root / rel}: sha256 does not match {MANIFEST_FILE}; the file was modified")
            blobs[rel] = data
        if CONFIG_FILE not in blobs or WEIGHTS_FILE not in blobs:
            raise CheckpointError(f"{root}: not a cascade router checkpoint ({CONFIG_FILE} or {WEIGHTS_FILE} "
                                  f"not listed in {MANIFEST_FILE})")
        try:
            config = json.loads(blobs[CONFIG_FILE].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{root / CONFIG_FILE}: not a cascade router checkpoint ({exc})") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT \
                or config.get("format_version") != FORMAT_VERSION:
            config = config if isinstance(config, dict) else {}
            raise CheckpointError(f"{root / CONFIG_FILE}: format {config.get('format')!r} version "
                                  f"{config.get('format_version')!r}; this routecast reads {FORMAT!r} "
                                  f"version {FORMAT_VERSION} (re-save older cascade checkpoints with it)")
        try:
            arrays = load_arrays(blobs[WEIGHTS_FILE])
        except Exception as exc:  # safetensors raises its own error types for a damaged file
            raise CheckpointError(f"{root / WEIGHTS_FILE}: unreadable ({exc})") from None
        if set(arrays) != set(config["arrays"]):
            raise CheckpointError(f"{root / WEIGHTS_FILE}: arrays {sorted(arrays)} disagree with {CONFIG_FILE}")
        self = cls(**config["hyperparameters"])
        self.router_ = load_checkpoint(root / ROUTER_DIR)
        self.manifest_sha256_, self.signed_by_ = digest, signed_by
        self.pool_ = tuple(config["pool"])
        self.max_calls_ = int(config["max_calls"])
        self.kappa_ = float(config["kappa"])
        self.lookahead_ = str(config.get("lookahead", "normal"))
        self.lam_ = float(config["lam"])
        self.strong_ = int(config["strong"])
        self.has_answers_ = bool(config["has_answers"])
        self.notes_ = list(config.get("notes", []))
        self.operating_points_ = dict(config.get("operating_points") or {})
        self.default_operating_point_ = config.get("default_operating_point")
        if list(config["features"]) != feature_names(len(self.pool_)):
            raise CheckpointError(f"{root / CONFIG_FILE}: posterior features {config['features']} are not this "
                                  f"routecast's {feature_names(len(self.pool_))}")
        self.posterior_ = PosteriorQuality(C=self.C)
        self.posterior_.coef_, self.posterior_.intercept_ = arrays["posterior.coef"], arrays["posterior.intercept"]
        self.tau_, self.draws_, self.costs_ = arrays["tau"], arrays["draws"], arrays["costs"]
        self.shifts_ = arrays.get("shifts")
        self.mask_index_ = {m: i for i, m in enumerate(_masks(len(self.pool_), self.max_calls_, with_empty=True))}
        if self.lookahead_ not in LOOKAHEADS or (self.lookahead_ == "empirical" and self.shifts_ is None):
            raise CheckpointError(f"{root / CONFIG_FILE}: look-ahead {self.lookahead_!r} is not one of "
                                  f"{', '.join(LOOKAHEADS)} or its shifts are missing")
        self.mean_quality_ = arrays["mean_quality"]
        set_gate_state(self, config.get("evidence_gate"), arrays)
        self.answer_format_ = check_format(config.get("answer_format"))
        self.scorer_ = None
        if config["scorer"] is not None:
            meta = config["scorer"]
            prefix = SCORER_ENCODER_DIR + "/"
            shipped = {k[len(prefix):]: v for k, v in blobs.items() if k.startswith(prefix)}
            if CONFIG_FILE not in shipped:
                raise CheckpointError(f"{root / SCORER_ENCODER_DIR / CONFIG_FILE}: missing; the answer scorer's "
                                      "encoder must ship inside the checkpoint")
            try:
                entry = json.loads(shipped[CONFIG_FILE].decode("utf-8")).get("encoder")
            except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
                raise CheckpointError(f"{root / SCORER_ENCODER_DIR / CONFIG_FILE}: unreadable ({exc})") from None
            encoder = load_shipped_encoder(root / SCORER_ENCODER_DIR, entry, shipped)
            self.scorer_ = AnswerScorer(**meta["hyperparameters"]).set_state(
                meta, {k[len("scorer."):]: v for k, v in arrays.items() if k.startswith("scorer.")}, encoder=encoder)
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
        if o.lookahead_ == "empirical":
            return empirical_value_of_calling(self, mask, j, q, lams)
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


#: texts on which a sentence-transformers scorer encoder and its ONNX export must agree before shipping
_ONNX_PROBE = ("The answer is 42.", "I am not sure, it might perhaps be 17. [SEP] What is 6 times 7?",
               "\\boxed{3} [SEP] Solve x + 1 = 4.", "long " * 400)
_ONNX_MIN_COSINE = 0.9999


def _servable_encoder(encoder):
    """What the checkpoint ships for the answer scorer's encoder. A sentence-transformers encoder
    (``minilm``, ``st:``) ships as its ONNX export (:class:`OnnxEncoder`, the same folder and
    ``max_chars``) so the lean runtime serves the cascade without torch; saving checks that both give
    the same embeddings (cosine >= ``_ONNX_MIN_COSINE`` on probe texts) and refuses otherwise. The
    loaded scorer then runs the ONNX graph (its encoder name is the ONNX one; the heads are unchanged).
    Every other encoder ships as it is (weights or folder, like a router's)."""
    from routecast.router.encoders.sentence_transformer import SentenceTransformerEncoder

    if not isinstance(encoder, SentenceTransformerEncoder):
        return encoder
    from routecast.router.encoders.onnx_encoder import OnnxEncoder

    onnx = OnnxEncoder(encoder.folder, max_chars=encoder.max_chars)
    a = np.asarray(encoder.encode(list(_ONNX_PROBE)), dtype=np.float64)
    b = np.asarray(onnx.encode(list(_ONNX_PROBE)), dtype=np.float64)
    cosine = (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    if float(cosine.min()) < _ONNX_MIN_COSINE:
        raise CheckpointError(f"answer scorer encoder {encoder.spec!r}: its ONNX export differs (min cosine "
                              f"{float(cosine.min()):.6f} < {_ONNX_MIN_COSINE}); cannot ship it for the lean runtime")
    return onnx


def _mean_unit_costs(log: "OutcomeLog") -> np.ndarray:
    """(P,) mean cost per call on the training split; a log without costs uses the relative scale."""
    from routecast.evaluation.curves import realised_costs

    return realised_costs(log)[0].mean(axis=0)
