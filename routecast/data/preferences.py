"""Pairwise preference logs: "for this prompt, model A's answer beat model B's" (or a tie).

Preference-trained routers (RouteLLM-style Bradley-Terry / matrix factorisation) learn from pairs,
not from absolute scores, so pairs are kept as pairs rather than squeezed into an OutcomeLog.

File columns: ``prompt`` (required), ``model_a``, ``model_b``, and either ``winner`` or the
Chatbot-Arena one-hot columns ``winner_model_a`` / ``winner_model_b`` / ``winner_tie``.
``prompt_id`` (or ``question_id``) is optional; absent -> sha1 of the prompt as in :func:`load_log`.
``winner`` accepts ``model_a``, ``model_b``, ``tie`` and tie variants such as ``tie (bothbad)``
(all mapped to ``tie``), or the name of one of the two models in the row. A winner naming a
model outside the pair is an error. Model names are NFC-normalised and stripped as everywhere
(:mod:`routecast.data.names`). Column mappings and dataset cards work as for outcome logs.

A pairwise log answers the questions callers ask of any log (``n_prompts``, ``n_models``,
``models``, ``subset``), splits by prompt with :func:`routecast.data.split_log` (every pair of one
prompt text lands in the same split), and gets costs from a price table with
:meth:`PairwiseLog.model_costs` -- the ``costs`` that ``fit_preferences`` takes.
:func:`load_data` reads a file as whichever of the two kinds it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routecast.errors import DataError

WINNERS = ("model_a", "model_b", "tie")


@dataclass(frozen=True, eq=False)
class PairwiseLog:
    """Parallel arrays, one entry per judged pair; ``winner`` in {"model_a", "model_b", "tie"}."""

    prompt_ids: np.ndarray
    prompts: np.ndarray
    model_a: np.ndarray
    model_b: np.ndarray
    winner: np.ndarray
    source: str = "<memory>"
    #: the price table the log was loaded with (``load_data(..., prices=...)``), kept through
    #: ``subset``/``split_log`` so ``Router.fit`` and calibration know each call's cost; None: unpriced
    prices: Any = None

    def __post_init__(self) -> None:
        for name in ("prompt_ids", "prompts", "model_a", "model_b", "winner"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=object))
        n = len(self.prompt_ids)
        if any(len(getattr(self, k)) != n for k in ("prompts", "model_a", "model_b", "winner")):
            raise ValueError("PairwiseLog arrays must have the same length")
        bad = ~np.isin(self.winner, WINNERS)
        if bad.any():
            from routecast.errors import DataError

            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"winner must be one of {', '.join(WINNERS)}, got {self.winner[i]!r}",
                            path=self.source, row=i + 1, column="winner")

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @property
    def n_pairs(self) -> int:
        return len(self.prompt_ids)

    @property
    def n_prompts(self) -> int:
        """Distinct prompts judged (one prompt usually carries several pairs)."""
        return len(set(self.prompt_ids.tolist()))

    @property
    def n_models(self) -> int:
        return len(self.models)

    def unique_prompts(self) -> tuple[np.ndarray, np.ndarray]:
        """(prompt_ids, prompts) of the distinct prompts, in first-seen order."""
        _, first = np.unique(self.prompt_ids.astype(str), return_index=True)
        first = np.sort(first)
        return self.prompt_ids[first], self.prompts[first]

    def win_counts(self) -> dict[str, dict[str, int]]:
        """Per model: pairs played, won, lost and tied."""
        out = {m: {"pairs": 0, "wins": 0, "losses": 0, "ties": 0} for m in self.models}
        for a, b, w in zip(self.model_a, self.model_b, self.winner):
            out[a]["pairs"] += 1
            out[b]["pairs"] += 1
            if w == "tie":
                out[a]["ties"] += 1
                out[b]["ties"] += 1
            else:
                won, lost = (a, b) if w == "model_a" else (b, a)
                out[won]["wins"] += 1
                out[lost]["losses"] += 1
        return out

    def model_costs(self, prices=None) -> dict[str, float]:
        """Mean USD per call per priced model over the judged prompts, from a price table.

        Preference logs rarely record what each call cost; the cost of calling a model on these
        prompts is derived exactly as for outcome logs (:func:`routecast.data.costs.derive_costs`:
        prompt tokens estimated from the text, the table's default output tokens). Models without
        a price are left out. ``prices`` defaults to the table the log was loaded with.
        """
        from routecast.data.costs import PriceTable, derive_costs

        table = PriceTable.coerce(self.prices if prices is None else prices)
        if table is None:
            return {}
        _, prompts = self.unique_prompts()
        costs = derive_costs(np.full((len(prompts), self.n_models), np.nan), self.models, prompts, table)
        return {m: float(np.mean(costs[:, j])) for j, m in enumerate(self.models)
                if m in table and len(prompts)}

    def __repr__(self) -> str:
        return f"PairwiseLog(source={self.source!r}, pairs={len(self)}, models={len(self.models)})"

    @property
    def models(self) -> tuple[str, ...]:
        """Every model named in a pair, sorted: a router's column order must not depend on the
        order of rows in the file."""
        return tuple(sorted(set(self.model_a.tolist()) | set(self.model_b.tolist())))

    def subset(self, index) -> "PairwiseLog":
        idx = np.asarray(index)
        return PairwiseLog(self.prompt_ids[idx], self.prompts[idx], self.model_a[idx], self.model_b[idx],
                           self.winner[idx], self.source, self.prices)


def is_pairwise_frame(frame) -> bool:
    """A table of pairs: ``model_a`` and ``model_b`` columns and no per-row ``model``."""
    return {"model_a", "model_b"} <= set(frame.columns) and "model" not in frame.columns


def load_data(source: str | Path, *, columns=None, prices=None, format: str | None = None,
              duplicates: str = "mean"):
    """Read ``source`` as an :class:`OutcomeLog` or, when it holds pairs, a :class:`PairwiseLog`.

    For commands that accept either kind (``data inspect``, training preference routers): the
    file is read once and the columns decide. ``prices`` fills an outcome log's missing costs;
    a pairwise log keeps the table (``PairwiseLog.prices``, read by :meth:`PairwiseLog.model_costs`).
    ``duplicates`` says how an outcome log's repeated (prompt, model) rows merge
    (:data:`routecast.data.loaders.DUPLICATES`).
    """
    from routecast.data.loaders import frame_to_log, read_source
    from routecast.data.costs import PriceTable

    frame, label = read_source(source, columns)
    if is_pairwise_frame(frame):
        import dataclasses

        return dataclasses.replace(frame_to_pairs(frame, source=label), prices=PriceTable.coerce(prices))
    if "messages" in frame.columns and "prompt" not in frame.columns:
        from routecast.data.chat_log import chat_to_long

        frame = chat_to_long(frame, source=label)
    return frame_to_log(frame, source=label, format=format, prices=PriceTable.coerce(prices),
                        duplicates=duplicates)


def load_preferences(path: str | Path, *, columns=None) -> PairwiseLog:
    """Read a pairwise preference file (.csv/.jsonl/.json/.parquet) into a :class:`PairwiseLog`.

    ``columns`` maps routecast's names to the file's (see :mod:`routecast.data.columns`).
    """
    from routecast.data.loaders import read_source

    frame, label = read_source(path, columns)
    return frame_to_pairs(frame, source=label)


def frame_to_pairs(frame, *, source: str = "<memory>") -> PairwiseLog:
    """Validate a table of judged pairs (see the module docstring) into a :class:`PairwiseLog`."""
    import pandas as pd

    from routecast.data.formats import ROW
    from routecast.data.loaders import as_text, hash_ids
    from routecast.data.names import model_names

    src = source
    if ROW not in frame.columns:
        frame = frame.assign(**{ROW: np.arange(1, len(frame) + 1)})
    rows = frame[ROW].to_numpy()
    for col in ("prompt", "model_a", "model_b"):
        if col not in frame.columns:
            raise DataError(f"missing required column {col!r}", path=src, column=col)
    prompts = as_text(frame["prompt"], rows, src, "prompt", allow_blank=False)
    a = model_names(as_text(frame["model_a"], rows, src, "model_a", allow_blank=False))
    b = model_names(as_text(frame["model_b"], rows, src, "model_b", allow_blank=False))
    same = a == b
    if same.any():
        i = int(np.flatnonzero(same)[0])
        raise DataError(f"model_a and model_b are both {a[i]!r}", path=src, row=int(rows[i]), column="model_b")
    id_col = next((c for c in ("prompt_id", "question_id") if c in frame.columns), None)
    ids = as_text(frame[id_col], rows, src, id_col, allow_blank=False) if id_col else hash_ids(prompts)

    if "winner" in frame.columns:
        raw = as_text(frame["winner"], rows, src, "winner", allow_blank=False)
        low = np.array([w.strip().lower() for w in raw], dtype=object)
        winner = np.where(low == "model_a", "model_a", np.where(low == "model_b", "model_b", None)).astype(object)
        winner[np.char.startswith(low.astype(str), "tie")] = "tie"
        named = model_names(raw)
        winner = np.where(pd.isna(winner) & (named == a), "model_a", winner)
        winner = np.where(pd.isna(winner) & (named == b), "model_b", winner)
        bad = pd.isna(winner)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"winner {raw[i]!r} is neither model_a, model_b, tie nor one of the pair "
                            f"({a[i]!r}, {b[i]!r})", path=src, row=int(rows[i]), column="winner")
    elif {"winner_model_a", "winner_model_b", "winner_tie"} <= set(frame.columns):
        from routecast.data.loaders import as_float

        onehot = np.stack([as_float(frame[c], rows, src, c, kind="score")
                           for c in ("winner_model_a", "winner_model_b", "winner_tie")], axis=1)
        valid = np.isin(onehot, (0.0, 1.0)).all(axis=1) & (onehot.sum(axis=1) == 1)
        if not valid.all():
            i = int(np.flatnonzero(~valid)[0])
            raise DataError("exactly one of winner_model_a/winner_model_b/winner_tie must be 1",
                            path=src, row=int(rows[i]), column="winner_model_a")
        winner = np.array(WINNERS, dtype=object)[onehot.argmax(axis=1)]
    else:
        raise DataError("missing column 'winner' (or winner_model_a/winner_model_b/winner_tie)",
                        path=src, column="winner")
    return PairwiseLog(ids, prompts, a, b, winner.astype(object), src)


def pairs_from_log(log, min_margin: float = 0.0) -> PairwiseLog:
    """Every pair of models both logged on a prompt, the higher score winning.

    ``|score_a - score_b| <= min_margin`` counts as a tie (with the default 0.0: equal scores tie).
    Pairs are ordered prompt-major, then by model column order (a before b).
    """
    if min_margin < 0:
        raise DataError(f"min_margin must be >= 0, got {min_margin}")
    s = log.scores
    parts = []
    for i in range(log.n_models):
        for j in range(i + 1, log.n_models):
            both = ~(np.isnan(s[:, i]) | np.isnan(s[:, j]))
            idx = np.flatnonzero(both)
            diff = s[idx, i] - s[idx, j]
            win = np.where(np.abs(diff) <= min_margin, "tie", np.where(diff > 0, "model_a", "model_b"))
            parts.append((idx, np.full(len(idx), i), np.full(len(idx), j), win))
    if not parts:
        empty = np.array([], dtype=object)
        return PairwiseLog(empty, empty, empty, empty, empty, log.source)
    idx = np.concatenate([p[0] for p in parts])
    ia = np.concatenate([p[1] for p in parts])
    ib = np.concatenate([p[2] for p in parts])
    win = np.concatenate([p[3] for p in parts]).astype(object)
    order = np.lexsort((ib, ia, idx))
    idx, ia, ib, win = idx[order], ia[order], ib[order], win[order]
    models = np.array(log.models, dtype=object)
    return PairwiseLog(log.prompt_ids[idx], log.prompts[idx], models[ia], models[ib], win, log.source)
