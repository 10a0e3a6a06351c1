"""Why ``mf`` keeps a plain torch loop for one process: its fit time on the plain loop, on Lightning in
one process, and on Lightning with 2 DDP processes (ddp_spawn, gloo), with the held-out AIQ of each.

All rows fit the same router (default hyperparameters unless ``--epochs``) on the train split of
llmrouter_9models with precomputed embeddings (``--encoder``, default static), measured in one run
on this machine; the load average is recorded next to each row (the 2 cores are shared, so
absolute times are upper bounds). Writes benchmarks/results/mf_paths.{json,md}.

    .venv/bin/python benchmarks/mf_paths.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="static")
    parser.add_argument("--epochs", type=int, default=None, help="mf epochs (default: the router's)")
    parser.add_argument("--n-boot", type=int, default=200)
    args = parser.parse_args()

    from routecast.atomic import write_json, write_text
    from routecast.evaluation.evaluate import evaluate, sweep_router
    from routecast.router.mf import MatrixFactorizationRouter
    from routecast.router.pipeline import prepare

    class LightningInProcess(MatrixFactorizationRouter):
        """mf on the Lightning path in this process (strategy auto): only to time that path."""

        def uses_lightning(self) -> bool:
            return True

    prepared = prepare("llmrouter_9models", encoder=args.encoder)
    X_train, X_test = prepared.embeddings("train"), prepared.embeddings("test")
    params = {"encoder": args.encoder, **({"epochs": args.epochs} if args.epochs else {})}
    variants = [("plain loop, 1 process", MatrixFactorizationRouter, {}),
                ("Lightning, 1 process", LightningInProcess, {}),
                ("Lightning ddp_spawn, 2 processes", MatrixFactorizationRouter, {"devices": 2, "strategy": "ddp_spawn"})]
    rows = []
    for label, cls, extra in variants:
        before = round(os.getloadavg()[0], 2)
        router = cls(**params).set_trainer_options(**extra)
        start = time.perf_counter()
        router.fit(prepared.train, embeddings=X_train)
        seconds = time.perf_counter() - start
        curve = sweep_router(router, prepared.test, embeddings=X_test)
        score = evaluate({"mf": curve}, prepared.test, n_boot=args.n_boot).routers["mf"]
        rows.append({"path": label, "fit_seconds": round(seconds, 2), "aiq": round(score.aiq, 4),
                     "aiq_ci": [round(score.aiq_ci[0], 4), round(score.aiq_ci[1], 4)],
                     "load_before": before, "load_after": round(os.getloadavg()[0], 2)})
        print(json.dumps(rows[-1]), flush=True)
    router = MatrixFactorizationRouter(**params)
    result = {"meta": {"data": "llmrouter_9models", "train_prompts": prepared.train.n_prompts,
                       "test_prompts": prepared.test.n_prompts, "models": prepared.train.n_models,
                       "encoder": args.encoder, "epochs": router.epochs, "batch_size": router.batch_size,
                       "dim": router.dim, "cpus": os.cpu_count(), "python": platform.python_version()},
              "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "mf_paths.json", result)
    meta = result["meta"]
    md = ["# mf: plain loop vs Lightning", "",
          f"llmrouter_9models, {meta['train_prompts']} train / {meta['test_prompts']} test prompts x "
          f"{meta['models']} models, {meta['encoder']} embeddings precomputed, epochs {meta['epochs']}, batch "
          f"{meta['batch_size']}, dim {meta['dim']}; {meta['cpus']} shared cores (the load average beside "
          "each row: other jobs ran too, so compare rows, not absolute times). AIQ on the test split with a 95% "
          f"bootstrap interval ({args.n_boot} resamples of the test prompts).", "",
          "| path | fit seconds | held-out AIQ (95% CI) | load before/after |", "|---|---:|---|---|"]
    for r in rows:
        md.append(f"| {r['path']} | {r['fit_seconds']} | {r['aiq']} ({r['aiq_ci'][0]}-{r['aiq_ci'][1]}) | "
                  f"{r['load_before']}/{r['load_after']} |")
    plain, light = rows[0]["fit_seconds"], rows[1]["fit_seconds"]
    md += ["", f"Lightning in one process costs {light - plain:+.2f} s ({light / max(plain, 1e-9):.1f}x the plain "
           "loop) for the same objective, so one CPU process keeps the plain loop; DDP (and GPUs) go through "
           "Lightning.", ""]
    write_text(RESULTS / "mf_paths.md", "\n".join(md))


if __name__ == "__main__":
    main()
