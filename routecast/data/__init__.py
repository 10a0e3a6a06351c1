"""Outcome logs: loading, validating, costing, splitting and inspecting query-outcome data.

Exports are resolved lazily (PEP 562) so ``import routecast.data.commands`` -- and thus
``routecast --help`` -- does not pay for pandas until a data function is actually used.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "OutcomeLog": "routecast.data.outcome_log",
    "load_log": "routecast.data.loaders",
    "frame_to_log": "routecast.data.loaders",
    "load_preferences": "routecast.data.preferences",
    "load_data": "routecast.data.preferences",
    "routing_text": "routecast.data.chat_text",
    "parse_mapping": "routecast.data.columns",
    "pairs_from_log": "routecast.data.preferences",
    "PairwiseLog": "routecast.data.preferences",
    "split_log": "routecast.data.splits",
    "Splits": "routecast.data.splits",
    "PriceTable": "routecast.data.costs",
    "builtin_names": "routecast.data.builtin",
    "summarize": "routecast.data.inspect",
    "read_answer": "routecast.data.answers",
    "agreement_scores": "routecast.data.latent_truth",
    "Answer": "routecast.data.answers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'routecast.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
