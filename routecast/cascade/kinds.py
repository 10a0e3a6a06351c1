"""Which cascade and ensemble kinds a log supports, and why the others cannot run.

``routecast evaluate --cascades all`` asks :func:`cascade_support` instead of trying every kind
and hiding the failures: a kind that needs response texts is listed with the reason when the
log has none, and cascade routing falls back to ex-ante evidence with a warning naming what is
missing. Nothing is silently dropped: a kind either runs on every evaluated prompt or is listed
as skipped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from routecast.errors import ConfigError
from routecast.core.policy import RoutecastWarning

if TYPE_CHECKING:  # pragma: no cover
    from routecast.data.outcome_log import OutcomeLog

#: every kind, in report order: fixed cascades (c2), cascade routing, post-hoc selectors (c1)
CASCADE_KINDS = ("ex-ante", "ex-post", "agreement", "agreement-escalation", "cascade-routing", "smoothie",
                 "majority-vote", "best-of-n", "oracle-ensemble")
#: the post-hoc (c1) kinds that ``--ensembles`` adds
ENSEMBLE_KINDS = ("smoothie", "majority-vote", "best-of-n", "oracle-ensemble")
#: kinds that read response texts of every model on every prompt
NEEDS_RESPONSES = ("ex-post", "agreement", "agreement-escalation", "smoothie", "majority-vote", "best-of-n")
#: kinds that compare final answers: skipped when no model's answers can be read
ANSWER_KINDS = ("agreement", "agreement-escalation", "majority-vote")


@dataclass
class CascadeSupport:
    """``runnable`` kinds in :data:`CASCADE_KINDS` order, ``skipped`` kind -> reason, ``warnings``
    (facts about the data that change what a runnable kind can use)."""

    runnable: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def parse_kinds(spec: str | Sequence[str] | None) -> list[str]:
    """``"all"``, a comma-separated string or a list of kind names -> kind names (checked)."""
    if spec is None:
        return []
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s and s.strip()]
    if names == ["all"]:
        return list(CASCADE_KINDS)
    unknown = [n for n in names if n not in CASCADE_KINDS]
    if unknown:
        raise ConfigError(f"unknown cascade kind(s) {', '.join(unknown)}; choose from all, {', '.join(CASCADE_KINDS)}")
    return names


def cascade_support(log: "OutcomeLog", kinds: str | Sequence[str] = "all", *, warn: bool = True) -> CascadeSupport:
    """Split ``kinds`` into those ``log`` can run and those it cannot (with the reason)."""
    from routecast.cascade.pool import response_notes

    wanted = parse_kinds(kinds)
    skipped: dict[str, str] = {}
    notes: list[str] = []
    if log.n_models < 2:
        reason = f"{log.source} has {log.n_models} model(s); cascades and ensembles need at least two"
        return CascadeSupport([], {k: reason for k in wanted})
    if log.n_prompts == 0:  # cascade_curves passes the complete rows: a traffic log has none
        reason = ("no prompt has every model's score (a traffic log): cascades and ensembles are fitted on "
                  "prompts where every model answered; collect the missing answers (routecast collect)")
        return CascadeSupport([], {k: reason for k in wanted})
    if log.n_models < 3 and "agreement-escalation" in wanted:
        skipped["agreement-escalation"] = (f"{log.source} has {log.n_models} models; agreement escalation needs "
                                           "three (two to agree, a stronger one to escalate to)")
    if log.responses is None:
        reason = ("no responses logged: ex-post and agreement cascades, Smoothie, majority vote and best-of-n "
                  "need a response column")
        skipped.update({k: reason for k in wanted if k in NEEDS_RESPONSES and k not in skipped})
    else:
        missing = {m: int(sum(not isinstance(r, str) for r in log.responses[:, j])) for j, m in enumerate(log.models)}
        missing = {m: c for m, c in missing.items() if c}
        if missing:
            first = ", ".join(f"{m} ({c} of {log.n_prompts})" for m, c in missing.items())
            reason = (f"responses missing for {first}: this kind needs a response of every model on every prompt "
                      "(cascade routing runs, treating the missing answers as unknown)")
            skipped.update({k: reason for k in wanted if k in NEEDS_RESPONSES and k not in skipped})
    if log.responses is not None:  # answers that cannot be read give no agreement evidence (evidence_gate)
        from routecast.cascade.evidence_gate import unreadable_notes

        unreadable, none_read = unreadable_notes(log, log.models)
        notes.extend(unreadable)
        if none_read:
            skipped.update({k: unreadable[0] for k in wanted if k in ANSWER_KINDS and k not in skipped})
    if "cascade-routing" in wanted:
        notes.extend(response_notes(log, log.models))
    if np.isnan(log.costs).all():
        notes.append(f"no costs logged in {log.source}: cascades are priced on the relative cost scale "
                     "(give a price table for USD)")
    if warn:
        for note in notes:
            warnings.warn(note, RoutecastWarning, stacklevel=2)
    return CascadeSupport([k for k in wanted if k not in skipped], skipped, notes)
