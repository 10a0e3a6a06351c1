"""Small shared bits for the data tests: tiny long-format frames and a writer per file format."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests._support.paths import SHARED_DATA  # noqa: F401 (re-exported for the data tests)

#: every shared folder the loaders must read
FOLDERS = ["routellm_strong_weak", "llmrouter_9models", "routerdc_7models", "arena_bench_v1",
           "alpaca_eval_gpt4turbo_judge", "routerarena_2models"]


def write(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as csv / jsonl / json / parquet according to the suffix."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")), encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(frame.to_dict("records")), encoding="utf-8")
    else:
        frame.to_parquet(path, index=False)
    return path


def small_long() -> pd.DataFrame:
    return pd.DataFrame({
        "prompt_id": ["p1", "p1", "p2", "p2", "p3", "p3"],
        "prompt": ["What is 2+2?", "What is 2+2?", "Capital of France?", "Capital of France?", "Name a prime.", "Name a prime."],
        "model": ["small", "big"] * 3,
        "score": [0.0, 1.0, 1.0, 1.0, 0.5, 0.25],
        "cost": [0.001, 0.01, 0.001, 0.01, 0.002, 0.02],
        "benchmark": ["math", "math", "geo", "geo", "math", "math"],
    })
