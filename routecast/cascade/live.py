"""The live, step-wise interface of cascade routing: one prompt, one model call at a time.

``start``, then :meth:`~LiveCascade.next_model` / :meth:`~LiveCascade.observe` until ``next_model``
says stop, then :meth:`~LiveCascade.outcome`: a caller that cannot block (the server's event loop,
:mod:`routecast.serving.cascade_chat`) makes the calls itself; :meth:`~LiveCascade.run` is the same
loop with a callback. It walks the same :class:`~routecast.cascade.planner.Planner` as offline
simulation, so on a logged prompt it calls the same models and returns the same answer.

:class:`LiveCascade` is a mixin of :class:`~routecast.cascade.cascade_router.CascadeRouter`: it
reads the fitted pool, ex-ante router, answer scorer and encoder, and the lam resolution of
:mod:`routecast.core.operating_points`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from routecast.cascade.planner import CascadeRoutingOutcome, CascadeState, Planner
from routecast.cascade.evidence_gate import live_owner, prompt_embeddings, reads_embeddings
from routecast.cascade.posterior import AnswerFacts, compute_facts, logit, rate
from routecast.errors import RoutingError


class LiveCascade:
    """Step-wise live routing for a fitted cascade router (mixin; see the module docstring)."""

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
        prior, embedding = self._ex_ante([prompt])
        prior = prior[0]
        planner = Planner(live_owner(self, prompt, embedding), logit(prior), AnswerFacts.empty(1, p))
        return CascadeState(prompt=prompt, lam=value, prior={m: float(q) for m, q in zip(self.pool_, prior)},
                            planner=planner, responses=np.full((1, p), None, dtype=object))

    def _ex_ante(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """((n, P) ex-ante predicted quality of the pool on ``prompts``, the router's embeddings of
        them or None). When the evidence gate reads the embedding to find a prompt's slice and the
        ex-ante router reads it too, it is computed once here and given to both (with an encoder
        the disk cache skips, e.g. hashing, or a cold cache, a second embedding was a second
        encoder call per prompt); else None and whoever needs it embeds."""
        shared = None
        if reads_embeddings(self) and getattr(self.router_, "uses_embeddings", False):
            shared = prompt_embeddings(self, prompts)
        prior = self.router_.predict_quality(prompts, embeddings=shared)
        return prior[:, [self.router_.models_.index(m) for m in self.pool_]], shared

    def next_models(self, state: "CascadeState") -> list[str]:
        """The models to call next on ``state``'s prompt, together (in parallel if the caller can):
        the set the plan chose, less those already observed; empty: stop and take :meth:`outcome`."""
        if not state.pending:
            nxt = state.planner.next_call(state.mask, np.array([state.lam]), 0)
            state.pending = [m for j, m in enumerate(self.pool_) if nxt >> j & 1]
        return list(state.pending)

    def next_model(self, state: "CascadeState") -> str | None:
        """The model to call next on ``state``'s prompt, or None: stop and take :meth:`outcome`."""
        models = self.next_models(state)
        return models[0] if models else None

    def is_last_call(self, state: "CascadeState", model: str) -> bool:
        """Whether calling ``model`` now certainly ends the cascade, whatever it answers: it brings
        the calls to ``max_calls`` (or exhausts the pool) and no other planned call is pending. Only
        this is known before the answer; whether the planner will stop depends on what it says."""
        others = [m for m in state.pending if m != model]
        return not others and bin(state.mask).count("1") + (0 if model in state.order else 1) >= self.max_calls_

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
        # the rest of a planned set is still called; a model outside it (a fallback) ends the plan
        state.pending = [m for m in state.pending if m != model] if model in state.pending else []
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
