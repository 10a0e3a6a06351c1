"""Load an outcome log (long or wide table, or a built-in name) into an :class:`OutcomeLog`.

Two table shapes are understood:

* **long** (routecast's interchange format, as in ../shared/data): one row per (prompt, model) with
  the required columns ``prompt``, ``model``, ``score`` and the optional ``prompt_id``, ``cost``,
  ``response``, ``tokens_in``, ``tokens_out``, ``price_in_per_mtok``, ``price_out_per_mtok`` and any
  per-prompt metadata (``benchmark``, ``split``, ``task``...).
* **wide** (as RouterBench publishes it): one row per prompt with a score column per model
  (named after the model), ``<model>|total_cost`` and optionally ``<model>|model_response``, plus
  ``prompt``, ``sample_id`` (-> prompt_id) and ``eval_name`` (-> benchmark). Models are the names
  that carry a ``|total_cost`` or ``|model_response`` column. ``oracle_model_to_route_to`` is
  derived information and is dropped.

Rules (every violation is one :class:`DataError` naming file, 1-based row and column):

* ``prompt_id`` absent -> ``"sha1:" + first 16 hex of sha1(prompt)``, so the same text gets the
  same id across files. Present -> every cell must be filled.
* ``prompt`` must be non-empty text; one ``prompt_id`` must always carry the same prompt text.
* ``score``: a number in [0, 1]. An empty cell / null / NaN means "not logged" (kept as NaN in the
  matrix, the row still counts); text, booleans, +-inf or values outside [0, 1] are errors.
* ``cost``: USD >= 0 and finite; empty/NaN = unknown (then derived from prices if any, see
  :mod:`routecast.data.costs`).
* Repeated ``(prompt_id, model)`` rows (a traffic log asks the same question many times) are
  merged as ``duplicates`` says: ``"mean"`` (default: mean score, mean cost and mean token
  counts of the repeats, the first row's response and metadata, and the number of rows merged
  in ``OutcomeLog.counts``), ``"first"`` or ``"last"`` (that row alone), or ``"error"`` (refuse,
  naming the user's own columns). One warning line says how many rows were merged.
* Metadata columns whose value is constant within every prompt become ``OutcomeLog.meta``;
  columns that vary per model (e.g. a raw judge grade) are not carried into the log.

* Model names are compared as users mean them: NFC-normalised and stripped
  (:mod:`routecast.data.names`), so ``" a"``, ``"a "`` and ``"a"`` are one model.
* At least one score must be logged: a log whose score cells are all empty cannot train or
  evaluate anything (score the responses first: ``routecast score``).

Nothing is dropped silently: every input row becomes one cell of the matrices (possibly NaN when
its score cell was empty).

Files whose columns are named differently are read through a column mapping or a dataset card
(:mod:`routecast.data.columns`); OpenAI chat-format JSONL (a ``messages`` column) is turned into
the long format by :mod:`routecast.data.chat_log`. Relative paths are resolved from the current
folder, and a path that does not exist is reported as "not found" with its absolute form.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from routecast.data.costs import PriceTable, derive_costs
from routecast.data.formats import ROW, read_table
from routecast.data.names import model_name, model_names as clean_model_names
from routecast.data.outcome_log import OutcomeLog
from routecast.errors import DataError

REQUIRED = ("prompt", "model", "score")
#: Per-(prompt, model) columns with a meaning of their own; never turned into per-prompt meta.
PER_CALL = ("prompt_id", "prompt", "model", "score", "cost", "response", "tokens_in", "tokens_out",
            "price_in_per_mtok", "price_out_per_mtok", "count", ROW)
#: how repeated (prompt, model) rows are merged (``--duplicates``); the first is the default
DUPLICATES = ("mean", "first", "last", "error")
WIDE_COST, WIDE_RESPONSE = "|total_cost", "|model_response"
WIDE_RENAME = {"sample_id": "prompt_id", "eval_name": "benchmark"}
WIDE_DROP = ("oracle_model_to_route_to",)
_NAN_WORDS = frozenset({"nan", "na", "n/a", "null", "none", "<na>"})


def load_log(source: str | Path, *, format: str | None = None, prices=None,
             models: Sequence[str] | None = None, max_prompt_chars: int | None = None,
             columns=None, duplicates: str = "mean") -> OutcomeLog:
    """Load an outcome log from a built-in name or a file path.

    Parameters
    ----------
    source: a built-in name (see :func:`routecast.data.builtin_names`) or a path to a ``.parquet``,
        ``.csv``, ``.jsonl`` or ``.json`` file. A directory holding ``data.parquet`` also works.
    format: ``"long"`` or ``"wide"`` to force the table shape; default: detected from the columns.
    prices: a :class:`PriceTable`, a dict ``{model: [in, out]}`` (USD per million tokens) or a JSON
        path; fills missing costs. Price columns in the file are used too (explicit prices win).
    models: keep only these models, in this order.
    max_prompt_chars: truncate prompt texts to this many characters *after* ids and costs were
        computed from the full text (long prompts only slow encoders down).
    columns: a mapping ``routecast name -> the file's column`` (a dict, or text such as
        ``'prompt=Question,model=LLM,score=Accuracy,cost="Cost ($)"'``); merged over the file's
        dataset card if it has one (see :mod:`routecast.data.columns`).
    duplicates: how repeated (prompt, model) rows merge: one of :data:`DUPLICATES` (see the module
        docstring).
    """
    if format not in (None, "long", "wide"):
        raise DataError(f"format must be 'long' or 'wide', got {format!r}", path=str(source))
    frame, label = read_source(source, columns)
    table = PriceTable.coerce(prices)
    if "messages" in frame.columns and "prompt" not in frame.columns:
        from routecast.data.chat_log import chat_to_long

        frame = chat_to_long(frame, source=label)
    log = frame_to_log(frame, source=label, format=format, prices=table, duplicates=duplicates)
    if models is not None:
        log = log.select_models([model_name(m) for m in models])
    if max_prompt_chars is not None:
        if max_prompt_chars <= 0:
            raise DataError(f"max_prompt_chars must be positive, got {max_prompt_chars}")
        prompts = np.array([p[:max_prompt_chars] for p in log.prompts], dtype=object)
        log = OutcomeLog(log.prompt_ids, prompts, log.models, log.scores, log.costs, log.responses,
                         log.meta, log.source)
    return log


def resolve_source(source: str | Path) -> tuple[Path, str]:
    """A built-in name or a user's path -> (file to read, label for messages).

    Relative paths are taken from the current folder (the user's, not the package's); a path that
    does not exist is "not found", with the absolute path it was looked for at.
    """
    from routecast.data.builtin import builtin_names, builtin_path, is_builtin

    if isinstance(source, str) and is_builtin(source):
        return builtin_path(source), source
    path = Path(source).expanduser()
    if path.is_dir() and (path / "data.parquet").exists():
        path = path / "data.parquet"
    label = str(path)
    if not path.exists():
        if isinstance(source, str) and path.suffix == "" and "/" not in source:
            raise DataError(f"not found: no such file or folder ({os.path.abspath(path)}) and not a built-in "
                            f"dataset; built-ins are {builtin_names()}", path=label)
        raise DataError(f"not found: no such file or folder ({os.path.abspath(path)})", path=label)
    return path, label


def read_source(source: str | Path, columns=None) -> tuple[pd.DataFrame, str]:
    """Read ``source`` into a frame whose columns carry routecast's names (mapping/card applied)."""
    from routecast.data.builtin import is_builtin
    from routecast.data.columns import apply_mapping, find_card, mapping_for, parse_mapping, read_card

    path, label = resolve_source(source)
    frame = read_table(path)
    builtin = isinstance(source, str) and is_builtin(source)
    mapping = parse_mapping(columns) if builtin else mapping_for(path, columns)
    frame = apply_mapping(frame, mapping, source=label)
    # the user's own names of renamed columns, so a message names the column the user has
    frame.attrs["user_columns"] = {target: column for target, column in mapping.items()}
    card = None if builtin else find_card(path)
    declared = read_card(card).get("answer_format") if card is not None else None
    if declared is not None and "answer_format" not in frame.columns:  # the card declares the answer format
        frame["answer_format"] = str(declared).strip().lower()
    return frame, label


def detect_format(columns) -> str:
    """``"wide"`` if any column ends in ``|total_cost``/``|model_response``, ``"long"`` otherwise."""
    if any(str(c).endswith((WIDE_COST, WIDE_RESPONSE)) for c in columns):
        return "wide"
    return "long"


def frame_to_log(frame: pd.DataFrame, *, source: str = "<memory>", format: str | None = None,
                 prices: PriceTable | None = None, duplicates: str = "mean") -> OutcomeLog:
    """Validate a long or wide DataFrame and pivot it to an OutcomeLog (see module docstring)."""
    if duplicates not in DUPLICATES:
        raise DataError(f"duplicates must be one of {', '.join(DUPLICATES)}, got {duplicates!r}", path=source)
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    if ROW not in frame.columns:
        frame[ROW] = np.arange(1, len(frame) + 1)
    if len(frame) == 0:
        raise DataError("no data rows", path=source)
    kind = format or detect_format(frame.columns)
    if kind == "wide":
        frame = _wide_to_long(frame, source)
    log = _long_to_log(frame, source, prices, duplicates)
    if np.isnan(log.scores).all():
        raise DataError(f"no score is logged: all {log.scores.size:,} score cells are empty, so there is "
                        "nothing to learn or evaluate; score the responses first (routecast score)",
                        path=source, column="score")
    return log


# ------------------------------------------------------------------ wide
def _wide_to_long(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    cols = list(frame.columns)
    models = []
    for c in cols:
        for suffix in (WIDE_COST, WIDE_RESPONSE):
            if c.endswith(suffix):
                name = c[: -len(suffix)]
                if name.strip() and name not in models:
                    models.append(name)
    if not models:
        raise DataError("wide format needs '<model>|total_cost' or '<model>|model_response' columns",
                        path=source)
    for m in models:
        if m not in frame.columns:
            raise DataError(f"wide format: model {m!r} has '{m}|...' columns but no score column named {m!r}",
                            path=source, column=m)
    if "prompt" not in frame.columns:
        raise DataError("missing required column 'prompt'", path=source, column="prompt")
    rows = frame[ROW].to_numpy()
    suffix_cols = {c for c in cols if c.endswith((WIDE_COST, WIDE_RESPONSE))}
    shared = [c for c in cols if c not in models and c not in suffix_cols and c not in WIDE_DROP and c != ROW]
    base = frame[shared].rename(columns=WIDE_RENAME)
    parts = []
    for m in models:
        part = base.copy()
        part["model"] = model_name(m)
        part["score"] = as_float(frame[m], rows, source, m, kind="score")
        cost_col = m + WIDE_COST
        part["cost"] = (as_float(frame[cost_col], rows, source, cost_col, kind="cost")
                        if cost_col in frame.columns else np.nan)
        resp_col = m + WIDE_RESPONSE
        if resp_col in frame.columns:
            part["response"] = frame[resp_col].to_numpy(dtype=object)
        part[ROW] = rows
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------ long
def _long_to_log(frame: pd.DataFrame, source: str, prices: PriceTable | None, duplicates: str) -> OutcomeLog:
    for col in REQUIRED:
        if col not in frame.columns:
            raise DataError(f"missing required column {col!r} (columns present: "
                            f"{[c for c in frame.columns if c != ROW][:20]})", path=source, column=col)
    rows = frame[ROW].to_numpy()
    prompts = as_text(frame["prompt"], rows, source, "prompt", allow_blank=False)
    model = clean_model_names(as_text(frame["model"], rows, source, "model", allow_blank=False))
    if "prompt_id" in frame.columns:
        pid = as_text(frame["prompt_id"], rows, source, "prompt_id", allow_blank=False)
    else:
        pid = hash_ids(prompts)
    score = as_float(frame["score"], rows, source, "score", kind="score")
    cost = (as_float(frame["cost"], rows, source, "cost", kind="cost") if "cost" in frame.columns
            else np.full(len(frame), np.nan))
    t_in = (as_float(frame["tokens_in"], rows, source, "tokens_in", kind="tokens")
            if "tokens_in" in frame.columns else None)
    t_out = (as_float(frame["tokens_out"], rows, source, "tokens_out", kind="tokens")
             if "tokens_out" in frame.columns else None)

    group, n_rows = _repeat_groups(pid, model)
    counts_long = None
    if len(n_rows) < len(pid):
        if duplicates == "error":
            _refuse_repeats(frame, pid, model, rows, group, source)
        keep = _kept_rows(group, len(n_rows), duplicates)
        if duplicates == "mean":
            score, cost = _group_mean(score, group, keep), _group_mean(cost, group, keep)
            t_in = None if t_in is None else _group_mean(t_in, group, keep)
            t_out = None if t_out is None else _group_mean(t_out, group, keep)
        else:
            score, cost = score[keep], cost[keep]
            t_in = None if t_in is None else t_in[keep]
            t_out = None if t_out is None else t_out[keep]
        _warn_merged(len(pid) - len(keep), len(keep), duplicates, source)
        frame = frame.iloc[keep].reset_index(drop=True)
        rows, prompts, model, pid = rows[keep], prompts[keep], model[keep], pid[keep]
        counts_long = n_rows[group[keep]].astype(np.float64)

    p_codes, p_uniques = pd.factorize(pd.Series(pid, dtype=object), sort=False)
    m_codes, m_uniques = pd.factorize(pd.Series(model, dtype=object), sort=False)
    n, m = len(p_uniques), len(m_uniques)
    first_row = np.full(n, -1)
    # first occurrence of each prompt id: reversed assignment leaves the smallest index
    first_row[p_codes[::-1]] = np.arange(len(pid))[::-1]

    text_first = prompts[first_row]
    differs = text_first[p_codes] != prompts
    if differs.any():
        i = int(np.flatnonzero(differs)[0])
        raise DataError(f"prompt_id {pid[i]!r} has two different prompt texts (other one at row "
                        f"{rows[first_row[p_codes[i]]]})", path=source, row=int(rows[i]), column="prompt")

    def matrix(values, fill=np.nan, dtype=float):
        out = np.full((n, m), fill, dtype=dtype)
        out[p_codes, m_codes] = values
        return out

    scores = matrix(score)
    costs = matrix(cost)
    counts = None if counts_long is None else matrix(counts_long, fill=0.0)
    responses = None
    if "response" in frame.columns:
        resp = frame["response"].to_numpy(dtype=object)
        resp = np.where(pd.isna(frame["response"]).to_numpy(), None, resp)
        resp = np.array([r if r is None or isinstance(r, str) else str(r) for r in resp], dtype=object)
        responses = matrix(resp, fill=None, dtype=object)

    table = _prices_from_frame(frame, model, rows, source)
    if prices is not None:
        table = prices if table is None else table.merged(prices)
    model_names = tuple(str(x) for x in m_uniques)
    if table is not None:
        costs = derive_costs(costs, model_names, text_first, table, responses=responses,
                             tokens_in=None if t_in is None else matrix(t_in),
                             tokens_out=None if t_out is None else matrix(t_out))

    if "cost" not in frame.columns:
        _warn_unread_cost_columns(frame, source)
    meta = _prompt_meta(frame, p_codes, first_row)
    return OutcomeLog(prompt_ids=np.asarray(p_uniques, dtype=object), prompts=text_first, models=model_names,
                      scores=scores, costs=costs, responses=responses, meta=meta, source=source, counts=counts)


def _repeat_groups(pid: np.ndarray, model: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row -> index of its (prompt_id, model) pair, number of rows of each pair)."""
    group = pd.DataFrame({"p": pid, "m": model}).groupby(["p", "m"], sort=False).ngroup().to_numpy()
    return group, np.bincount(group)


def _kept_rows(group: np.ndarray, n_groups: int, how: str) -> np.ndarray:
    """The one row kept per pair, in first-seen order: its first row, or its last for ``"last"``."""
    order = np.arange(len(group))
    kept = np.full(n_groups, -1)
    if how == "last":
        kept[group] = order  # later rows overwrite earlier ones
    else:
        kept[group[::-1]] = order[::-1]
    first = np.full(n_groups, -1)
    first[group[::-1]] = order[::-1]
    return kept[np.argsort(first, kind="stable")]


def _group_mean(values: np.ndarray, group: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Mean of the logged (non-NaN) values of each pair, at the kept rows; NaN when none is."""
    logged = ~np.isnan(values)
    sums = np.bincount(group, weights=np.where(logged, values, 0.0))
    counts = np.bincount(group, weights=logged.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means[group[keep]]


def _warn_merged(n_merged: int, n_kept: int, how: str, source: str) -> None:
    import warnings

    from routecast.errors import RoutecastWarning

    what = {"mean": "their mean score and cost", "first": "the first row", "last": "the last row"}[how]
    warnings.warn(f"file {source}: merged {n_merged:,} repeated (prompt, model) rows into {what} "
                  f"({n_kept:,} cells remain; --duplicates mean|first|last|error)", RoutecastWarning, stacklevel=3)


def _refuse_repeats(frame, pid, model, rows, group, source) -> None:
    """The ``duplicates="error"`` message, naming the columns the user's file has."""
    first_of = np.full(group.max() + 1, -1)
    first_of[group[::-1]] = np.arange(len(group))[::-1]
    i = int(np.flatnonzero(first_of[group] != np.arange(len(group)))[0])  # the first repeat
    users = frame.attrs.get("user_columns", {})
    key = "prompt_id" if "prompt_id" in frame.columns else "prompt"  # never an id the loader derived
    column = users.get(key, key)
    shown = repr(pid[i]) if key == "prompt_id" else repr(_shorten(frame["prompt"].iloc[i]))
    raise DataError(f"duplicate row: {column} {shown} and {users.get('model', 'model')} {model[i]!r} appear twice (first at row "
                    f"{rows[first_of[group[i]]]}); merge repeats with --duplicates mean|first|last",
                    path=source, row=int(rows[i]), column=column)


def _shorten(text) -> str:
    text = str(text)
    return text if len(text) <= 60 else text[:57] + "..."


_COST_LIKE = re.compile(r"cost|price|usd|\$", re.IGNORECASE)


def _warn_unread_cost_columns(frame: pd.DataFrame, source: str) -> None:
    """Name a numeric column that looks like a cost (``Cost ($)``, ``usd``) when none is read as
    ``cost``: it varies per call, so it is not metadata either, and would vanish while the costs
    stay unknown (a relative cost scale) without a word."""
    import warnings

    from routecast.errors import RoutecastWarning

    for col in frame.columns:
        if col in PER_CALL or not _COST_LIKE.search(str(col)):
            continue
        if pd.to_numeric(frame[col], errors="coerce").notna().any():
            warnings.warn(f"file {source}: column {col!r} looks like a cost but is not read (no column is "
                          f"mapped to 'cost'), so its values are ignored; to use it, map it: cost=\"{col}\"",
                          RoutecastWarning, stacklevel=2)


def _prompt_meta(frame: pd.DataFrame, p_codes: np.ndarray, first_row: np.ndarray) -> pd.DataFrame:
    meta = {}
    for col in frame.columns:
        if col in PER_CALL:
            continue
        series = frame[col]
        try:
            first = series.iloc[first_row].reset_index(drop=True)
            back = first.iloc[p_codes].reset_index(drop=True)
            same = (back == series.reset_index(drop=True)) | (back.isna() & series.reset_index(drop=True).isna())
            constant = bool(np.asarray(same.fillna(False), dtype=bool).all())
        except (TypeError, ValueError):  # unhashable/incomparable cells (lists in JSON): not meta
            constant = False
        if constant:
            meta[col] = first
    return pd.DataFrame(meta, index=pd.RangeIndex(len(first_row)))


def _prices_from_frame(frame, model, rows, source) -> PriceTable | None:
    if "price_in_per_mtok" not in frame.columns and "price_out_per_mtok" not in frame.columns:
        return None
    for col in ("price_in_per_mtok", "price_out_per_mtok"):
        if col not in frame.columns:
            raise DataError(f"price columns come in pairs: {col!r} is missing", path=source, column=col)
    p_in = as_float(frame["price_in_per_mtok"], rows, source, "price_in_per_mtok", kind="cost")
    p_out = as_float(frame["price_out_per_mtok"], rows, source, "price_out_per_mtok", kind="cost")
    prices = {}
    table = pd.DataFrame({"m": model, "i": p_in, "o": p_out, "r": rows})
    table = table[~(np.isnan(p_in) | np.isnan(p_out))]
    if len(table) == 0:
        return None
    for name, group in table.groupby("m", sort=False):
        if group["i"].nunique() > 1 or group["o"].nunique() > 1:
            bad = group[(group["i"] != group["i"].iloc[0]) | (group["o"] != group["o"].iloc[0])].iloc[0]
            raise DataError(f"model {name!r} has two different prices", path=source, row=int(bad["r"]),
                            column="price_in_per_mtok")
        prices[name] = (group["i"].iloc[0], group["o"].iloc[0])
    return PriceTable(prices)


# ------------------------------------------------------------ cell checks
def hash_ids(prompts: np.ndarray) -> np.ndarray:
    """The id of each prompt text without a logged ``prompt_id``: ``"sha1:"`` + 16 hex digits, so
    the same text gets the same id in every file (outcome logs, pairs, prompt lists)."""
    cache: dict[str, str] = {}
    out = np.empty(len(prompts), dtype=object)
    for i, p in enumerate(prompts):
        h = cache.get(p)
        if h is None:
            h = cache[p] = "sha1:" + hashlib.sha1(p.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        out[i] = h
    return out


def as_text(series: pd.Series, rows, source, column, *, allow_blank: bool) -> np.ndarray:
    """Column -> object array of str. Null cells (and blank ones unless allowed) are errors."""
    missing = series.isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError("empty cell; this column must be filled on every row", path=source,
                        row=int(rows[i]), column=column)
    if series.dtype == object:
        values = series.to_numpy(dtype=object)
        bad = np.fromiter((not isinstance(v, (str, int, float)) or isinstance(v, bool) for v in values),
                          dtype=bool, count=len(values))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"expected text, got {type(values[i]).__name__}", path=source,
                            row=int(rows[i]), column=column)
    text = series.astype(str)
    values = text.to_numpy(dtype=object)
    if not allow_blank:
        blank = (text.str.strip() == "").to_numpy()
        if blank.any():
            i = int(np.flatnonzero(blank)[0])
            raise DataError("empty text; this column must be filled on every row", path=source,
                            row=int(rows[i]), column=column)
    return values


def as_float(series: pd.Series, rows, source, column, *, kind: str) -> np.ndarray:
    """Column -> float64 array, NaN for empty cells. ``kind``: score | cost | tokens."""
    if pd.api.types.is_bool_dtype(series.dtype):
        raise DataError("expected a number, got booleans", path=source, row=int(rows[0]), column=column)
    if pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype=float, na_value=np.nan)
    else:
        obj = series.astype(object)
        text = obj.astype(str).str.strip()
        missing = (obj.isna().to_numpy() | (text == "").to_numpy()
                   | text.str.lower().isin(_NAN_WORDS).to_numpy())
        is_bool = np.fromiter((isinstance(v, (bool, np.bool_)) for v in obj.to_numpy()), dtype=bool,
                              count=len(obj)) if obj.dtype == object else np.zeros(len(obj), bool)
        values = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad = (np.isnan(values) & ~missing) | is_bool
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            shown = _show(obj.iloc[i])
            huge = shown.startswith(("a number with", "an integer with"))
            raise DataError(f"{shown} is out of range" if huge else f"expected a number, got {shown}",
                            path=source, row=int(rows[i]), column=column)
        values = np.where(missing, np.nan, values)
    finite = np.isfinite(values)
    if kind == "score":
        bad = ~np.isnan(values) & (~finite | (values < 0) | (values > 1))
        what = "score must be a number in [0, 1]"
    else:
        bad = ~np.isnan(values) & (~finite | (values < 0))
        what = f"{'cost' if kind == 'cost' else 'token count'} must be finite and >= 0"
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{what}, got {_show(series.iloc[i])}", path=source, row=int(rows[i]), column=column)
    return values


def _show(value) -> str:
    """A cell as it should appear in a message: short, and huge numbers by their size."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 30:
        return f"an integer with {len(str(abs(value)))} digits"
    if isinstance(value, str):
        digits = value.strip().lstrip("+-")
        if len(digits) > 30 and digits.isdigit():
            return f"a number with {len(digits)} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
