"""The decision log: one append-only record per routed request, and the feedback joined to it.

Routing decisions are the raw material of the next router: with the outcome of each chosen call
(a feedback score that arrives later) and the probability the router gave its choice (the
propensity, from exploration), the log becomes an outcome log in which only the chosen cells are
observed (:func:`outcome_log_from_decisions`) - bandit feedback that off-policy evaluation and
propensity-weighted training use.

Storage is SQLite in WAL mode: every append is its own committed transaction, so a process killed
with SIGKILL loses nothing it committed (WAL with ``synchronous=NORMAL`` survives a process crash;
only a power loss may drop the last transactions), readers never block the writer, and several
server workers on one host can share the file (``busy_timeout``). When the current segment grows
past ``max_bytes`` a new segment ``<stem>.<n>.sqlite`` is started (under an exclusive lock file,
so several workers start only one) and every writer moves to the newest segment within a second;
no file is ever renamed or deleted while another process may hold it open, so rotation is safe
with many workers. Reads and feedback look through every segment. The routing text is kept only as a SHA-256 hash unless
``store_text`` is set (privacy by default).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Collection, Iterator, Mapping

import numpy as np

from routecast.errors import DataError, shown

__all__ = ["DecisionLog", "text_hash", "outcome_log_from_decisions", "write_bandit_log", "FEEDBACK_SOURCES"]

FEEDBACK_SOURCES = ("api", "import", "judge", "thumbs", "test")

_COLUMNS = ("request_id", "time", "key_id", "operating_point", "conversation_id", "text_hash", "text",
            "models", "ranking", "predicted", "chosen", "rank", "propensity", "lam", "expected_cost",
            "realised_cost", "latency_ms", "status", "fallback", "extra")
_JSON_COLUMNS = {"models", "ranking", "predicted", "extra"}
_LOCK_WAIT_S = 10.0  # how long a writer waits for another process's lock (busy timeout and set-up retries)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS decisions (
    request_id TEXT PRIMARY KEY, time REAL NOT NULL, key_id TEXT, operating_point TEXT,
    conversation_id TEXT, text_hash TEXT NOT NULL, text TEXT, models TEXT NOT NULL, ranking TEXT NOT NULL,
    predicted TEXT NOT NULL, chosen TEXT NOT NULL, rank INTEGER, propensity REAL NOT NULL, lam REAL,
    expected_cost REAL, realised_cost REAL, latency_ms REAL, status INTEGER, fallback TEXT, extra TEXT);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT PRIMARY KEY, score REAL NOT NULL, time REAL NOT NULL, source TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS decisions_conversation ON decisions (conversation_id);
"""
assert all(c in _SCHEMA for c in _COLUMNS)


class NotYourRequest(DataError):
    """Feedback for a request that another API key made (the server answers 403)."""


def text_hash(text: str) -> str:
    """SHA-256 of the routing text (surrogates kept byte-exact)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class DecisionLog:
    """Append-only SQLite store of routing decisions and their feedback (see the module doc)."""

    def __init__(self, path: str | os.PathLike, *, store_text: bool = False, max_bytes: int = 256 << 20):
        self.path = Path(path)
        self.store_text = store_text
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._appends = 0
        self._checked_at = 0.0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._current = self.segments()[-1]
            self._conn = self._connect(self._current)
        except (OSError, sqlite3.Error) as exc:
            raise DataError(f"cannot open the decision log ({exc})", path=str(self.path)) from None

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        """Open ``path`` in WAL mode with its schema. Two processes creating the file at once can
        get "database is locked" at once, without SQLite's busy handler waiting (a lock upgrade
        it cannot wait for; seen in CI with two server workers), so the set-up is retried for 10 s."""
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            conn = sqlite3.connect(str(path), timeout=_LOCK_WAIT_S, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
                return conn
            except sqlite3.OperationalError as exc:
                conn.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "DecisionLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- write
    def append(self, record: Mapping[str, Any]) -> None:
        """Commit one decision. ``request_id``, ``text`` (hashed unless ``store_text``), ``models``,
        ``ranking``, ``predicted`` (model -> quality), ``chosen`` and ``propensity`` are required."""
        row = dict(record)
        for key in ("request_id", "models", "ranking", "predicted", "chosen"):
            if row.get(key) in (None, ""):
                raise DataError(f"decision record without {key!r}", path=str(self.path), column=key)
        text = row.pop("text", None)
        row.setdefault("text_hash", text_hash(text) if isinstance(text, str) else None)
        if row["text_hash"] is None:
            raise DataError("decision record without its routing text", path=str(self.path), column="text")
        row["text"] = text if self.store_text else None
        row.setdefault("time", time.time())
        row.setdefault("propensity", 1.0)
        unknown = sorted(set(row) - set(_COLUMNS))
        if unknown:
            raise DataError(f"unknown decision field(s) {', '.join(unknown)}", path=str(self.path))
        values = [json.dumps(row.get(c), allow_nan=False) if c in _JSON_COLUMNS else row.get(c) for c in _COLUMNS]
        with self._lock:
            self._follow_newest()
            try:
                self._conn.execute(f"INSERT INTO decisions ({', '.join(_COLUMNS)}) VALUES "
                                   f"({', '.join('?' * len(_COLUMNS))})", values)
            except sqlite3.IntegrityError:
                raise DataError(f"duplicate request id {row['request_id']!r}", path=str(self.path),
                                column="request_id") from None
            self._appends += 1
            if self._appends % 256 == 0:
                self._maybe_rotate()

    def update_outcome(self, request_id: str, **fields: Any) -> None:
        """Fill in what is known only after the backend answered (realised_cost, latency_ms,
        status, fallback, chosen/rank after a fallback). Unknown ids are ignored: the record may
        have been rotated into an older segment already closed for writing."""
        allowed = {"realised_cost", "latency_ms", "status", "fallback", "chosen", "rank"}
        bad = sorted(set(fields) - allowed)
        if bad:
            raise DataError(f"cannot update decision field(s) {', '.join(bad)}", path=str(self.path))
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._conn.execute(f"UPDATE decisions SET {sets} WHERE request_id = ?", [*fields.values(), request_id])

    def add_feedback(self, request_id: str, score: float, *, source: str = "api", replace: bool = False,
                     where: str | None = None, key_ids: Collection[str] | None = None) -> None:
        """Attach a score in [0, 1] to a logged decision. Unknown ids and a second score for the
        same request are errors (``replace`` overwrites); nothing already logged changes on error.
        ``where`` names the input (file and row) in error messages. ``key_ids``: the request must
        have been logged with one of these key ids (:class:`NotYourRequest` otherwise), checked in
        the same locked step that writes, so another key can neither score a request nor use up
        its one feedback."""
        at = where or str(self.path)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score) \
                or not 0.0 <= float(score) <= 1.0:
            raise DataError(f"feedback score must be a number in [0, 1], got {score!r}", path=at, column="score")
        if source not in FEEDBACK_SOURCES:
            raise DataError(f"unknown feedback source {source!r}; one of {', '.join(FEEDBACK_SOURCES)}",
                            path=at, column="source")
        with self._lock:
            segment = self._segment_with(request_id)
            if segment is None:
                raise DataError(f"unknown request id {shown(request_id)}: no decision logged with it", path=at,
                                column="request_id")
            conn = self._conn if segment == self._current else self._connect(segment)
            try:
                if key_ids is not None:
                    owner = conn.execute("SELECT key_id FROM decisions WHERE request_id = ?", (request_id,)).fetchone()
                    if owner is None or owner[0] not in key_ids:
                        raise NotYourRequest(f"request {shown(request_id)} was made with another API key", path=at,
                                             column="request_id")
                verb = "INSERT OR REPLACE" if replace else "INSERT"
                conn.execute(f"{verb} INTO feedback (request_id, score, time, source) VALUES (?, ?, ?, ?)",
                             (request_id, float(score), time.time(), source))
            except sqlite3.IntegrityError:
                raise DataError(f"request {shown(request_id)} already has feedback (replace=True overwrites)",
                                path=at, column="request_id") from None
            finally:
                if conn is not self._conn:
                    conn.close()

    def import_feedback(self, path: str | os.PathLike, *, source: str = "import", replace: bool = False) -> int:
        """Feedback from a JSONL or CSV file with ``request_id`` and ``score`` columns. Validates
        every row first, so a bad row (named by file and row) leaves the log unchanged."""
        from routecast.data.loaders import read_source

        frame, _ = read_source(path)
        for column in ("request_id", "score"):
            if column not in frame.columns:
                raise DataError(f"missing required column {column!r}", path=str(path), column=column)
        rows = []
        seen: dict[str, int] = {}
        for i, (rid, score) in enumerate(zip(frame["request_id"], frame["score"]), start=1):
            where = f"{path}, row {i}"
            rid = str(rid)
            if rid in seen:
                raise DataError(f"request id {rid!r} appears twice (rows {seen[rid]} and {i})", path=str(path),
                                row=i, column="request_id")
            seen[rid] = i
            try:
                value = float(score)
            except (TypeError, ValueError):
                raise DataError(f"score {score!r} is not a number", path=str(path), row=i, column="score") from None
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise DataError(f"score {score!r} is outside [0, 1]", path=str(path), row=i, column="score")
            with self._lock:
                segment = self._segment_with(rid)
                known = segment is not None and (replace or not self._has_feedback(segment, rid))
            if segment is None:
                raise DataError(f"unknown request id {rid!r}", path=str(path), row=i, column="request_id")
            if not known:
                raise DataError(f"request {rid!r} already has feedback", path=str(path), row=i, column="request_id")
            rows.append((rid, value, where))
        for rid, value, where in rows:
            self.add_feedback(rid, value, source=source, replace=replace, where=where)
        return len(rows)

    # ----------------------------------------------------------------- read
    def segments(self) -> list[Path]:
        """Every segment, oldest first: ``PATH`` itself, then ``<stem>.1<suffix>``, ``<stem>.2<suffix>``..."""
        later = [p for p in self.path.parent.glob(f"{self.path.stem}.*{self.path.suffix}")
                 if _segment_number(p, self.path) > 0]
        return [self.path] + sorted(later, key=lambda p: _segment_number(p, self.path))

    def records(self) -> Iterator[dict[str, Any]]:
        """Every decision with its feedback score (None until feedback arrives), oldest first."""
        for segment in self.segments():
            conn = self._conn if segment == self._current else self._connect(segment)
            try:
                cursor = conn.execute(
                    f"SELECT {', '.join('d.' + c for c in _COLUMNS)}, f.score, f.source FROM decisions d "
                    "LEFT JOIN feedback f ON f.request_id = d.request_id ORDER BY d.time, d.rowid")
                for values in cursor:
                    rec = dict(zip(_COLUMNS, values[:-2]))
                    for c in _JSON_COLUMNS:
                        rec[c] = json.loads(rec[c]) if rec[c] is not None else None
                    rec["score"], rec["feedback_source"] = values[-2], values[-1]
                    yield rec
            finally:
                if conn is not self._conn:
                    conn.close()

    def get(self, request_id: str) -> dict[str, Any] | None:
        return next((r for r in self.records() if r["request_id"] == request_id), None)

    def conversation_model(self, conversation_id: str) -> tuple[str, dict[str, float]] | None:
        """The model and predicted qualities of a conversation's first logged turn (sticky routing)."""
        with self._lock:
            for segment in self.segments():  # oldest first: the first turn is in the oldest segment
                conn = self._conn if segment == self._current else self._connect(segment)
                try:
                    row = conn.execute("SELECT chosen, predicted FROM decisions WHERE conversation_id = ? "
                                       "ORDER BY time, rowid LIMIT 1", (conversation_id,)).fetchone()
                finally:
                    if conn is not self._conn:
                        conn.close()
                if row is not None:
                    return row[0], json.loads(row[1])
        return None

    # ------------------------------------------------------------- helpers
    def _segment_with(self, request_id: str) -> Path | None:
        for segment in reversed(self.segments()):
            conn = self._conn if segment == self._current else self._connect(segment)
            try:
                if conn.execute("SELECT 1 FROM decisions WHERE request_id = ?", (request_id,)).fetchone():
                    return segment
            finally:
                if conn is not self._conn:
                    conn.close()
        return None

    def _has_feedback(self, segment: Path, request_id: str) -> bool:
        conn = self._conn if segment == self._current else self._connect(segment)
        try:
            return conn.execute("SELECT 1 FROM feedback WHERE request_id = ?", (request_id,)).fetchone() is not None
        finally:
            if conn is not self._conn:
                conn.close()

    def _size(self) -> int:
        return sum(os.path.getsize(p) for p in (self._current, Path(f"{self._current}-wal")) if p.exists())

    def _follow_newest(self, *, force: bool = False) -> None:
        """Move to the newest segment if another process started one (checked once a second)."""
        now = time.monotonic()
        if not force and now - self._checked_at < 1.0:
            return
        self._checked_at = now
        newest = self.segments()[-1]
        if newest != self._current:
            self._conn.close()
            self._current = newest
            self._conn = self._connect(newest)

    def _maybe_rotate(self) -> None:
        if self._size() < self.max_bytes:
            return
        import fcntl

        with open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._follow_newest(force=True)
            if self._current != self.segments()[-1] or self._size() < self.max_bytes:
                return  # another writer rotated meanwhile
            number = _segment_number(self._current, self.path) if self._current != self.path else 0
            target = self.path.with_name(f"{self.path.stem}.{number + 1}{self.path.suffix}")
            self._conn.close()
            self._current = target
            self._conn = self._connect(target)


def _segment_number(path: Path, current: Path) -> int:
    middle = path.name[len(current.stem) + 1: len(path.name) - len(current.suffix)]
    return int(middle) if middle.isdigit() else -1


def outcome_log_from_decisions(log: DecisionLog | str | os.PathLike, *, models: list[str] | None = None):
    """The decisions with feedback as an :class:`~routecast.data.outcome_log.OutcomeLog` in which
    only the chosen cell of each prompt is observed (bandit feedback).

    Costs: the realised cost where logged, else the expected one, in the chosen cell. Metadata
    keeps, per prompt, the ``chosen`` model, its ``propensity``, the logging ``lam`` and
    ``operating_point``, the ``request_id`` and the ``predicted_<model>`` qualities of the logging
    router (the DR reward model), and ``shadow_chosen`` (the model a shadow checkpoint chose on the
    same request, None where it made no decision) when the server ran one. Needs the routing text
    (``store_text``).
    """
    import pandas as pd

    from routecast.data.outcome_log import OutcomeLog

    store = log if isinstance(log, DecisionLog) else DecisionLog(log)
    rows = [r for r in store.records() if r["score"] is not None]
    if not rows:
        raise DataError("no decision in the log has feedback yet (POST /v1/feedback or routecast feedback import)",
                        path=str(store.path))
    missing_text = [r["request_id"] for r in rows if r["text"] is None]
    if missing_text:
        raise DataError(f"{len(missing_text)} decision(s) with feedback have no stored text (the server keeps only "
                        "a hash unless started with text logging on); first: " + repr(missing_text[0]),
                        path=str(store.path), column="text")
    names = list(models or rows[0]["models"])
    index = {m: j for j, m in enumerate(names)}
    n, m = len(rows), len(names)
    scores = np.full((n, m), np.nan)
    costs = np.full((n, m), np.nan)
    meta: dict[str, list] = {"request_id": [], "chosen": [], "propensity": [], "lam": [], "operating_point": []}
    predicted = np.full((n, m), np.nan)
    for i, r in enumerate(rows):
        if r["chosen"] not in index:
            raise DataError(f"decision {r['request_id']!r} chose {r['chosen']!r}, not one of {', '.join(names)}",
                            path=str(store.path), row=i + 1, column="chosen")
        j = index[r["chosen"]]
        scores[i, j] = r["score"]
        cost = r["realised_cost"] if r["realised_cost"] is not None else r["expected_cost"]
        costs[i, j] = np.nan if cost is None else cost
        for name, q in (r["predicted"] or {}).items():
            if name in index:
                predicted[i, index[name]] = q
        for key in ("request_id", "chosen", "propensity", "lam", "operating_point"):
            meta[key].append(r[key])
    shadows = [(r["extra"] or {}).get("shadow") for r in rows]
    if any(shadows):
        meta["shadow_chosen"] = [(s or {}).get("model") for s in shadows]
    frame = pd.DataFrame(meta)
    for j, name in enumerate(names):
        frame[f"predicted_{name}"] = predicted[:, j]
    return OutcomeLog(prompt_ids=np.asarray(meta["request_id"], dtype=object),
                      prompts=np.asarray([r["text"] for r in rows], dtype=object), models=tuple(names),
                      scores=scores, costs=costs, meta=frame, source=str(store.path))


def write_bandit_log(log: DecisionLog | str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """Write :func:`outcome_log_from_decisions` as a long-format log (``.jsonl`` / ``.csv`` /
    ``.parquet``, atomically): one row per scored decision, its chosen cell only, with the
    ``propensity`` column that propensity-weighted training and off-policy evaluation read."""
    from routecast.data.collect import write_records

    bandit = outcome_log_from_decisions(log)
    frame = bandit.to_long()
    write_records(Path(out), frame.to_dict("records"))
    return {"n_requests": bandit.n_prompts, "models": list(bandit.models), "out": str(out),
            "mean_propensity": float(np.mean(bandit.meta["propensity"].to_numpy(dtype=float)))}
