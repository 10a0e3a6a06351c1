"""Cascades and post-hoc ensembles: ask a cheap model first, escalate only when needed.

Public names are imported lazily (``routecast.cascade.Cascade`` works) so that importing
``routecast.cascade.commands`` for ``routecast --help`` pulls in nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Cascade": "routecast.cascade.cascade",
    "CascadeOutcome": "routecast.cascade.cascade",
    "CascadeCurve": "routecast.cascade.cascade",
    "ChainSearch": "routecast.cascade.cascade",
    "search_chains": "routecast.cascade.cascade",
    "ThresholdChoice": "routecast.cascade.thresholds",
    "Deferral": "routecast.cascade.deferral",
    "ExAnteDeferral": "routecast.cascade.deferral",
    "ExPostDeferral": "routecast.cascade.deferral",
    "AgreementDeferral": "routecast.cascade.deferral",
    "make_deferral": "routecast.cascade.deferral",
    "AnswerScorer": "routecast.cascade.answer_scorer",
    "final_answer": "routecast.cascade.answers",
    "agreement_score": "routecast.cascade.agreement",
    "majority_vote": "routecast.cascade.ensembles",
    "best_of_n": "routecast.cascade.ensembles",
    "oracle_ensemble": "routecast.cascade.ensembles",
    "EnsembleResult": "routecast.cascade.ensembles",
    "CascadeRouter": "routecast.cascade.cascade_router",
    "CascadeRoutingOutcome": "routecast.cascade.cascade_router",
    "smoothie_select": "routecast.cascade.smoothie",
    "cascade_support": "routecast.cascade.kinds",
    "CascadeSupport": "routecast.cascade.kinds",
    "CASCADE_KINDS": "routecast.cascade.kinds",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'routecast.cascade' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
