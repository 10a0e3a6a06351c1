"""Pictures of an evaluation: the cost-quality plane and where each router sends its calls.

matplotlib is imported inside the functions (headless Agg backend) so importing routecast
stays light; files are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from routecast.atomic import atomic_path
from routecast.evaluation import metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def use_log_cost_axis(cost_range) -> bool:
    """Log cost axis when the compared costs span more than two decades (else linear, which
    is how AIQ integrates)."""
    lo, hi = cost_range
    return bool(lo > 0 and hi / lo > 100)


def plot_cost_quality(result, path) -> Path:
    """Every curve's operating points (dots) and hull (line), single models as labelled
    squares, the zero router's hull dashed. Log cost axis when costs span over two decades."""
    plt = _pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    try:
        cmap = plt.get_cmap("tab10" if len(result.curves) <= 10 else "tab20")
        single_labels = set(result.single_models)
        routed = [(k, c) for k, c in result.curves.items() if k not in single_labels]
        for i, (label, curve) in enumerate(routed):
            color = cmap(i % cmap.N)
            ax.scatter(curve.cost, curve.quality, s=10, color=color, alpha=0.45, linewidths=0)
            hc, hq = metrics.upper_hull(curve.cost, curve.quality)
            if hc.size:
                xs = np.append(hc, result.cost_range[1])
                ys = np.append(hq, hq[-1])
                score = result.routers.get(label)
                aiq = f" (AIQ {score.aiq:.3f})" if score is not None and np.isfinite(score.aiq) else ""
                ax.plot(xs, ys, color=color, lw=1.8, label=f"{label}{aiq}")
        sc = np.array([v["cost"] for v in result.single_models.values()])
        sq = np.array([v["quality"] for v in result.single_models.values()])
        ax.scatter(sc, sq, marker="s", s=36, color="black", zorder=5, label="single models")
        for name, x, y in zip(result.single_models, sc, sq):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
        zc, zq = metrics.zero_router_points(sc, sq)
        if zc.size:
            ax.plot(np.append(zc, result.cost_range[1]), np.append(zq, zq[-1]), color="gray", ls="--",
                    lw=1.2, label=f"zero router (AIQ {result.zero_router_aiq:.3f})")
        if use_log_cost_axis(result.cost_range):
            ax.set_xscale("log")
        ax.set_xlabel(f"mean cost ({result.cost_unit})")
        ax.set_ylabel("mean quality")
        ax.set_title(f"Cost vs quality on {result.n_prompts} test prompts")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path


def plot_call_shares(result, path) -> Path:
    """Stacked bars: the share of calls each router sends to each model at its best-quality
    (lam = 0) setting, single models excluded."""
    plt = _pyplot()
    path = Path(path)
    rows = [r for r in result.leaderboard() if r["family"] != "single"]
    models = list(result.models)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.8 * len(rows) + 5), 5), dpi=110)
    try:
        cmap = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
        bottom = np.zeros(len(rows))
        x = np.arange(len(rows))
        for j, model in enumerate(models):
            share = np.array([r["call_shares"].get(model) or 0.0 for r in rows])
            ax.bar(x, share, bottom=bottom, color=cmap(j % cmap.N), label=model, width=0.7)
            bottom += share
        ax.set_xticks(x, [r["label"] for r in rows], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.0)
        ax.set_ylabel("share of calls at lam = 0")
        ax.set_title("Call shares at the best-quality setting (lam = 0)", fontsize=10)
        ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path
