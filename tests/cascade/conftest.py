"""Small real outcome logs for cascade tests, built straight from /work/shared/data parquet files.

The pivot is done here (not through routecast.data.load_log) so these tests depend only on the
OutcomeLog contract, not on the loader being finished.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from routecast.data.outcome_log import OutcomeLog

DATA = Path("/work/shared/data")


def log_from_frame(df: pd.DataFrame, source: str = "<test>") -> OutcomeLog:
    ids = list(dict.fromkeys(df["prompt_id"].astype(str)))
    models = list(dict.fromkeys(df["model"].astype(str)))
    row = {p: i for i, p in enumerate(ids)}
    col = {m: j for j, m in enumerate(models)}
    n, m = len(ids), len(models)
    scores = np.full((n, m), np.nan)
    costs = np.full((n, m), np.nan)
    responses = np.full((n, m), None, dtype=object) if "response" in df else None
    prompts = np.empty(n, dtype=object)
    for rec in df.itertuples(index=False):
        i, j = row[str(rec.prompt_id)], col[str(rec.model)]
        scores[i, j] = rec.score
        costs[i, j] = rec.cost
        prompts[i] = rec.prompt
        if responses is not None:
            r = rec.response
            responses[i, j] = r if isinstance(r, str) else None
    return OutcomeLog(np.array(ids, dtype=object), prompts, tuple(models), scores, costs, responses,
                      source=source)


def load_folder(name: str, n: int | None = None, seed: int = 0, models=None, query: str | None = None) -> OutcomeLog:
    df = pd.read_parquet(DATA / name / "data.parquet")
    if query:
        df = df.query(query)
    if models is not None:
        df = df[df["model"].isin(models)]
    if n is not None:
        ids = pd.Series(df["prompt_id"].unique())
        keep = set(ids.sample(n=min(n, len(ids)), random_state=seed))
        df = df[df["prompt_id"].isin(keep)]
    return log_from_frame(df, source=str(DATA / name / "data.parquet"))


def split(log: OutcomeLog, fractions=(0.5, 0.25), seed: int = 0):
    rng = np.random.default_rng(seed)
    order = rng.permutation(log.n_prompts)
    a = int(fractions[0] * log.n_prompts)
    b = a + int(fractions[1] * log.n_prompts)
    return log.subset(order[:a]), log.subset(order[a:b]), log.subset(order[b:])


@pytest.fixture(scope="session")
def routerarena() -> OutcomeLog:
    """300 RouterArena prompts x 2 models, with logged USD costs and responses."""
    return load_folder("routerarena_2models", n=300, seed=0)


@pytest.fixture(scope="session")
def routerarena_splits(routerarena):
    return split(routerarena)


@pytest.fixture(scope="session")
def routerarena_large_splits():
    """600 RouterArena prompts split 70/10/20: enough (prompt, response) pairs to learn a scorer."""
    return split(load_folder("routerarena_2models", n=600, seed=1), (0.7, 0.1))
