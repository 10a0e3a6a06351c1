"""``routecast rollout status DECISION_LOG``: the live and canary arms of a canary rollout
(``serve --canary CKPT``, routecast.serving.canary) compared on their feedback-scored requests.

Per arm: requests scored, mean quality, mean cost (the realised cost where logged, else the
expected one) and quality per dollar (mean quality / mean cost), each with a 95 % percentile
bootstrap interval; and the canary's difference to live. Why the whole log is resampled rather
than each arm apart: the arms come from one randomised draw per request, so the interval also
carries how many requests each arm happened to get. Rows without an arm (no canary ran) count as live.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from routecast.data.decision_log import DecisionLog
from routecast.errors import DataError
from routecast.evaluation.metrics import bootstrap_cis

ARMS = ("live", "canary")


def arm_comparison(decision_log: str | os.PathLike, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Both arms' quality, cost and quality per dollar with intervals, and canary minus live."""
    with DecisionLog(decision_log) as log:
        rows = [r for r in log.records() if r["score"] is not None]
    if not rows:
        raise DataError("no decision in the log has feedback yet (POST /v1/feedback or routecast feedback import)",
                        path=str(decision_log))
    arm = np.array([(r["extra"] or {}).get("arm", "live") for r in rows])
    score = np.array([r["score"] for r in rows], dtype=np.float64)
    cost = np.array([_cost(r) for r in rows], dtype=np.float64)
    if np.isnan(cost).any():
        bad = int(np.flatnonzero(np.isnan(cost))[0])
        raise DataError(f"decision {rows[bad]['request_id']!r} has neither a realised nor an expected cost",
                        path=str(decision_log), column="realised_cost")

    def statistics(idx: np.ndarray) -> dict[str, float]:
        out = {}
        for name in ARMS:
            mine = idx[arm[idx] == name]
            q, c = (float(score[mine].mean()), float(cost[mine].mean())) if mine.size else (np.nan, np.nan)
            out.update({f"{name}.quality": q, f"{name}.cost": c, f"{name}.quality_per_usd": q / c if c else np.nan})
        for key in ("quality", "cost", "quality_per_usd"):
            out[f"difference.{key}"] = out[f"canary.{key}"] - out[f"live.{key}"]
        return out

    point = statistics(np.arange(len(rows)))
    intervals = bootstrap_cis(statistics, len(rows), n_boot=n_boot, seed=seed)
    result: dict[str, Any] = {"decision_log": str(decision_log), "n_scored": len(rows)}
    for name in ARMS + ("difference",):
        part = {key.split(".", 1)[1]: {"value": value, "ci": list(intervals.get(key, (np.nan, np.nan)))}
                for key, value in point.items() if key.startswith(name + ".")}
        if name != "difference":
            mine = [r for r, a in zip(rows, arm) if a == name]
            part["n"] = len(mine)
            part["checkpoints"] = sorted({(r["extra"] or {}).get("checkpoint") or "?" for r in mine})
        result[name] = part
    return result


def _cost(row: dict) -> float:
    cost = row["realised_cost"] if row["realised_cost"] is not None else row["expected_cost"]
    return np.nan if cost is None else cost


def arm_markdown(result: dict[str, Any]) -> str:
    """One row per arm and the difference: quality, cost and quality per dollar with intervals."""
    lines = [f"{result['n_scored']} scored requests in {result['decision_log']}.", "",
             "| arm | requests | quality [95% CI] | cost USD [95% CI] | quality per USD [95% CI] |",
             "|---|---:|---|---|---|"]
    for name in ARMS + ("difference",):
        part = result[name]
        cells = [f"{part[k]['value']:.6g} [{part[k]['ci'][0]:.6g}, {part[k]['ci'][1]:.6g}]"
                 for k in ("quality", "cost", "quality_per_usd")]
        label = "canary - live" if name == "difference" else name
        lines.append(f"| {label} | {part.get('n', '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
