"""Benchmark: routers trained on a REAL pairwise preference log, compared by win rate.

The log: AlpacaEval 2.0 (/work/shared/data/alpaca_eval_gpt4turbo_judge, CC BY-NC 4.0): 805 prompts,
each system's output judged by GPT-4 Turbo against the GPT-4 Turbo baseline output. Every row
becomes one judged pair (system vs ``gpt4_1106_preview``), the judge's preference deciding the
winner (``score`` = P(system beats baseline): > 0.5 system, < 0.5 baseline, = 0.5 tie). Six models
with list prices (USD per million input/output tokens at the time of the log, for illustration).

``routecast evaluate`` on that file (mf and sw-ranking, static encoder, the default seeded split)
twice: against the baseline (every choice judged: every pair involves it) and against
``claude-2.1`` (choices of a third model have no pair with it: counted as "not judged").

Writes benchmarks/results/pairwise.{json,md}. The machine has 2 shared cores.

    nice -n 5 .venv/bin/python benchmarks/pairwise.py [--encoder static] [--n-boot 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from routecast.atomic import write_json, write_text

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SOURCE = Path("/work/shared/data/alpaca_eval_gpt4turbo_judge/data.parquet")
BASELINE = "gpt4_1106_preview"
#: USD per million input / output tokens (list prices around the log's time; illustrative)
PRICES = {BASELINE: [10.0, 30.0], "claude-2.1": [8.0, 24.0], "claude-instant-1.2": [0.8, 2.4],
          "gpt-3.5-turbo-1106": [1.0, 2.0], "Mixtral-8x7B-Instruct-v0.1_concise": [0.6, 0.6],
          "gpt35_turbo_instruct": [1.5, 2.0]}


def preference_csv(path: Path) -> int:
    import numpy as np
    import pandas as pd

    frame = pd.read_parquet(SOURCE, columns=["prompt_id", "prompt", "model", "score"])
    frame = frame[frame.model.isin(PRICES) & (frame.model != BASELINE) & frame.score.notna()]
    winner = np.where(frame.score > 0.5, frame.model, np.where(frame.score < 0.5, BASELINE, "tie"))
    pairs = pd.DataFrame({"prompt_id": frame.prompt_id, "prompt": frame.prompt, "model_a": frame.model,
                          "model_b": BASELINE, "winner": winner})
    pairs.to_csv(path, index=False)
    return len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="static")
    parser.add_argument("--n-boot", type=int, default=200)
    args = parser.parse_args()
    from routecast.training.runs import evaluate_to_folder

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_pairs = preference_csv(tmp / "prefs.csv")
        (tmp / "prices.json").write_text(json.dumps(PRICES))
        for reference in (BASELINE, "claude-2.1"):
            start = time.perf_counter()
            run = evaluate_to_folder(str(tmp / "prefs.csv"), "mf,sw-ranking", out=tmp / reference,
                                     encoder=args.encoder, prices=str(tmp / "prices.json"), reference=reference,
                                     n_boot=args.n_boot, track=False)
            results[reference] = {"seconds": round(time.perf_counter() - start, 1), **run.pairwise.to_dict(),
                                  "markdown": (tmp / reference / "report.md").read_text()}
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "pairwise.json", {"source": str(SOURCE), "pairs": n_pairs, "encoder": args.encoder,
                                           "prices_usd_per_mtok": PRICES,
                                           "runs": {k: {kk: vv for kk, vv in v.items() if kk != "markdown"}
                                                    for k, v in results.items()}})
    lines = ["# Pairwise benchmark: AlpacaEval 2.0 judged pairs", "",
             f"{n_pairs} judged pairs (5 systems vs {BASELINE}, GPT-4 Turbo judge) from `{SOURCE}`; "
             f"encoder `{args.encoder}`; routers mf and sw-ranking, default split (val 0.1, test 0.2, seed 0); "
             "illustrative list prices. Produced by `benchmarks/pairwise.py`.", ""]
    for reference, result in results.items():
        body = result["markdown"].split("\n", 2)[2]  # drop the report's own title
        lines += [f"## Reference {reference} ({result['seconds']} s)", "", body.replace("\n## ", "\n### "), ""]
    write_text(RESULTS / "pairwise.md", "\n".join(lines))
    print((RESULTS / "pairwise.md").read_text())


if __name__ == "__main__":
    main()
