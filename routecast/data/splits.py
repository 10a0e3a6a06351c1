"""Train / validation / test splits of an outcome log that do not leak.

Why not a plain random row split: public logs repeat questions under different ids (MMLU has
the same question in two subjects; LLMRouter has questions in both its train and test files). A
router that saw the question in training looks better than it is. So splits are *grouped* by the
prompt text after whitespace normalisation (``" ".join(text.split())``): every copy lands in the
same split.

Determinism: the order of groups within a stratum comes from ``sha1(f"{seed}:{text}")``, so the
assignment depends only on the seed and the texts -- not on row order, and adding new prompts does
not move old ones between splits except at stratum boundaries.

Stratification: when the log has a ``benchmark`` column (or the one named by ``stratify``), each
benchmark is split in the requested proportions on its own (a group whose copies sit in several
benchmarks counts in the alphabetically first one). A group goes to test if the midpoint of
its cumulative prompt count falls in the first ``test`` fraction, to val in the next ``val``
fraction, else to train.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

from routecast.data.outcome_log import OutcomeLog
from routecast.errors import ConfigError, DataError

SPLIT_NAMES = {"train": "train", "training": "train",
               "val": "val", "valid": "val", "validation": "val", "dev": "val",
               "test": "test", "testing": "test"}


class Splits(NamedTuple):
    train: OutcomeLog
    val: OutcomeLog
    test: OutcomeLog


def normalise_prompt(text: str) -> str:
    return " ".join(str(text).split())


def split_log(log: OutcomeLog, *, val: float = 0.1, test: float = 0.2, seed: int = 0,
              stratify: str | None = "benchmark", use_logged_split: bool = False,
              other_split: str = "test") -> Splits:
    """Split ``log`` into train/val/test grouped by prompt text, stratified, seeded.

    ``use_logged_split=True`` follows the log's ``split`` column instead: train/training -> train,
    val/valid/validation/dev -> val, test/testing -> test, any other value (e.g. ``"ood"``) ->
    ``other_split`` ("test" by default; "train", "val" or "drop" accepted). If the log has no
    val rows, a ``val`` fraction of the *whole log* is carved out of train (grouped, stratified,
    seeded). The logged split is trusted as is: copies of a question in both logged splits stay
    where the source put them.

    A :class:`~routecast.data.PairwiseLog` is split the same way, by the text of each pair's prompt
    (all pairs of one prompt land in one split; fractions count pairs); it has no logged split.

    Raises DataError when a split with a positive requested fraction comes out empty.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ConfigError(f"need 0 <= val, test and val + test < 1; got val={val}, test={test}")
    from routecast.data.preferences import PairwiseLog

    if isinstance(log, PairwiseLog):
        return _split_pairs(log, val=val, test=test, seed=seed, use_logged_split=use_logged_split)
    if log.n_prompts == 0:
        raise DataError("cannot split an empty log", path=log.source)
    strata = _strata(log, stratify)
    if use_logged_split:
        assign = _logged(log, other_split)
        train_idx = np.flatnonzero(assign == "train")
        if not (assign == "val").any() and val > 0 and len(train_idx):
            frac = min(val * log.n_prompts / len(train_idx), 0.99)
            sub = _assign(log.prompts[train_idx], strata[train_idx], val=frac, test=0.0, seed=seed)
            assign[train_idx[sub == "val"]] = "val"
        want = {"train": True, "val": val > 0 or (assign == "val").any(), "test": (assign == "test").any() or test > 0}
    else:
        assign = _assign(log.prompts, strata, val=val, test=test, seed=seed)
        want = {"train": True, "val": val > 0, "test": test > 0}
    for name in ("train", "val", "test"):
        if want[name] and not (assign == name).any():
            raise DataError(f"the {name} split is empty ({log.n_prompts} prompts, val={val}, test={test}"
                            f"{', logged split' if use_logged_split else ''}); use a larger log or other fractions",
                            path=log.source, column="split" if use_logged_split else None)
    return Splits(*(log.subset(np.flatnonzero(assign == name)) for name in ("train", "val", "test")))


def _split_pairs(pairs, *, val: float, test: float, seed: int, use_logged_split: bool) -> Splits:
    if use_logged_split:
        raise ConfigError("use_logged_split=True is not supported for pairwise logs (they carry no split column)")
    if len(pairs) == 0:
        raise DataError("cannot split an empty log", path=pairs.source)
    assign = _assign(pairs.prompts, np.zeros(len(pairs), dtype=object), val=val, test=test, seed=seed)
    for name, fraction in (("train", 1.0), ("val", val), ("test", test)):
        if fraction > 0 and not (assign == name).any():
            raise DataError(f"the {name} split is empty ({pairs.n_prompts} prompts, val={val}, test={test}); "
                            "use a larger log or other fractions", path=pairs.source)
    return Splits(*(pairs.subset(np.flatnonzero(assign == name)) for name in ("train", "val", "test")))


def _strata(log: OutcomeLog, stratify: str | None) -> np.ndarray:
    if stratify and stratify in log.meta.columns:
        return log.meta[stratify].astype(str).fillna("").to_numpy(dtype=object)
    return np.zeros(log.n_prompts, dtype=object)


def _logged(log: OutcomeLog, other_split: str) -> np.ndarray:
    if "split" not in log.meta.columns:
        raise DataError("use_logged_split=True but the log has no 'split' column", path=log.source, column="split")
    if other_split not in ("train", "val", "test", "drop"):
        raise ConfigError(f"other_split must be train, val, test or drop; got {other_split!r}")
    raw = log.meta["split"]
    if raw.isna().any():
        i = int(np.flatnonzero(raw.isna().to_numpy())[0])
        raise DataError("empty split cell (prompt " + repr(log.prompt_ids[i]) + ")", path=log.source, column="split")
    lowered = raw.astype(str).str.strip().str.lower().to_numpy(dtype=object)
    return np.array([SPLIT_NAMES.get(v, other_split) for v in lowered], dtype=object)


def _assign(prompts: np.ndarray, strata: np.ndarray, *, val: float, test: float, seed: int) -> np.ndarray:
    """Per-prompt 'train'/'val'/'test', grouped by normalised text, stratified by ``strata``."""
    texts = [normalise_prompt(p) for p in prompts]
    group_of: dict[str, int] = {}
    groups = np.fromiter((group_of.setdefault(t, len(group_of)) for t in texts), dtype=np.int64, count=len(texts))
    n_groups = len(group_of)
    # a group's stratum is the smallest of its members' (row-order invariant); its key a seeded text hash
    import pandas as pd

    g_stratum = pd.Series(strata.astype(str), dtype=object).groupby(groups).min().to_numpy(dtype=object)
    g_size = np.bincount(groups, minlength=n_groups)
    g_key = np.array([hashlib.sha1(f"{seed}:{t}".encode("utf-8", "surrogatepass")).hexdigest()
                      for t in group_of], dtype=object)
    g_split = np.empty(n_groups, dtype=object)
    for stratum in sorted(set(g_stratum.tolist()), key=str):
        members = np.flatnonzero(g_stratum == stratum)
        members = members[np.argsort(g_key[members], kind="stable")]
        sizes = g_size[members]
        total = sizes.sum()
        mid = (np.cumsum(sizes) - sizes / 2) / total
        g_split[members] = np.where(mid < test, "test", np.where(mid < test + val, "val", "train"))
    return g_split[groups]
