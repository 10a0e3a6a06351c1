"""Token usage a backend reports, checked before it is priced; what a chat may cost, held against a
budget while it runs; and answers re-encoded as strict JSON.

Why: with a price table, a chat's realised cost is the backend's reported ``usage`` times the
price, and that cost is charged to the caller's spend budget. A backend is not a trusted party (a
compromised or buggy one, or a proxy in front of one): a probe's backend reporting
``prompt_tokens: -1000000000`` was charged -10,000 USD, after which 40 of 40 chats passed a budget
that allowed 8; a count of ``1.8e308`` (a float that parses to infinity) wrote ``Infinity`` into
the answer, which is not JSON, and locked the key out; a 400-digit count overflowed the pricing
and turned a paid answer into a 500.

A usage is *plausible* when ``prompt_tokens`` and ``completion_tokens`` are non-negative integers
within bounds the request itself sets: the completion at most the request's ``max_tokens`` (or
``max_completion_tokens``), else at most :data:`TOKENS_PER_CHAR` tokens per character of the
answer plus :data:`HIDDEN_TOKENS` (reasoning models bill tokens the answer does not show), and the
prompt at most :data:`TOKENS_PER_CHAR` per character of the request plus :data:`HIDDEN_TOKENS`
(images and tool definitions); nothing above :data:`MAX_TOKENS`. An implausible usage is not priced:
the call is charged the router's expected cost of the model, a warning is logged and
``routecast_implausible_usage_total`` counts it; the answer still reaches the client.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from routecast.errors import shown

logger = logging.getLogger("routecast.serving")

#: the most tokens one character of text can become (a CJK character is up to 3 byte-level tokens)
TOKENS_PER_CHAR = 4
#: tokens a backend may bill beyond the visible text (reasoning, images, tool definitions, chat template)
HIDDEN_TOKENS = 100_000
#: no count above this is believed, whatever the request allows (larger than any context window)
MAX_TOKENS = 10_000_000


def implausible_usage(usage: Any, request: dict, answer: dict) -> str | None:
    """Why the token ``usage`` a backend reported for ``request`` is not believable, or None."""
    if not isinstance(usage, dict):
        return None  # no usage: nothing to price, the expected cost applies anyway
    limit = request.get("max_completion_tokens", request.get("max_tokens"))
    answer_chars = len(json.dumps(answer.get("choices", ""), ensure_ascii=False))
    request_chars = len(json.dumps(request.get("messages", ""), ensure_ascii=False))
    bounds = {"prompt_tokens": TOKENS_PER_CHAR * request_chars + HIDDEN_TOKENS,
              "completion_tokens": limit if _is_count(limit) else TOKENS_PER_CHAR * answer_chars + HIDDEN_TOKENS}
    for field, bound in bounds.items():
        value = usage.get(field)
        if value is None:
            continue
        if not _is_count(value):
            return f"{field} is not a non-negative integer ({shown(value, 40)})"
        if value > min(bound, MAX_TOKENS):
            return f"{field} {shown(value, 40)} exceeds {min(bound, MAX_TOKENS)} for this request and answer"
    return None


def checked_usage(usage: Any, request: dict, answer: dict, *, model: str, metrics, request_id: str) -> Any:
    """``usage`` when plausible, else None (priced then at the expected cost), logged and counted."""
    problem = implausible_usage(usage, request, answer)
    if problem is None:
        return usage
    logger.warning("request %s: backend usage of model %s ignored, charged at the expected cost: %s",
                   request_id, model, problem)
    metrics.implausible_usage.labels(model).inc()
    return None


def chat_hold_usd(runtime, model: str | None = None) -> float:
    """The most one chat is expected to cost, held against a budget while it runs (``budget_mode:
    reserve``): a named ``model``'s expected cost; for a routed chat the dearest model's (it may
    fall back to any), times the calls a cascade may make."""
    expected = runtime.expected_costs
    if model is not None and expected.get(model) is not None:
        return float(expected[model])
    costs = sorted((c for c in expected.values() if c is not None), reverse=True)
    calls = runtime.max_calls_per_chat
    return float(sum(costs[:calls]))


def strict_json(data: Any) -> str:
    """``data`` as JSON that every parser accepts: a non-finite number (a backend's ``1e999``
    parses to infinity) becomes null instead of the ``Infinity`` Python would write."""
    try:
        return json.dumps(data, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(data), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
