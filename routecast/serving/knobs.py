"""Where a request's routing knobs come from, and the refusal of every knob routecast does not know.

A chat request may choose its operating point or willingness to pay in three documented ways:

* the model name: ``"model": "router:budget-0.0002"`` (or ``auto:NAME``) names a stored operating
  point, in the spirit of RouteLLM's ``router-mf-0.116``; plain ``router`` / ``auto`` use the
  server's default point;
* headers: ``x-routecast-operating-point: NAME``, ``x-routecast-budget: USD``, ``x-routecast-lam:
  N`` (and ``x-routecast-conversation: ID`` for sticky routing);
* the body field ``"routecast": {"operating_point" | "lam" | "budget" | "strong_share" |
  "target_quality": ...}``, removed before forwarding.

Why refuse the rest with a 400: a misspelt knob (``x-routecast-budjet``, ``routecast.bugdet``) or a
top-level ``"budget"`` used to be ignored silently - the request was routed at the default and
the field was even forwarded to the paid backend. Now any ``x-routecast-*`` header or
``routecast.*`` field not listed here, and a top-level routing knob, is refused before anything is
routed or sent. Two sources setting the same knob to different values are refused too.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from routecast.serving.api_error import ApiError
from routecast.serving.schemas import RouteKnobs, validated
from routecast.serving.state import ROUTER_ALIASES

HEADER_PREFIX = "x-routecast-"
#: request headers routecast reads -> the knob they set (None: not a knob)
REQUEST_HEADERS = {"x-routecast-operating-point": "operating_point", "x-routecast-budget": "budget",
                   "x-routecast-lam": "lam", "x-routecast-conversation": None}
#: routing knobs refused at the top level of a chat body (they belong in the ``routecast`` field)
TOP_LEVEL_KNOBS = tuple(RouteKnobs.model_fields)


def router_model(requested: str) -> tuple[bool, str | None]:
    """(routes, operating point named in the model) for a chat request's ``model``."""
    base, sep, point = requested.partition(":")
    if base in ROUTER_ALIASES:
        if sep and not point:
            raise ApiError(400, f"model {requested!r} names no operating point after ':'", code="invalid_request")
        return True, point or None
    return False, None


def header_knobs(headers: Mapping[str, str]) -> dict[str, Any]:
    """Knobs set by ``x-routecast-*`` headers; an unknown one or a bad value is a 400."""
    out: dict[str, Any] = {}
    for name, value in headers.items():
        name = name.lower()
        if not name.startswith(HEADER_PREFIX):
            continue
        if name not in REQUEST_HEADERS:
            raise ApiError(400, f"unknown routecast header {name!r}; known: {', '.join(REQUEST_HEADERS)}",
                           code="unknown_routecast_knob")
        knob = REQUEST_HEADERS[name]
        if knob == "operating_point":
            if not value.strip():
                raise ApiError(400, f"header {name} is empty", code="invalid_request")
            out[knob] = value.strip()
        elif knob is not None:
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not math.isfinite(number) or number < 0:
                raise ApiError(400, f"header {name} must be a finite number >= 0, got {value[:40]!r}",
                               code="invalid_request")
            out[knob] = number
    return out


def conversation_header(headers: Mapping[str, str]) -> str | None:
    value = headers.get("x-routecast-conversation")
    return value.strip() or None if value is not None else None


def merge_knobs(*sources: tuple[str, Mapping[str, Any]]) -> RouteKnobs:
    """One :class:`RouteKnobs` from (where, knobs) sources; the same knob set twice differently is a 400."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for where, knobs in sources:
        for key, value in knobs.items():
            if value is None:
                continue
            if key in merged and merged[key] != value:
                raise ApiError(400, f"{key} is set twice with different values ({origin[key]}: {merged[key]!r}, "
                                    f"{where}: {value!r})", code="invalid_request")
            merged[key], origin[key] = value, where
    return validated(RouteKnobs, merged, where="routecast")


def chat_knobs(body: dict, headers: Mapping[str, str], point_in_model: str | None) -> RouteKnobs:
    """The knobs of a chat request (pops the ``routecast`` field from ``body``; see the module doc)."""
    stray = [k for k in TOP_LEVEL_KNOBS if k in body]
    if stray:
        raise ApiError(400, f"routing knob(s) {', '.join(stray)} at the top level of the body are not read and "
                            "would be sent to the backend; put them in the 'routecast' field "
                            "(e.g. {\"routecast\": {\"budget\": 0.0002}}) or an x-routecast-* header",
                       code="unknown_routecast_knob")
    raw = body.pop("routecast", None)
    if raw is not None and not isinstance(raw, dict):
        raise ApiError(400, "'routecast' must be a JSON object of routing knobs", code="invalid_request")
    unknown = sorted(set(raw or {}) - set(TOP_LEVEL_KNOBS))
    if unknown:
        raise ApiError(400, f"unknown routecast field(s) {', '.join('routecast.' + k for k in unknown)}; known: "
                            f"{', '.join(TOP_LEVEL_KNOBS)}", code="unknown_routecast_knob")
    body_knobs = validated(RouteKnobs, raw or {}, where="routecast").model_dump()
    return merge_knobs(("model", {"operating_point": point_in_model}), ("headers", header_knobs(headers)),
                       ("routecast field", body_knobs))

