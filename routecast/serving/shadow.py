"""Shadow routing (``serve --shadow CKPT``): a candidate checkpoint decides every routed request
too, never executed; its decision is logged beside the live one, so off-policy evaluation compares
live and candidate on the same requests (``routecast evaluate --off-policy LOG --router shadow``).

Why on the decision log's thread: the candidate's decision is wanted in the log, not in the
answer, so it is made where the row is written (:class:`routecast.serving.decision_writer.DecisionWriter`
runs one thread, first in first out), after the request was answered; a row's later outcome
update still follows its append. The request pays only the queueing of one more task.
"""

from __future__ import annotations

from typing import Any

from routecast.errors import RoutecastError
from routecast.serving.runtime_protocol import ServingRuntime


class Shadow:
    """A loaded candidate checkpoint that decides beside the serving one."""

    def __init__(self, runtime: ServingRuntime):
        self.runtime = runtime

    def decide(self, text: str, knobs: dict[str, Any]) -> dict[str, Any]:
        """The candidate's decision on ``text`` with the live request's knobs, as logged in
        ``extra["shadow"]``: its checkpoint id, model, lam, predicted qualities and propensities
        (a router decides deterministically: 1 for its model). A knob the candidate cannot meet
        (e.g. an operating point it lacks) is logged as ``error``."""
        out: dict[str, Any] = {"checkpoint": self.runtime.manifest_sha256}
        try:
            decision = self.runtime.route([text], **knobs)[0]
        except (RoutecastError, ValueError, TypeError, UnicodeError) as exc:
            return {**out, "error": str(exc)}
        return {**out, "model": decision["model"], "lam": decision["lam"],
                "predicted": decision["predicted_quality"], "propensities": {decision["model"]: 1.0}}

    def append_beside(self, log, record: dict[str, Any], knobs: dict[str, Any]) -> None:
        """Append the live ``record`` to ``log`` with the candidate's decision in its extra."""
        log.append({**record, "extra": {**(record.get("extra") or {}), "shadow": self.decide(record["text"], knobs)}})
