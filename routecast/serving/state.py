"""What the endpoints of one app share: settings, the loaded runtime, the micro-batcher, the chat
proxy, metrics and per-key limits. One instance per app (``app.state.server``), built by
:func:`routecast.serving.app.create_app`; the runtime, batcher and HTTP client are filled in by
the app's lifespan (the model is loaded there, not at import or construction)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import anyio

from routecast.core.pacing import BudgetPacer
from routecast.data.costs import PriceTable
from routecast.errors import ConfigError, RoutecastError
from routecast.serving.api_error import ApiError
from routecast.serving.backends import Backend
from routecast.serving.conversations import ConversationMemory
from routecast.serving.decision_writer import DecisionWriter
from routecast.serving.guard.key_limits import KeyLimits
from routecast.serving.metrics import ServerMetrics
from routecast.serving.microbatch import BatcherClosed, MicroBatcher
from routecast.serving.proxy import ChatProxy
from routecast.serving.runtime_protocol import ServingRuntime, budget_note
from routecast.serving.schemas import RouteKnobs
from routecast.serving.server_config import ServerSettings
from routecast.serving.tracing import span

ROUTER_ALIASES = ("router", "auto")


def budget_pacer(settings: ServerSettings, runtime: ServingRuntime) -> BudgetPacer | None:
    """The started budget pacer of ``pace_budget_usd`` for ``runtime`` (None: off). Why a router only:
    the pacer moves the lam of one decision per chat; a cascade's spend is its calls' (refused, one line)."""
    if settings.pace_budget_usd is None:
        return None
    if runtime.max_calls_per_chat > 1:
        raise ConfigError("pace_budget_usd paces a router's lam; a cascade checkpoint cannot be paced")
    return BudgetPacer.for_costs(settings.pace_budget_usd, list(runtime.expected_costs.values()),
                                 curve=runtime.budget_curve(), step=settings.pace_step).start()


@dataclass
class ServerState:
    settings: ServerSettings
    backends: dict[str, Backend]
    metrics: ServerMetrics
    limits: KeyLimits
    #: conversation id -> first model (routecast.serving.conversations)
    conversations: ConversationMemory
    #: the loaded policy (a router or a cascade), set by the app's lifespan
    runtime: ServingRuntime | None = None
    #: the fair-share micro-batcher (None: ``micro_batch`` off, or not started yet)
    batcher: MicroBatcher | None = None
    #: the backends' HTTP client, breakers and fallback rule, set by the app's lifespan
    proxy: ChatProxy | None = None
    #: the decision log's writer, None without ``decision_log``
    writer: DecisionWriter | None = None
    #: prices for realised costs from token usage (None: expected costs)
    prices: PriceTable | None = None
    #: how the serving checkpoint changes while the server runs (routecast.serving.rollout.Rollout)
    rollout: Any = None
    #: the budget pacer of ``pace_budget_usd`` (routecast.core.pacing.BudgetPacer), None when off
    pacer: BudgetPacer | None = None
    #: the candidate deciding beside the live checkpoint (routecast.serving.shadow.Shadow), None when off
    shadow: Any = None
    #: the candidate serving a share of first turns (routecast.serving.canary.Canary), None when off
    canary: Any = None
    #: a request's canary arm and its probability, logged with its decision (set on a pinned copy)
    arm: dict | None = None
    #: OpenTelemetry tracer (routecast.serving.tracing), None: traces off
    tracer: Any = None

    def pinned(self) -> "ServerState":
        """This state with the runtime and batcher of now. Why: a request routes, calls its backends
        and logs with the checkpoint it started with, whatever a hot reload swaps in meanwhile
        (routecast.serving.rollout); everything else (limits, metrics, log) is shared."""
        return replace(self)

    def start_batcher(self, runtime: ServingRuntime) -> MicroBatcher | None:
        """A started micro-batcher for ``runtime`` (None: ``micro_batch`` off)."""
        settings = self.settings
        if not settings.micro_batch:
            return None
        return MicroBatcher(runtime.route, calibrated=runtime.describe()["calibrated"],
                            max_batch=settings.max_batch, max_wait_ms=settings.batch_wait_ms,
                            quantum_chars=settings.fair_quantum_chars,
                            max_chars=getattr(runtime.encoder, "max_chars", None),
                            on_batch=self.metrics.batch_prompts.observe).start()

    @property
    def ready(self) -> bool:
        return self.runtime is not None and (self.batcher is None or self.batcher.running)

    def known_models(self) -> list[str]:
        return list(self.runtime.models) + [m for m in self.backends if m not in self.runtime.models and m != "*"]

    def knob_kwargs(self, knobs: RouteKnobs) -> dict[str, Any]:
        """A request's knobs as keyword arguments; none given: the server's default point or lam."""
        kwargs = knobs.model_dump()
        if all(v is None for v in kwargs.values()):
            if self.settings.default_operating_point is not None:
                kwargs["operating_point"] = self.settings.default_operating_point
            elif self.settings.default_lam is not None:
                kwargs["lam"] = self.settings.default_lam
            elif self.pacer is not None:
                kwargs["lam"] = self.pacer.lam_
        return kwargs

    def log_decision(self, record: dict, knobs: RouteKnobs | None) -> None:
        """Append a routed request's decision-log row, with its canary arm when there is one; with a
        shadow and the request's ``knobs`` (None: a cascade's row, not shadowed), the candidate's
        decision on the same text and knobs joins it (made on the log's thread: routecast.serving.shadow)."""
        if self.arm is not None:
            record = {**record, "extra": {**(record.get("extra") or {}), **self.arm}}
        if self.shadow is None or knobs is None:
            self.writer.append(record)
        else:
            self.writer.submit(self.shadow.append_beside, self.writer.log, record, self.knob_kwargs(knobs))

    def charge(self, caller: str, cost: float | None) -> None:
        """Charge a routed request's cost to its key's budget and show it to the budget pacer."""
        self.limits.charge(caller, cost)
        if self.pacer is not None:
            self.pacer.observe(cost)

    def knob_headers(self, knobs: RouteKnobs) -> dict[str, str]:
        """Headers explaining how a request's knobs were met (a budget past the best point's cost)."""
        note = budget_note(self.runtime.budget_curve(), knobs.budget)
        return {"x-routecast-budget-note": note} if note else {}

    def call_cost(self, model: str, usage: Any) -> float | None:
        """USD of one answered call: its token ``usage`` priced by the price table when both are
        there, else the runtime's expected cost of ``model``."""
        cost = self.runtime.expected_costs.get(model)
        if isinstance(usage, dict) and self.prices is not None and model in self.prices:
            tokens_in, tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if all(isinstance(t, int) and not isinstance(t, bool) for t in (tokens_in, tokens_out)):
                cost = float(self.prices.call_cost(model, tokens_in, tokens_out))
        return cost

    async def route_texts(self, texts: list[str], knobs: RouteKnobs, key_id: str) -> list[dict]:
        """Decisions for ``texts`` (through the fair-share micro-batcher when it is on)."""
        kwargs = self.knob_kwargs(knobs)
        start = time.perf_counter()
        with span(self.tracer, "routecast.decide", prompts=len(texts), checkpoint=self.runtime.manifest_sha256):
            decisions = await self._decide(texts, kwargs, key_id)
        self.metrics.route_latency.observe(time.perf_counter() - start)
        return decisions

    async def _decide(self, texts: list[str], kwargs: dict[str, Any], key_id: str) -> list[dict]:
        """Decisions for ``texts``: the micro-batcher's, or this request's runtime's directly."""
        batcher, decisions = self.batcher, None
        try:
            if batcher is not None and not batcher.retired:
                try:
                    decisions = await batcher.submit(texts, key=key_id, **kwargs)
                except BatcherClosed:
                    if not batcher.retired:
                        raise
            if decisions is None:  # no batcher, or a hot reload retired it: this request's own runtime routes
                decisions = await anyio.to_thread.run_sync(partial(self.runtime.route, texts, **kwargs))
                self.metrics.batch_prompts.observe(len(texts))
        except RoutecastError as exc:
            raise ApiError(400, str(exc), code="routing_error") from None
        except BatcherClosed:
            raise ApiError(503, "the router is not running (the server is starting or stopping)",
                           type="server_error", code="router_unavailable") from None
        except (UnicodeError, ValueError, TypeError) as exc:  # a prompt the encoder cannot take
            raise ApiError(400, f"a prompt could not be encoded ({type(exc).__name__})",
                           code="unroutable_prompt") from None
        return decisions
