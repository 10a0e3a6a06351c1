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


def traffic_chat_log(path: Path, *, n: int = 300, seed: int = 0, propensity: bool = False) -> dict:
    """Write a one-model-per-request chat log (as a product logs its traffic) and return its truth.

    Three models answer prompts of three topics; ``cheap`` is good at ``greeting``, ``mid`` at
    ``math``, ``big`` everywhere. Each request is served by one model drawn uniformly (its
    ``propensity`` 1/3 logged when asked), with usage and a thumbs up/down. Returns the true
    per-model mean score and the price table to pass with ``--price-table``.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    models = ("cheap", "mid", "big")
    topics = ("greeting", "math", "history")
    quality = {"greeting": (0.9, 0.8, 0.95), "math": (0.1, 0.7, 0.8), "history": (0.3, 0.4, 0.85)}
    truth = np.zeros((n, 3))
    lines = []
    for i in range(n):
        topic = topics[i % 3]
        truth[i] = rng.random(3) < np.array(quality[topic])
        j = int(rng.integers(0, 3))
        record = {"messages": [{"role": "user", "content": f"{topic} question number {i}: {rng.integers(1e6)}"}],
                  "model": models[j], "usage": {"prompt_tokens": 20 + i % 7, "completion_tokens": 40},
                  "feedback": "up" if truth[i, j] else "down", "benchmark": topic}
        if propensity:
            record["propensity"] = 1 / 3
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"models": models, "truth": truth, "prices": {"cheap": [0.1, 0.4], "mid": [1.0, 3.0], "big": [5.0, 15.0]}}
