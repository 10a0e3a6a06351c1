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


#: learned routers labelled in the cost-quality plot (best AIQ first), besides every prior, the
#: best policy of each other group and the zero router
LABELLED = 3
#: colour maps per group: shades within a group, so a family reads as one colour
GROUP_CMAPS = {"learned": "Blues", "prior": "Oranges", "cascade": "Purples", "baseline": "Greys"}
GROUP_TITLES = {"learned": "learned routers", "prior": "priors (lookup tables)", "cascade": "cascades / ensembles",
                "baseline": "baselines"}


def policy_group(label: str, family: str) -> str:
    """Which group a policy is drawn in: learned (a1), prior, cascade, or baseline."""
    from routecast.evaluation.priors import PRIOR_LABELS

    if label in PRIOR_LABELS:
        return "prior"
    if family == "a1":
        return "learned"
    if family in ("cascade", "c1", "c2") or label.startswith("cascade"):
        return "cascade"
    return "baseline"


def quality_band(curve, *, n_boot: int = 100, seed: int = 0, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise percentile bootstrap interval of each operating point's mean quality (the
    same prompt draws for every point), (k,) low and high."""
    _, quality = curve.per_prompt()
    n = quality.shape[1]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    means = np.stack([np.nanmean(quality[:, idx], axis=1) for idx in draws], axis=1)  # (k, n_boot)
    lo, hi = np.nanquantile(means, [alpha / 2, 1 - alpha / 2], axis=1)
    return lo, hi


def _spread_labels(ys: np.ndarray, gap: float) -> np.ndarray:
    """Label heights at least ``gap`` apart (in the given order, pushed upwards), so the labels
    of models at about the same cost and quality do not print over each other."""
    order = np.argsort(ys, kind="stable")
    out = np.array(ys, dtype=float)
    for prev, cur in zip(order[:-1], order[1:]):
        out[cur] = max(out[cur], out[prev] + gap)
    return out


def plot_cost_quality(result, path) -> Path:
    """The cost-quality plane, readable with many policies:

    * policies coloured by group (learned routers blue, priors orange, cascades purple,
      baselines grey; shades within a group), hulls from their cheapest to their best point and
      then dotted flat to the end of the cost range (as AIQ counts them);
    * the best :data:`LABELLED` learned routers by AIQ, every prior, the best cascade and baseline
      and the zero router are labelled in a legend beside the plot (nothing drawn over the data);
      the others are thin and unlabelled;
    * a one-point policy is a marker, never a line; single models are black squares, named;
    * the leading learned router, prior and cascade get a 95% band (pointwise bootstrap over
      test prompts), so whether the learned router clears the prior can be seen.
    Log cost axis when costs span over two decades.
    """
    plt = _pyplot()
    path = Path(path)
    fig = cost_quality_figure(result)
    try:
        _save(fig, path)
    finally:
        plt.close(fig)
    return path


def cost_quality_figure(result):
    """The figure :func:`plot_cost_quality` saves (the caller closes it)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 6.5), dpi=110)
    try:
        single_labels = set(result.single_models)
        ranked = [r["label"] for r in result.leaderboard() if r["label"] not in single_labels]
        routed = {k: c for k, c in result.curves.items() if k not in single_labels}
        groups = {label: policy_group(label, curve.family) for label, curve in routed.items()}
        leaders = {}  # the best-ranked policy of each group
        for label in ranked:
            leaders.setdefault(groups.get(label), label)
        leaders.pop(None, None)
        learned = [label for label in ranked if groups.get(label) == "learned"][:LABELLED]
        labelled = set(learned) | set(leaders.values()) | {label for label, g in groups.items() if g == "prior"}
        banded = {leaders[g] for g in ("learned", "prior", "cascade") if g in leaders}
        x_end = result.cost_range[1]
        handles: dict[str, list] = {group: [] for group in GROUP_CMAPS}
        for group, cmap_name in GROUP_CMAPS.items():
            members = sorted((label for label in routed if groups[label] == group),
                             key=lambda label: (label not in ranked, ranked.index(label) if label in ranked else 0))
            cmap = plt.get_cmap(cmap_name)
            for i, label in enumerate(members):
                curve = routed[label]
                color = cmap(0.85 - 0.5 * i / max(len(members) - 1, 1))
                shown = label in labelled
                score = result.routers.get(label)
                aiq = f" (AIQ {score.aiq:.3f})" if score is not None and np.isfinite(score.aiq) else ""
                text = f"{label}{aiq}" if shown else None
                if curve.n_points == 1:  # one operating point: a marker, not a full-width line
                    h = ax.scatter(curve.cost, curve.quality, marker="D", s=36 if shown else 18, color=color,
                                   zorder=4, label=text, alpha=1.0 if shown else 0.5)
                else:
                    ax.scatter(curve.cost, curve.quality, s=8, color=color, alpha=0.35 if shown else 0.15,
                               linewidths=0)
                    hc, hq = metrics.upper_hull(curve.cost, curve.quality)
                    if not hc.size:
                        continue
                    (h,) = ax.plot(hc, hq, color=color, lw=2.0 if shown else 0.8, alpha=1.0 if shown else 0.45,
                                   label=text, zorder=3 if shown else 2)
                    if hc[-1] < x_end:
                        ax.plot([hc[-1], x_end], [hq[-1], hq[-1]], color=color, lw=1.0, ls=":",
                                alpha=0.8 if shown else 0.3)
                    if label in banded:
                        estimated = result.routers[label].meta.get("quality_ci")  # a traffic log's widened intervals
                        lo, hi = (np.asarray(estimated, dtype=float).T if estimated is not None
                                  else quality_band(curve, seed=result.seed))
                        lc, lq = metrics.upper_hull(curve.cost, lo)
                        uc, uq = metrics.upper_hull(curve.cost, hi)
                        xs = np.union1d(lc, uc)
                        ax.fill_between(xs, metrics.interpolate_hull(lc, lq, xs), metrics.interpolate_hull(uc, uq, xs),
                                        color=color, alpha=0.15, linewidth=0, zorder=1)
                if shown:
                    handles[group].append(h)
        sc = np.array([v["cost"] for v in result.single_models.values()])
        sq = np.array([v["quality"] for v in result.single_models.values()])
        ax.scatter(sc, sq, marker="s", s=30, color="black", zorder=5)
        zc, zq = metrics.zero_router_points(sc, sq)
        zero = None
        if zc.size:
            (zero,) = ax.plot(np.append(zc, x_end), np.append(zq, zq[-1]), color="black", ls="--", lw=1.2,
                              label=f"zero router (AIQ {result.zero_router_aiq:.3f})", zorder=3)
        log_x = use_log_cost_axis(result.cost_range)
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(f"mean cost ({result.cost_unit})")
        ax.set_ylabel("mean quality")
        ax.set_title(f"Cost vs quality on {result.n_prompts} test prompts (bands: 95% bootstrap intervals of "
                     "the leading learned router, prior and cascade)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.margins(x=0.08, y=0.06)
        _name_single_models(ax, result.single_models, sc, sq, log_x)
        legend = []
        for group, items in handles.items():
            if items:
                legend.append((GROUP_TITLES[group], items))
        entries, names = [], []
        for title, items in legend:
            entries.append(ax.plot([], [], " ")[0])
            names.append(title)
            entries += items
            names += [h.get_label() for h in items]
        if zero is not None:
            entries.append(zero)
            names.append(zero.get_label())
        ax.legend(entries, names, fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    except BaseException:
        plt.close(fig)
        raise
    return fig


def _name_single_models(ax, single_models, sc, sq, log_x: bool) -> None:
    """Name each single model beside its square (to the left near the right edge, so no name is
    cut off); names of models at about the same cost are spread vertically, never overprinted."""
    from matplotlib.transforms import offset_copy

    if not len(sc):
        return
    x = np.log10(np.maximum(sc, 1e-300)) if log_x else np.asarray(sc, dtype=float)
    span = (x.max() - x.min()) or 1.0
    y_lo, y_hi = ax.get_ylim()
    placed = np.array(sq, dtype=float)
    column = np.round((x - x.min()) / span * 40)  # models within 1/40 of the cost axis share a column
    for key in np.unique(column):
        members = np.flatnonzero(column == key)
        placed[members] = _spread_labels(np.asarray(sq)[members], 0.032 * (y_hi - y_lo))
    right = offset_copy(ax.transData, fig=ax.figure, x=6, y=0, units="points")
    left = offset_copy(ax.transData, fig=ax.figure, x=-6, y=0, units="points")
    for i, name in enumerate(single_models):
        near_right = (x[i] - x.min()) / span > 0.7
        ax.text(sc[i], placed[i], name, transform=left if near_right else right, fontsize=6.5, va="center",
                ha="right" if near_right else "left")
    ax.set_ylim(y_lo, max(y_hi, float(placed.max()) + 0.02 * (y_hi - y_lo)))


def _save(fig, path: Path) -> None:
    """Lay the figure out (legend beside the axes included) and write it atomically."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", bbox_inches="tight")


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
        _save(fig, path)
    finally:
        plt.close(fig)
    return path
