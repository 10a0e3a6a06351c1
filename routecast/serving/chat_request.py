"""One chat request as the call plans see it, what the policy reads of it, and the one builder of
the headers that describe a decision.

Why here and not in the endpoint: both call plans - a router's
(:mod:`routecast.serving.chat_plan`) and a cascade's (:mod:`routecast.serving.cascade_chat`) - take
the same parsed request and report their decision with the same header names, so the names and
their formats are written once (:func:`decision_headers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from routecast.data.chat_text import NoRoutingText, routing_text
from routecast.serving.api_error import ApiError
from routecast.serving.decision_writer import rank_of
from routecast.serving.schemas import RouteKnobs


@dataclass
class ChatRequest:
    """A checked ``/v1/chat/completions`` request (body without its ``routecast`` field)."""

    body: dict[str, Any]
    messages: list[dict[str, Any]]
    knobs: RouteKnobs
    #: the caller's key id (limits, budgets, decision log)
    caller: str
    request_id: str
    #: time.perf_counter() when the request was read (latency in the decision log)
    started: float
    stream: bool
    #: the request's HTTP headers (the conversation id is read from them)
    headers: Mapping[str, str]
    #: whose fair share of the router the request uses: the key, or without keys the client address
    share: str = ""


def chat_routing_text(settings, messages) -> str:
    """What the router (or cascade) reads of a chat, with the server's settings (400 if nothing)."""
    try:
        return routing_text(messages, max_chars=settings.route_context_chars,
                            system_prompt=settings.route_system_prompt, earlier_turns=settings.route_earlier_turns)
    except NoRoutingText as exc:
        raise ApiError(400, str(exc), code="invalid_request") from None


def decision_headers(request_id: str, *, model: str | None = None, predicted: Mapping[str, float] | None = None,
                     lam: float | None = None, expected_cost: float | None = None,
                     operating_point: str | None = None, propensity: float | None = None,
                     sticky: bool | None = None) -> dict[str, str]:
    """The transparency headers of one decision: ``x-routecast-request-id`` always; ``-rank``,
    ``-predicted-quality`` and ``-expected-cost`` of ``model`` ex ante; ``-lam``,
    ``-operating-point``, ``-propensity`` and ``-sticky`` when known. Values use 6 significant digits."""
    out = {"x-routecast-request-id": request_id}
    if model is not None and predicted is not None:
        out["x-routecast-rank"] = str(rank_of(dict(predicted), model))
        out["x-routecast-predicted-quality"] = f"{predicted[model]:.6g}"
    if lam is not None:
        out["x-routecast-lam"] = f"{lam:.6g}"
    if propensity is not None:
        out["x-routecast-propensity"] = f"{propensity:.6g}"
    if operating_point:
        out["x-routecast-operating-point"] = operating_point
    if sticky is not None:
        out["x-routecast-sticky"] = "1" if sticky else "0"
    if model is not None and expected_cost is not None:
        out["x-routecast-expected-cost"] = f"{expected_cost:.6g}"
    return out


def reported_fallback(first: str, answered: str, proxy_chain: str | None) -> str | None:
    """The ``x-routecast-fallback`` value of a chat: the proxy's chain of attempted models, led by the
    decided ``first`` model when the proxy never tried it (it has no backend); None when ``first``
    answered."""
    chain = proxy_chain.split("->") if proxy_chain else [answered]
    if chain[0] != first:
        chain.insert(0, first)
    return "->".join(chain) if len(chain) > 1 else None
