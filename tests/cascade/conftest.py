"""Small real outcome logs for cascade tests: seeded prompt samples of the shared parquet files
(``../shared/data`` beside the clone; a test skips only when its folder is truly absent), pivoted by
the data loader's own ``frame_to_log``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from routecast.data.loaders import frame_to_log
from routecast.data.outcome_log import OutcomeLog
from tests._support.paths import shared_dataset


def load_folder(name: str, n: int | None = None, seed: int = 0, models=None, query: str | None = None) -> OutcomeLog:
    path = shared_dataset(name)
    df = pd.read_parquet(path)
    if query:
        df = df.query(query)
    if models is not None:
        df = df[df["model"].isin(models)]
    if n is not None:
        ids = pd.Series(df["prompt_id"].unique())
        keep = set(ids.sample(n=min(n, len(ids)), random_state=seed))
        df = df[df["prompt_id"].isin(keep)]
    return frame_to_log(df, source=str(path))


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
