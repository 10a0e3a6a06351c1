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
strong-call share or a quality target through :class:`routecast.core.curve.Curve`,
on a grid refined on validation wherever the curve jumps (the base grid is far too coarse for a
cascade, whose decisions all change within about one decade of lam).
The choice among the actions (stop, call ``j``) is the kernel's decision rule
(:func:`routecast.core.policy.decide`, actions in place of models, each at its own cost).

Offline, :meth:`CascadeRouter.simulate` replays the policy from logged responses; online,
:meth:`CascadeRouter.run` does the same with a live ``call(model, prompt) -> answer``. Both walk
the same :class:`~routecast.cascade.planner.Planner`, so on a logged prompt they call the same
models and return the same answer. ``run`` is a loop over the step-wise interface
(:mod:`routecast.cascade.live`: ``start``, ``next_model``, ``observe``, ``outcome``) that the server
(:mod:`routecast.serving.cascade_chat`) drives itself, one backend call at a time. The class builds
on the kernel: its hyperparameters, tags and fitted check are :class:`routecast.core.estimator.Estimator`'s,
its operating points and knob -> lam resolution :class:`routecast.core.operating_points.OperatingPoints`'.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from routecast.cascade.called_sets import masks, members, outcomes, spread
from routecast.cascade.live import LiveCascade
from routecast.cascade.evidence_gate import fit_gate, fit_twin, gated, unreadable_notes
from routecast.cascade.lookahead import LOOKAHEADS, empirical_shifts, sampled_posteriors
from routecast.cascade.planner import Planner, refine_grid, walk_all
from routecast.cascade.pool import frontier_models, mean_unit_costs, response_notes
from routecast.cascade.posterior import AnswerFacts, PosteriorQuality, compute_facts, logit, rate, state_features
from routecast.core.estimator import Estimator
from routecast.data.answers import declared_format
from routecast.core.operating_points import OperatingPoints, check_one_knob
from routecast.core.curve import RELATIVE, USD, Curve
from routecast.core.policy import RoutecastWarning, lam_grid, strong_weak
from routecast.core.registry import register_cascade
from routecast.core.tags import PolicyTags
from routecast.errors import ConfigError, RoutingError
from routecast.router.encoders.default import DEFAULT_ENCODER

if TYPE_CHECKING:  # pragma: no cover
    from routecast.data.outcome_log import OutcomeLog


@register_cascade("cascade-routing")
class CascadeRouter(Estimator, OperatingPoints, LiveCascade):
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
        escalate on disagreement", which the normal draws do, see the module docstring),
        ``conditional`` (the same shifts, the follow-up conditioned on the drawn outcome, so a cheap
        call is valued as a check) and ``sets`` (that, with sets of models called together as one
        action, sent in parallel by the server): :mod:`routecast.cascade.set_actions` (opt-in,
        like ``empirical``: why is measured there).
    gate_min_prompts: fewest validation prompts of a slice the evidence gate judges on its own
        (:mod:`routecast.cascade.evidence_gate`: benchmarks, else k-means clusters of the prompts;
        smaller ones pooled).
    gate_se: standard errors by which the validation gain from answer evidence must exceed 0 for the
        gate to read answers on the whole log, and by which a slice's shrunk gain must lie on the other
        side of 0 for that slice to depart from this decision (0: signs only; 1: the one-standard-error
        rule).
    """

    _POINTS_HINT = "add_operating_point first"
    _POINTS_OWNER = "cascade"
    fitted_attribute = "lam_"
    fit_hint = "fit(train_log, val_log)"
    tags = PolicyTags(quick_params={"router": "linear", "kappas": (0.0, 1.0), "n_lams": 15, "max_lams": 30,
                                    "n_folds": 2, "n_draws": 8})

    def __init__(self, router: str = "linear", encoder: str = DEFAULT_ENCODER, max_calls: int = 3,
                 max_models: int = 5, kappas: Sequence[float] = (0.0, 0.5, 1.0), n_folds: int = 3,
                 n_draws: int = 32, n_lams: int = 41, max_lams: int = 121, refine_step: float = 0.02,
                 C: float = 1.0, seed: int = 0, scorer_encoder: str | None = None,
                 lookaheads: Sequence[str] = ("normal",), gate_min_prompts: int = 30, gate_se: float = 1.0):
        self.router = router
        self.encoder = encoder
        self.scorer_encoder = scorer_encoder
        self.lookaheads = lookaheads
        self.max_calls = max_calls
        self.max_models = max_models
        self.kappas = kappas
        self.n_folds = n_folds
        self.n_draws = n_draws
        self.n_lams = n_lams
        self.max_lams = max_lams
        self.refine_step = refine_step
        self.C = C
        self.seed = seed
        self.gate_min_prompts = gate_min_prompts
        self.gate_se = gate_se

    def _describe(self) -> str:
        return "the cascade router"

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
        self.costs_ = mean_unit_costs(tr)
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

        sets = masks(len(pool), self.max_calls_, with_empty=True)
        feats = np.stack([[state_features(logit(prior[i]), facts.row(i), members(mask, len(pool)))
                           for mask in sets] for i in range(tr.n_prompts)])  # (n, S, P, F)
        n, s, p, nf = feats.shape
        targets = np.repeat(tr.scores[:, None, :], s, axis=1)
        self.posterior_ = PosteriorQuality(C=self.C).fit(feats.reshape(n * s, p, nf), targets.reshape(n * s, p))
        post = self.posterior_.predict(feats)  # (n, S, P)
        self.tau_ = spread(post, sets, len(pool), self.max_calls_)
        self.mask_index_ = {m: i for i, m in enumerate(sets)}
        self.shifts_ = empirical_shifts(post, sets, len(pool), self.max_calls_, self.n_draws, self.seed)
        self.samples_ = sampled_posteriors(post, self.n_draws, self.seed)  # the conditional look-aheads'
        self.draws_ = np.random.default_rng(self.seed).standard_normal((self.n_draws, len(pool)))
        if self.has_answers_:  # the ex-ante twin the evidence gate compares with (evidence_gate)
            self.twin_ = fit_twin(self, prior, tr.scores, sets, members)

        # kappa and the operating curve on validation
        vl = val.complete()
        if vl.n_prompts == 0:
            raise RoutingError(f"no prompt of the validation split {val.source} has every score logged")
        vl = vl.select_models(pool)
        self.lams_ = lam_grid(self.costs_, n_points=self.n_lams)
        planners, exante = self.planners(vl, both=True)
        unit = self._unit_costs(vl)
        lo, hi = float(unit.mean(axis=0).min()), float(unit.mean(axis=0).max())
        from routecast.evaluation.metrics import aiq

        best = None
        self.val_aiq_ = {}
        # kappa 0 means point estimates, the same under every look-ahead: tried once
        modes, kappas = tuple(self.lookaheads), tuple(float(k) for k in self.kappas)
        candidates = [(mode, kappa) for mode in modes for kappa in kappas if kappa > 0 or mode == modes[0]]
        for mode, kappa in candidates:
            self.lookahead_, self.kappa_ = mode, kappa
            called, chosen_idx = walk_all(planners, self.lams_, reset=True)
            cost, quality = outcomes(called, chosen_idx, unit, vl.scores)
            value = float(aiq(cost.mean(axis=1), quality.mean(axis=1), lo, hi))
            self.val_aiq_[kappa if mode == "normal" else f"{mode}:{kappa}"] = value
            if best is None or value > best[0] + 1e-9:
                best = (value, (mode, kappa), called, cost, quality)
        _, (self.lookahead_, self.kappa_), called, cost, quality = best
        if self.twin_ is not None:  # answer evidence per slice only where it beats the ex-ante twin
            self.gate_, planners, called, chosen_idx = fit_gate(self, vl, tr, planners, exante, walk_all,
                                                                outcomes, unit, lo, hi, self.gate_min_prompts)
            cost, quality = outcomes(called, chosen_idx, unit, vl.scores)
        self.lams_, called, cost, quality = refine_grid(planners, unit, vl.scores, self.lams_, called, cost, quality,
                                                        max_lams=self.max_lams, refine_step=self.refine_step)
        strong_called = (called >> self.strong_) & 1
        self.curve_ = Curve(lams=self.lams_.copy(), cost=cost.mean(axis=1), quality=quality.mean(axis=1),
                            strong_share=strong_called.mean(axis=1), strong=int(self.strong_),
                            measured=True, n_prompts=vl.n_prompts, n_dropped=val.n_prompts - vl.n_prompts)
        request = {"budget": budget, "strong_share": strong_share, "target_quality": target_quality}
        self.lam_ = float(self.curve_.lam_for(**({knob: request[knob]} if knob else {})))
        return self

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
        if isinstance(self.gate_min_prompts, bool) or not isinstance(self.gate_min_prompts, (int, np.integer)) \
                or self.gate_min_prompts < 1:
            raise ConfigError(f"gate_min_prompts must be an integer >= 1, got {self.gate_min_prompts!r}")
        if isinstance(self.gate_se, bool) or not isinstance(self.gate_se, (int, float)) \
                or not np.isfinite(self.gate_se) or self.gate_se < 0:
            raise ConfigError(f"gate_se must be a finite number >= 0, got {self.gate_se!r}")
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
    def planners(self, log: "OutcomeLog", *, both: bool = False):
        """One planner per prompt of ``log`` (columns: the pool), from logged responses: with answer
        evidence or ex ante as the evidence gate says (``both``: the two lists, before the gate)."""
        sub = log.select_models(self.pool_)
        prior, embeddings = self._ex_ante(list(sub.prompts))
        facts = compute_facts(list(sub.prompts), self._responses(sub), self.pool_, scorer=self.scorer_,
                              encoder=self._encoder() if self.has_answers_ else None, answer_format=self.answer_format_)
        planners = [Planner(self, logit(prior[i]), facts.row(i)) for i in range(sub.n_prompts)]
        if self.twin_ is None:
            return (planners, planners) if both else planners
        empty = AnswerFacts.empty(1, len(self.pool_))
        exante = [Planner(self.twin_, logit(prior[i]), empty) for i in range(sub.n_prompts)]
        return (planners, exante) if both else gated(self, list(sub.prompts), planners, exante, embeddings)

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
        called, chosen_idx = walk_all(self.planners(sub), grid)
        cost, quality = outcomes(called, chosen_idx, self._unit_costs(sub), sub.scores)
        return {"lams": grid, "cost": cost, "quality": quality, "called": called, "chosen": chosen_idx}

    def curve(self, log: "OutcomeLog", label: str = "cascade-routing"):
        """The policy at every lam of the validation grid on ``log``, as a (per-prompt) ``Curve``."""
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

    # ---------------------------------------------------- operating points
    # operating_points, add_operating_point, lam_for and the knob -> lam resolution: routecast.core.operating_points
    def operating_curve(self) -> Curve:
        """The validation curve budgets, shares and quality targets are read from."""
        self._check_fitted()
        return self.curve_

    def _fallback_lam(self) -> float:
        return self.lam_

    # ---------------------------------------------------------- checkpoint
    def save(self, out_dir: str | os.PathLike, *, sign_key: str | os.PathLike | None = None) -> Path:
        """Write a checkpoint folder in the kernel's one format (:mod:`routecast.core.checkpoint`):
        config.json + weights.safetensors + the ex-ante router in ``router/`` + the answer scorer's
        encoder in ``scorer_encoder/`` (the checkpoint never reads a model from outside itself) +
        manifest.json; ``sign_key`` (an ed25519 private key file) adds ``manifest.sig``. What is
        stored: :mod:`routecast.cascade.cascade_checkpoint`."""
        from routecast.core.checkpoint import save_checkpoint

        self._check_fitted()
        return save_checkpoint(self, out_dir, sign_key=sign_key)

    @classmethod
    def load(cls, path: str | os.PathLike, *, trusted_key: str | os.PathLike | None = None,
             expect_sha256: str | None = None) -> "CascadeRouter":
        """Verify and load a checkpoint folder exactly as router checkpoints are
        (:func:`routecast.core.checkpoint.open_checkpoint`: ``expect_sha256`` pins the sha256 of
        ``manifest.json``, ``trusted_key`` requires a ``manifest.sig`` that verifies; every file read
        once, hash-checked), then every field checked for meaning; one CheckpointError otherwise."""
        from routecast.core.checkpoint import open_checkpoint

        loaded = open_checkpoint(path, cls=cls, trusted_key=trusted_key, expect_sha256=expect_sha256)
        cascade = loaded.router
        cascade.manifest_sha256_, cascade.signed_by_ = loaded.manifest_sha256, loaded.signed_by
        return cascade

    def checkpoint_state(self, folder: Path) -> dict[str, Any]:
        """The checkpoint format's save hook (:func:`routecast.cascade.cascade_checkpoint.cascade_state`)."""
        from routecast.cascade.cascade_checkpoint import cascade_state

        return cascade_state(self, folder)

    @classmethod
    def from_checkpoint(cls, folder: Any) -> "CascadeRouter":
        """The checkpoint format's load hook: build, check every field, probe once."""
        from routecast.cascade.cascade_checkpoint import build_cascade, probe_cascade

        self = build_cascade(cls, folder)
        self.mask_index_ = {m: i for i, m in enumerate(masks(len(self.pool_), self.max_calls_, with_empty=True))}
        return probe_cascade(self, folder)
