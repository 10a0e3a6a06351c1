"""A loaded cascade router for the server: what :class:`routecast.serving.runtime.Runtime` is for a
router, for a :class:`~routecast.cascade.cascade_router.CascadeRouter` checkpoint.

``routecast serve CKPT`` tells the two apart by the checkpoint itself (``config.json``'s ``format``
is ``routecast-cascade-router``), so one flag serves either. Both implement
:class:`routecast.serving.runtime_protocol.ServingRuntime`: ``route()`` (for ``/v1/route``: the
cascade's *first* call, its ex-ante predictions and lam, in the result shape of
:meth:`routecast.router.base.RouteResult.records`, plus ``first_models``, the whole first planned set) and ``answer_chat()``, whose call plan is
:mod:`routecast.serving.cascade_chat`, which drives the cascade's step-wise interface here.

Why a lock: the answer scorer and the response embeddings run the encoder (a torch model for
MiniLM is not guaranteed re-entrant); every step is CPU-bound and short, so serialising costs
nothing the event loop would notice (the steps run in worker threads).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from routecast.core.policy import utility_ranking
from routecast.serving.runtime import prompt_list

CASCADE_FORMAT = "routecast-cascade-router"
#: config.json of a checkpoint is read to tell a cascade from a router; larger is not a config
_MAX_CONFIG_BYTES = 64 << 20


def is_cascade_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a cascade router checkpoint (its config.json says so); anything else -
    a router checkpoint, a missing or unreadable folder - is False and left to the router loader,
    whose errors name what is wrong."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    config = Path(path) / "config.json"
    try:
        if not config.is_file() or config.stat().st_size > _MAX_CONFIG_BYTES:
            return False
        return json.loads(config.read_text(encoding="utf-8")).get("format") == CASCADE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class CascadeRuntime:
    """A cascade router ready to serve (see the module docstring)."""

    router_type = "cascade-routing"

    def __init__(self, cascade, *, path: str | os.PathLike | None = None, manifest_sha256: str | None = None):
        self.cascade = cascade
        self.path = None if path is None else Path(path)
        self.manifest_sha256 = manifest_sha256
        self.models: tuple[str, ...] = tuple(cascade.pool_)
        inner = cascade.router_
        self.encoder = inner.get_encoder() if getattr(inner, "uses_embeddings", False) else None
        self._lock = threading.Lock()

    @property
    def max_calls_per_chat(self) -> int:
        return int(self.cascade.max_calls_)

    @property
    def expected_costs(self) -> dict[str, float | None]:
        """Mean cost of one call to each pool model on the training split (what a call is charged
        when the backend reports no token usage or no price table is configured)."""
        costs = np.asarray(self.cascade.costs_, dtype=np.float64)
        return {m: (None if np.isnan(c) else float(c)) for m, c in zip(self.models, costs)}

    # ------------------------------------------------------------ steps
    def start(self, text: str, **knobs):
        with self._lock:
            return self.cascade.start(text, **knobs)

    def next_model(self, state) -> str | None:
        with self._lock:
            return self.cascade.next_model(state)

    def next_models(self, state) -> list[str]:
        """The models the plan calls next, together (several: the server sends them in parallel)."""
        with self._lock:
            return self.cascade.next_models(state)

    def observe_and_next(self, state, answers: list[tuple[str, str]]) -> list[str]:
        """Record one step's ``(model, answer)`` pairs and decide again (one thread hop per step)."""
        with self._lock:
            for model, answer in answers:
                self.cascade.observe(state, model, answer)
            return self.cascade.next_models(state)

    def outcome(self, state):
        with self._lock:
            return self.cascade.outcome(state)

    def is_last_call(self, state, model: str) -> bool:
        return self.cascade.is_last_call(state, model)

    def ranking(self, state) -> list[str]:
        """Pool models by ex-ante utility (prior quality - lam * cost), ties to the cheaper: the
        fallback order when the first call fails before any answer exists."""
        costs = np.nan_to_num(np.asarray(self.cascade.costs_, dtype=np.float64))
        order = utility_ranking(np.array([state.prior[m] for m in self.models]), costs, state.lam)
        return [self.models[j] for j in order]

    # ------------------------------------------------------------ serving
    def operating_point(self, name: str) -> dict[str, Any]:
        """The cascade's stored operating point ``name`` (unknown: a RoutecastError naming the known ones)."""
        return self.cascade.operating_point(name)

    def budget_curve(self):
        """The cascade's validation curve (budgets always map through it)."""
        return self.cascade.curve_

    async def answer_chat(self, server, chat):
        """A cascade's call plan: call, score, maybe call again (routecast.serving.cascade_chat)."""
        from routecast.serving.cascade_chat import cascade_chat
        from routecast.serving.chat_request import chat_routing_text

        return await cascade_chat(server, chat.body, chat.knobs, chat.caller, chat.request_id, chat.started,
                                  stream=chat.stream, text=chat_routing_text(server.settings, chat.messages))

    # ------------------------------------------------------- /v1/route
    def route(self, texts: Sequence[str] | str, *, lam: float | None = None, budget: float | None = None,
              strong_share: float | None = None, target_quality: float | None = None,
              operating_point: str | None = None) -> list[dict[str, Any]]:
        """The first call of the cascade for each prompt, in the router result shape (``model`` is
        the model called first; what follows depends on its answer) plus ``first_models``: the
        whole set the plan calls first, together (one model unless the plan starts with a set of
        parallel calls, :mod:`routecast.cascade.set_actions`; ``model`` is its first)."""
        texts = prompt_list(texts)
        knobs = {"lam": lam, "budget": budget, "strong_share": strong_share, "target_quality": target_quality,
                 "operating_point": operating_point}
        out = []
        for text in texts:
            state = self.start(text, **knobs)
            planned = self.next_models(state) or self.ranking(state)[:1]
            first = planned[0]
            predicted = dict(state.prior)
            out.append({"model": first, "rank": 1 + sum(q > predicted[first] for q in predicted.values()),
                        "predicted_quality": predicted, "expected_cost": self.expected_costs[first],
                        "lam": float(state.lam), "operating_point": operating_point or self._default_point(knobs),
                        "ranking": [first] + [m for m in self.ranking(state) if m != first],
                        "first_models": list(planned)})
        return out

    def _default_point(self, knobs: dict) -> str | None:
        return self.cascade.default_operating_point() if all(v is None for v in knobs.values()) else None

    def describe(self) -> dict[str, Any]:
        c = self.cascade
        return {"router_type": self.router_type, "models": list(self.models), "expected_costs": self.expected_costs,
                "encoder": None if self.encoder is None else self.encoder.spec,
                # budgets and quality targets map to a lam measured on the validation split
                "calibrated": True,
                "operating_points": {name: point["lam"] for name, point in c.operating_points().items()},
                "default_operating_point": c.default_operating_point(),
                "checkpoint": None if self.path is None else str(self.path),
                "cascade": {"pool": list(c.pool_), "max_calls": int(c.max_calls_), "lam": float(c.lam_),
                            "ex_ante_router": c.router, "has_answers": bool(c.has_answers_)}}


def load_cascade(path: str | os.PathLike, *, trusted_key: str | os.PathLike | None = None,
                 expect_sha256: str | None = None) -> CascadeRuntime:
    """Verify (every file's sha256 against the manifest) and load a cascade checkpoint.

    Trust options exactly as for routers: ``expect_sha256`` pins the manifest's sha256,
    ``trusted_key`` requires a ``manifest.sig`` made by ``CascadeRouter.save(sign_key=...)``
    (checked by :meth:`CascadeRouter.load` on the manifest bytes it then uses).
    """
    from routecast.cascade.cascade_router import CascadeRouter

    root = Path(path)
    cascade = CascadeRouter.load(root, trusted_key=trusted_key, expect_sha256=expect_sha256)
    return CascadeRuntime(cascade, path=root, manifest_sha256=cascade.manifest_sha256_)
