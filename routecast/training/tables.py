"""The tables the training commands print, as plain data for :func:`routecast.cli_options.print_table`.

Each function turns a result (an evaluation, a tuning study, a calibration, the router registry)
into ``{"title", "columns", "rows", "right", "highlight"}`` with every number formatted once, so
the same figures show on a terminal (rich) and in a pipe or CI log (Markdown, never cut).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def fmt(x, spec: str = ".4f") -> str:
    """``x`` formatted with ``spec``; "—" for None and non-finite values."""
    return format(x, spec) if _finite(x) else "—"


def fmt_short(value, digits: int = 4) -> str:
    """Small floats with significant digits (0.000123), others with ``digits`` decimals."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-2 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def leaderboard_table(result, *, title: str = "Leaderboard (test split)") -> dict:
    """The evaluation leaderboard: AIQ with its 95 % interval, max quality, cost to match the best
    model, APGR / CPT(50%) when there is a strong-weak pair, fit and routing time."""
    two = result.strong_model is not None
    ranked = result.leaderboard()
    prior = any(r.get("gain_over_prior") is not None for r in ranked)
    columns = ["router", "family", "AIQ [95% CI]"] + (["vs prior [95% CI]"] if prior else []) + \
        ["max quality", "cost to match best (x)"]
    if two:
        columns += ["APGR", "CPT(50%)"]
    columns += ["train s", "route µs/q"]
    rows = []
    for r in ranked:
        lo, hi = r["aiq_ci"]
        ratio = r.get("cost_ratio_to_best")
        meta = r.get("meta") or {}
        cells = [r["label"], r["family"], f"{fmt(r['aiq'])} [{fmt(lo)}, {fmt(hi)}]"]
        if prior:
            gain, ci = r.get("gain_over_prior"), r.get("gain_over_prior_ci") or (None, None)
            cells.append("—" if gain is None else f"{gain:+.4f} [{fmt(ci[0], '+.4f')}, {fmt(ci[1], '+.4f')}]")
        cells += [fmt(r["max_quality"]), f"{ratio:.2f}x" if _finite(ratio) else "—"]
        if two:
            cells += [fmt(r.get("apgr")), fmt(r.get("cpt50"), ".1%")]
        cells += [fmt(meta.get("train_seconds"), ".2f"), fmt(meta.get("route_us_per_query"), ".1f")]
        rows.append(cells)
    return {"title": title, "columns": columns, "rows": rows,
            "right": [c for c in columns if c not in ("router", "family")]}


def unranked_table(result) -> dict:
    """Single models (points) and policies whose curve lies above the AIQ cost range: cost and quality, no rank."""
    columns = ("policy", "family", "status", "min cost", "max quality")
    rows = [(r["label"], r["family"] or "—", r["status"], fmt(r["min_cost"], ".6g"), fmt(r["max_quality"]))
            for r in result.unranked()]
    return {"title": "Points and policies outside the cost range (not ranked)", "columns": columns, "rows": rows,
            "right": ("min cost", "max quality")}


def per_benchmark_table(result) -> dict:
    """AIQ / quality at the best single model's cost of each ranked policy, per benchmark."""
    ranked = [r["label"] for r in result.leaderboard()]
    rows = []
    for entry in result.per_benchmark:
        cells = [entry["benchmark"], str(entry["n_prompts"])]
        for label in ranked:
            p = entry["policies"].get(label, {})
            cells.append(f"{fmt(p.get('aiq'))} / {fmt(p.get('quality_at_best_cost'))}")
        rows.append(cells)
    columns = ["benchmark", "prompts", *ranked]
    return {"title": "Per benchmark: AIQ / quality at the best single model's cost", "columns": columns,
            "rows": rows, "right": columns[1:]}


def leaderboard_footer(result) -> str:
    low, high = result.cost_range
    lines = [f"best single model: {result.best_single_model}; zero-router AIQ {result.zero_router_aiq:.4f}; "
             f"oracle quality {format(result.oracle_quality, '.4f') if math.isfinite(result.oracle_quality) else 'unknown'}; "
             f"{result.n_prompts} test prompts; "
             f"AIQ cost range [{low:.6g}, {high:.6g}] {result.cost_unit} ({result.cost_range_source})"]
    if result.strong_model is not None:
        lines.append(f"strong / weak model: {result.strong_model} / {result.weak_model}")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def routing_verdict(result) -> str | None:
    """In words: did learned routing beat the lookup table (the better prior, chosen by validation
    AIQ) on this data? Judged by the best learned (a1) router's paired 95% interval of its AIQ gain
    over that prior; None when no prior or no learned router was compared."""
    prior = (getattr(result, "prior_choice", None) or {}).get("prior")
    learned = [r for r in result.leaderboard() if r["family"] == "a1" and r.get("gain_over_prior") is not None]
    if prior is None or not learned:
        return None
    best = learned[0]
    lo, hi = best.get("gain_over_prior_ci") or (None, None)
    figures = (f"{best['label']} AIQ {fmt(best['aiq'])} vs {prior} {fmt(result.routers[prior].aiq)}, "
               f"gain {best['gain_over_prior']:+.4f} [95% CI {fmt(lo, '+.4f')}, {fmt(hi, '+.4f')}]")
    if _finite(lo) and lo > 0:
        return f"Learned routing beat the lookup table on this data: {figures}."
    if _finite(hi) and hi < 0:
        return (f"Learned routing did not beat the lookup table on this data: the better prior is ahead of "
                f"the best learned router ({figures}).")
    return (f"Learned routing did not clearly beat the lookup table on this data: the interval of the best "
            f"learned router's gain includes 0 ({figures}).")


def routers_table() -> dict:
    """Every registered router: name, family, default hyperparameters, first line of its module doc."""
    import inspect

    from routecast.core.registry import get_router_class, router_names

    rows = []
    for name in router_names():
        cls = get_router_class(name)
        doc = (inspect.getdoc(inspect.getmodule(cls)) or "").split("\n\n")[0].replace("\n", " ")
        defaults = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
                    if p.name != "self" and p.default is not inspect.Parameter.empty}
        rows.append((name, cls.family, ", ".join(f"{k}={v!r}" for k, v in defaults.items()), doc))
    return {"title": "routers", "columns": ("name", "family", "hyperparameters", "what it does"), "rows": rows}


def tune_table(result) -> dict:
    """Every trial of a study (the best one highlighted) with its parameters and fit time."""
    names = sorted({k for t in result.trials for k in t["params"]})
    best_number = next((t["number"] for t in result.trials
                        if t["state"] == "COMPLETE" and t["value"] == result.best_value), None)
    rows, highlight = [], None
    for t in result.trials:
        if t["number"] == best_number:
            highlight = len(rows)
        rows.append([f"{t['number']}{' (default)' if t['default'] else ''}", t["state"].lower(), fmt_short(t["value"]),
                     *[fmt_short(t["params"].get(n)) for n in names], fmt_short(t.get("fit_seconds"), 2)])
    columns = ["trial", "state", "value", *names, "fit s"]
    return {"title": f"{result.router}: {result.objective} on the validation split ({result.direction}), "
                     f"study {result.study_name}",
            "columns": columns, "rows": rows, "right": [c for c in columns if c != "state"], "highlight": highlight}


def tune_footer(result, config_path: Path) -> list[str]:
    default = "" if result.default_value is None else f" (defaults: {fmt_short(result.default_value)})"
    return [f"best {result.objective} = {fmt_short(result.best_value)}{default} with {result.best_params}; "
            f"{result.n_trials_run} new trial(s), {result.n_trials_total} in the study, {result.seconds:.1f} s",
            f"wrote {config_path}  ->  routecast train --config {config_path} ..."]


#: how calibration met a budget, as the table title says it (routecast.core.curve's spend modes)
SPEND_WORDS = {"mean": "mean validation spend",
               "upper": "upper end of a bootstrap interval of the validation spend (conservative)"}


def calibration_table(result: dict[str, Any], run_dir: Path) -> dict:
    """Requested vs achieved cost, quality and strong share on the calibration (val) and test splits."""
    metric = result["metric"]
    request = ", ".join(f"{k}={v}" for k, v in result["request"].items())
    columns = ("split", "prompts", f"requested {metric}", "achieved cost $/query", "achieved quality", "strong share")
    rows = []
    for label, key in (("calibration (val)", "calibration_split"), ("test", "test_split")):
        point = result[key]
        rows.append((label, str(point["n_prompts"]), fmt_short(result["requested"], 6), fmt_short(point["cost"], 6),
                     fmt_short(point["quality"]), fmt_short(point["strong_share"])))
    spend = f"; budget met by the {SPEND_WORDS[result.get('spend', 'mean')]}" if "budget" in result["request"] else ""
    return {"title": f"calibration of {run_dir} ({request}; lam = {result['lam']:.6g}{spend})", "columns": columns,
            "rows": rows, "right": columns}


def calibration_footer(result: dict[str, Any], run_dir: Path) -> str:
    lines = [f"strong model: {result['strong_model']}; calibration saved in {result['checkpoint']} "
             f"and {run_dir / 'calibration.json'}"]
    cal = result.get("calibration_split", {})
    if "cost_upper" in cal:
        lines.append(f"conservative: the upper end of the validation spend's interval is {cal['cost_upper']:.6g} "
                     f"$/query (mean {cal['cost']:.6g}) for a budget of {result['requested']:.6g}")
    lines += [f"note: {note}" for note in result.get("notes", [])]
    if result.get("config_line"):
        lines += ["operating point (server config line):", result["config_line"]]
    return "\n".join(lines)
