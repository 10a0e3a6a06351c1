"""Budget pacing under drift: does ``routecast serve --pace-budget`` keep the spend at the budget
when the request mix moves, and what quality does it keep?

Set-up: a ``linear`` router trained on the train split of llmrouter_9models (built-in data),
calibrated on its validation split, with a budget of ``--budget`` USD/query (the static point: the
calibrated lam of that budget, what ``--budget`` / an operating point gives today). A stream of
``--requests`` requests is drawn (seeded, with replacement) from the test split: the first half
from the cheaper half of the benchmarks (by mean logged cost per prompt), the second half from the
dearer half. Each request is routed with the router's decision rule at the current lam
(routecast.core.policy.decide on its predicted qualities and expected costs) and costs the
logged cost of the chosen model on that prompt; its quality is the logged score. No HTTP: the
same controller class the server uses (routecast.core.pacing.BudgetPacer, built as the server
builds it with ``BudgetPacer.for_costs``) observes each realised cost and sets the next lam.

Reported: the realised mean cost of every window of ``--window`` requests after the first
``--warmup``, relative to the budget, for the static point and the paced server; the share of
those windows within +-5 %; and the mean quality of the stream after the warm-up for both.

    .venv/bin/python benchmarks/pacing.py [--budget 0.0001] [--requests 20000]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from routecast.atomic import write_json, write_text  # noqa: E402

DATA = "llmrouter_9models"
ENCODER = "static"
TOLERANCE = 0.05


def setup(encoder: str, seed: int):
    """(router, curve, test log restricted to complete rows, predicted qualities of its prompts)."""
    from routecast.core.curve import Curve
    from routecast.core.registry import make_router
    from routecast.data import load_log
    from routecast.data.splits import split_log

    splits = split_log(load_log(DATA), val=0.1, test=0.3, seed=seed)
    router = make_router("linear", encoder=encoder).fit(splits.train).calibrate(splits.val)
    test = splits.test.subset(np.flatnonzero(splits.test.complete_rows()))
    quality = router.predict_quality(list(test.prompts))
    return router, Curve.from_dict(router.calibration_), test, quality


def drifting_stream(test, n: int, seed: int) -> tuple[np.ndarray, list[str], list[str]]:
    """Row indices of ``n`` requests: cheap benchmarks first, dear ones from the middle on."""
    bench = test.meta["benchmark"].to_numpy()
    per_prompt = np.nanmean(test.costs, axis=1)
    names = sorted(set(bench), key=lambda b: per_prompt[bench == b].mean())
    cheap, dear = names[: len(names) // 2], names[len(names) // 2:]
    rng = np.random.default_rng(seed)
    first = rng.choice(np.flatnonzero(np.isin(bench, cheap)), size=n // 2)
    second = rng.choice(np.flatnonzero(np.isin(bench, dear)), size=n - n // 2)
    return np.concatenate([first, second]), cheap, dear


def simulate(quality, costs, scores, expected, stream, *, lam: float | None = None, pacer=None):
    """(cost, score, lam) per request: a fixed ``lam``, or the ``pacer``'s lam of the moment."""
    from routecast.core.policy import decide

    n = len(stream)
    out_cost, out_score, out_lam = np.empty(n), np.empty(n), np.empty(n)
    if pacer is None:
        choice = decide(quality[stream], expected, lam)
        return costs[stream, choice], scores[stream, choice], np.full(n, lam)
    for t, row in enumerate(stream):
        current = pacer.lam_
        j = int(decide(quality[row: row + 1], expected, current)[0])
        out_cost[t], out_score[t], out_lam[t] = costs[row, j], scores[row, j], current
        pacer.observe(float(costs[row, j]))
    return out_cost, out_score, out_lam


def windows(cost: np.ndarray, budget: float, window: int, warmup: int) -> list[float]:
    """Relative deviation from the budget of every whole window after the warm-up."""
    return [float(cost[s: s + window].mean() / budget - 1) for s in range(warmup, len(cost) - window + 1, window)]


def summary(cost, score, lam, budget, window, warmup) -> dict:
    dev = windows(cost, budget, window, warmup)
    return {"window_deviation": [round(d, 4) for d in dev], "max_abs_deviation": round(max(map(abs, dev)), 4),
            "windows_within_5pct": f"{sum(abs(d) <= TOLERANCE for d in dev)}/{len(dev)}",
            "mean_cost": float(cost[warmup:].mean()), "mean_quality": round(float(score[warmup:].mean()), 4),
            "lam_first_last": [float(lam[warmup]), float(lam[-1])]}


def to_markdown(r: dict) -> str:
    s, p = r["static"], r["paced"]
    lines = [
        "# Budget pacing under drift",
        "",
        f"{r['data']}, linear router ({r['encoder']} encoder) calibrated on the validation split to "
        f"{r['budget']} USD/query; {r['requests']} requests from the test split, cheap benchmarks "
        f"({', '.join(r['cheap'])}) first, dear ones ({', '.join(r['dear'])}) from request {r['requests'] // 2} on. "
        f"Windows of {r['window']} requests after the first {r['warmup']}. Controller: "
        f"routecast.core.pacing.BudgetPacer {r['pacer']}.",
        "",
        "| | windows within +-5 % | max abs deviation | mean cost (USD) | mean quality |",
        "|---|---|---|---|---|",
        f"| static calibrated point (lam {s['lam_first_last'][0]:.4g}) | {s['windows_within_5pct']} | "
        f"{s['max_abs_deviation']:.1%} | {s['mean_cost']:.4g} | {s['mean_quality']:.4f} |",
        f"| paced (`serve --pace-budget {r['budget']}`) | {p['windows_within_5pct']} | {p['max_abs_deviation']:.1%} | "
        f"{p['mean_cost']:.4g} | {p['mean_quality']:.4f} |",
        "",
        "Deviation of each window from the budget:",
        "",
        "| window | static | paced |",
        "|---|---|---|",
    ]
    for i, (a, b) in enumerate(zip(s["window_deviation"], p["window_deviation"])):
        start = r["warmup"] + i * r["window"]
        lines.append(f"| {start}-{start + r['window']} | {a:+.1%} | {b:+.1%} |")
    lines += ["", f"{r['seconds']} s on {r['machine']}.", ""]
    return "\n".join(lines)


def main() -> None:
    from routecast.core.pacing import BudgetPacer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=1e-4)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--encoder", default=ENCODER)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    started = time.time()
    router, curve, test, quality = setup(args.encoder, args.seed)
    stream, cheap, dear = drifting_stream(test, args.requests, args.seed)
    expected = np.asarray(router.costs_, dtype=np.float64)
    static_lam = float(curve.lams[curve.index_for(budget=args.budget)])
    static = simulate(quality, test.costs, test.scores, expected, stream, lam=static_lam)
    pacer = BudgetPacer.for_costs(args.budget, expected, curve=curve).start()
    paced = simulate(quality, test.costs, test.scores, expected, stream, pacer=pacer)
    results = {"data": DATA, "encoder": args.encoder, "budget": args.budget, "requests": args.requests,
               "window": args.window, "warmup": args.warmup, "cheap": cheap, "dear": dear,
               "pacer": {"step": pacer.step, "max_error": pacer.max_error, "lam_start": pacer.lam,
                         "lam_min": pacer.lam_min, "lam_max": pacer.lam_max},
               "static": summary(*static, args.budget, args.window, args.warmup),
               "paced": summary(*paced, args.budget, args.window, args.warmup),
               "seconds": round(time.time() - started, 1), "machine": platform.platform()}
    print(to_markdown(results))
    write_json(args.out / "pacing.json", results)
    write_text(args.out / "pacing.md", to_markdown(results))


if __name__ == "__main__":
    main()
