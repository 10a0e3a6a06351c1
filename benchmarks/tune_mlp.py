"""Does tuning pay? optuna over the mlp router's search space on llmrouter_9models.

    nice -n 5 .venv/bin/python benchmarks/tune_mlp.py [--trials 20] [--encoder auto|minilm|hashing:dim=512]

Runs ``routecast.training.tune.tune`` (TPE, seeded, Lightning pruning on the mlp's internal
val_loss; trial 0 = the router's defaults) and reports the validation AIQ of the default
configuration vs the best one, and, for information only (tuning never reads it), the test AIQ
of both refitted, each on the cost range of the single models. ``--encoder auto`` uses MiniLM when
the embeddings of (nearly) all prompts are already in the default embedding cache, else the
hashing encoder (encoding 6k prompts with MiniLM would cost ~75 s of a shared 2-core machine).

Writes benchmarks/results/tune_mlp.json and tune_mlp.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

DATA = "llmrouter_9models"


def pick_encoder(requested: str) -> tuple[str, str]:
    """(encoder spec, why) — MiniLM only if its embeddings of this log are already cached."""
    if requested != "auto":
        return requested, "requested"
    from routecast.data import load_log
    from routecast.router.embedding_cache import EmbeddingCache, text_key
    from routecast.router.encoders import get_encoder

    try:
        cache = EmbeddingCache(get_encoder("minilm"))
        cache.refresh()
    except Exception as exc:  # no MiniLM available at all
        return "hashing:dim=512", f"MiniLM unavailable ({type(exc).__name__})"
    prompts = list(load_log(DATA).prompts)
    cached = sum(text_key(p) in cache._vectors for p in prompts)
    share = cached / max(len(prompts), 1)
    if share >= 0.95:
        return "minilm", f"MiniLM embeddings cached for {share:.0%} of prompts"
    return "hashing:dim=512", f"MiniLM embeddings cached for only {share:.0%} of prompts"


def test_aiq(name: str, params: dict, prepared) -> float:
    """AIQ on the test split (single models' cost range), for the report only."""
    from routecast.evaluation import metrics
    from routecast.evaluation.evaluate import sweep_router
    from routecast.router.pipeline import fit_router, split_embeddings
    from routecast.evaluation.evaluate import single_model_cost_range

    router, _ = fit_router(name, params, prepared)
    curve = sweep_router(router, prepared.test, embeddings=split_embeddings(router, prepared, "test"))
    lo, hi = single_model_cost_range(prepared.test, router.costs_)
    return metrics.aiq(curve.cost, curve.quality, lo, hi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--encoder", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1800.0, help="stop starting trials after S seconds")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    from routecast.atomic import write_json, write_text
    from routecast.router.pipeline import prepare
    from routecast.training.tune import tune

    encoder, why = pick_encoder(args.encoder)
    print(f"encoder: {encoder} ({why})", flush=True)
    t0 = time.perf_counter()
    prepared = prepare(DATA, encoder=encoder, seed=args.seed)
    for split in ("train", "val"):
        prepared.embeddings(split)
    embed_seconds = time.perf_counter() - t0

    start = time.perf_counter()
    result = tune(prepared, "mlp", n_trials=args.trials, seed=args.seed, timeout=args.timeout)
    tune_seconds = time.perf_counter() - start
    print(f"tuned in {tune_seconds:.0f} s: default {result.default_value} -> best {result.best_value:.4f}",
          flush=True)

    from routecast.core.registry import get_router_class
    from routecast.training.tune import _default_params

    defaults = _default_params(get_router_class("mlp"), get_router_class("mlp").search_space) or {}
    test_default = test_aiq("mlp", defaults, prepared)
    test_best = test_aiq("mlp", result.best_params, prepared)
    states = {}
    for t in result.trials:
        states[t["state"]] = states.get(t["state"], 0) + 1
    report = {
        "data": DATA, "encoder": encoder, "encoder_reason": why, "router": "mlp", "objective": "aiq",
        "split": {"val": 0.1, "test": 0.2, "seed": args.seed,
                  "n_train": prepared.train.n_prompts, "n_val": prepared.val.n_prompts,
                  "n_test": prepared.test.n_prompts},
        "n_trials": result.n_trials_total, "trial_states": states,
        "val_aiq_default": result.default_value, "val_aiq_best": result.best_value,
        "val_aiq_gain": None if result.default_value is None else result.best_value - result.default_value,
        "test_aiq_default": test_default, "test_aiq_best": test_best,
        "default_params": defaults, "best_params": result.best_params,
        "tune_seconds": tune_seconds, "embed_seconds": embed_seconds,
        "mean_fit_seconds": sum(t["fit_seconds"] or 0 for t in result.trials) / max(len(result.trials), 1),
        "trials": result.trials,
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count(),
                    "note": "2 shared cores, other jobs running"},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "tune_mlp.json", report)
    fmt = lambda x: "—" if x is None else f"{x:.4f}"  # noqa: E731
    lines = [
        "# Tuning the mlp router (optuna TPE + pruning) on llmrouter_9models", "",
        f"Encoder: `{encoder}` ({why}). Split 70/10/20 (seed {args.seed}): "
        f"{prepared.train.n_prompts} train / {prepared.val.n_prompts} val / {prepared.test.n_prompts} test prompts. "
        f"{result.n_trials_total} trials ({', '.join(f'{v} {k.lower()}' for k, v in states.items())}), "
        f"{tune_seconds:.0f} s; objective: AIQ on the validation split (single models' cost range).", "",
        "| config | val AIQ | test AIQ (info only) |", "|---|---:|---:|",
        f"| defaults | {fmt(result.default_value)} | {fmt(test_default)} |",
        f"| best of {result.n_trials_total} trials | {fmt(result.best_value)} | {fmt(test_best)} |", "",
        f"Best params: `{json.dumps(result.best_params, sort_keys=True)}`", "",
        f"Default params: `{json.dumps(defaults, sort_keys=True)}`", "",
    ]
    write_text(args.out / "tune_mlp.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
