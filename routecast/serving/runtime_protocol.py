"""The one surface the server needs of a loaded policy, whatever policy it is.

:class:`routecast.serving.runtime.Runtime` (a router) and
:class:`routecast.serving.cascade_runtime.CascadeRuntime` (a cascade router) both implement
:class:`ServingRuntime`; the endpoints, the micro-batcher and the start-up checks call only this
protocol. Why: the chat endpoint used to reach into ``runtime.router.costs_`` and to tell a cascade
apart with ``getattr(runtime, "is_cascade")``, so every new policy meant another special case in
the HTTP code. A policy now brings its own answer to the three questions the server asks:

* **decide** - :meth:`ServingRuntime.route`: one decision per prompt in the shape of
  :meth:`routecast.router.base.RouteResult.records` (``/v1/route``, the micro-batcher);
* **call plan** - :meth:`ServingRuntime.answer_chat`: which backend calls a routed chat makes and
  in what order (a router: one call with fallbacks down its ranking; a cascade: call, score and
  maybe call again);
* **headers** - both plans describe their decision with the one header builder
  :func:`routecast.serving.chat_request.decision_headers`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

from routecast.errors import RoutecastError


@runtime_checkable
class ServingRuntime(Protocol):
    """A loaded, verified policy ready to serve (see the module docstring)."""

    #: the models the policy chooses among, in the checkpoint's order
    models: tuple[str, ...]
    #: registry name reported by /v1/route and /v1/router
    router_type: str
    #: the checkpoint folder it was loaded from (None: built in memory)
    path: Path | None
    #: sha256 of the checkpoint's manifest.json as loaded (what --expect-sha256 pins)
    manifest_sha256: str | None
    #: the prompt encoder (its ``spec`` and ``max_chars`` are read), None when the policy reads text only
    encoder: Any

    @property
    def max_calls_per_chat(self) -> int:
        """The most backend calls one routed chat makes (a router: 1; a cascade: its ``max_calls``):
        what a reserved budget holds for a chat in flight."""

    @property
    def expected_costs(self) -> dict[str, float | None]:
        """Mean USD of one call to each model (None: unknown): charged when no usage is priced."""

    def route(self, texts: Sequence[str] | str, *, lam: float | None = None, budget: float | None = None,
              strong_share: float | None = None, target_quality: float | None = None,
              operating_point: str | None = None) -> list[dict[str, Any]]:
        """Decide: one record per prompt (model, rank, predicted_quality, expected_cost, lam,
        operating_point, ranking)."""

    def operating_point(self, name: str) -> dict[str, Any]:
        """The stored operating point ``name`` (an unknown name raises a RoutecastError naming the known ones)."""

    def budget_curve(self) -> Any:
        """The measured :class:`routecast.core.curve.Curve` budgets are mapped through (None:
        budgets map through each batch's own predictions); the server explains a saturated budget with it."""

    def describe(self) -> dict[str, Any]:
        """router_type, models, expected_costs, encoder, calibrated, operating_points, checkpoint."""

    async def answer_chat(self, server: Any, chat: Any) -> Any:
        """The call plan: answer one routed chat (a :class:`routecast.serving.chat_request.ChatRequest`)
        through ``server``'s proxy and return the HTTP response."""


def budget_note(curve, budget: float | None) -> str | None:
    """Why a ``budget`` routes like a smaller one, or None: past the cost at which the curve's best
    quality is reached, a larger budget buys nothing, so every such budget gets that point's lam -
    which without this note looked like budgets being ignored (``x-routecast-budget-note``)."""
    if curve is None or budget is None:
        return None
    try:
        i = curve.index_for(budget=budget)
    except RoutecastError:  # below the cheapest point: the routing itself answers 400
        return None
    spent, best = float(curve.cost[i]), float(curve.quality.max())
    if spent >= budget * (1 - 1e-6) or float(curve.quality[i]) < best - 1e-12:
        return None
    where = "calibration split" if curve.measured else "validation split"
    return (f"budget {budget:.6g} USD/query is above {spent:.6g} USD/query, the cost at which the best quality "
            f"({best:.4f}) is already reached on the {where}; a larger budget routes the same "
            f"(lam {float(curve.lams[i]):.6g})")
