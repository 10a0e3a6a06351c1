"""``score``: fill the ``score`` column of a collected log from its responses, or judge pairs.

:func:`score_log` runs one scorer (:mod:`routecast.data.scorers`: exact, choice, numeric, regex,
a user's entry point, or an MT-Bench style LLM judge) over every row of a long-format log that
has a ``response`` and no score yet (``overwrite=True`` rescores all), and writes the log with
``score`` filled -- plus ``judge_output`` (the judge's raw text) and ``judge_rating`` for the
judge -- atomically, in the format of ``out``'s extension. The result loads with
:func:`routecast.data.load_log` and trains like any log.

:func:`judge_pairs` asks a judge to compare the responses of two models to the same prompt
(every pair of models, or each model against ``reference_model``) and writes a pairwise
preference log (``prompt_id, prompt, model_a, model_b, winner, judge_output``) for preference
routers (``mf``, ``sw-ranking``).

Bad input is one :class:`~routecast.errors.DataError` naming the file, the row and the field: a
missing ``response``/``reference`` column or cell, a scorer that raises or returns something
other than a number in [0, 1], a judge output with no rating or verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routecast.data.scorers import Scorer, ScoringRow, make_scorer
from routecast.errors import DataError


@dataclass
class ScoreResult:
    out: Path
    rows: int
    scored: int
    kept: int
    no_response: int
    mean_score: float | None
    judge_calls: int = 0
    judge_cached: int = 0


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or \
        (isinstance(value, str) and value.strip() == "")


def _read(source, columns, needed):
    from routecast.data.formats import ROW
    from routecast.data.loaders import read_source

    frame, label = read_source(source, columns)
    for col in needed:
        if col not in frame.columns:
            raise DataError(f"missing required column {col!r} (a log written by routecast collect has it)",
                            path=label, column=col)
    records = frame.to_dict("records")
    rows = [int(r.pop(ROW)) for r in records]
    return records, rows, label


def score_log(source, scorer: str | Scorer, out: str | Path, *, reference: str = "reference", columns=None,
              overwrite: bool = False, progress: bool = True, **scorer_params) -> ScoreResult:
    """Score the responses of the log ``source`` and write the scored log to ``out``.

    ``scorer``: a name (``exact``, ``choice``, ``numeric``, ``regex``, ``entry:NAME``, ``judge``)
    with ``scorer_params`` (``pattern=`` for regex; ``endpoints=``, ``model=``, ``cache=`` for the
    judge; see :mod:`routecast.data.scorers`), or a :class:`Scorer`. ``reference`` names the
    column holding the expected answer for the scorers that need one.
    """
    from routecast.data.collect import write_records
    from routecast.data.scorers.judge import NoVerdict, SingleAnswerJudge, parse_rating

    if isinstance(scorer, str):
        scorer = make_scorer(scorer, **scorer_params)
    elif scorer_params:
        raise DataError("scorer parameters go with a scorer name, not with a Scorer instance")
    records, rows, label = _read(source, columns, ("prompt", "model", "response"))
    if scorer.needs_reference and reference not in records[0]:
        raise DataError(f"scorer {scorer.name!r} compares with a reference answer, but there is no column "
                        f"{reference!r}", path=label, column=reference)
    todo, no_response, kept = [], 0, 0
    for i, record in enumerate(records):
        if not overwrite and not _missing(record.get("score")):
            kept += 1
            continue
        if _missing(record.get("response")):
            no_response += 1
            record["score"] = None
            continue
        if scorer.needs_reference and _missing(record.get(reference)):
            raise DataError(f"scorer {scorer.name!r} needs a reference answer on every row", path=label,
                            row=rows[i], column=reference)
        todo.append(i)

    calls = cached = 0
    if isinstance(scorer, SingleAnswerJudge):
        from routecast.data.scorers.judge import JudgeCache

        cache = JudgeCache(scorer.cache if scorer.cache is not None else _cache_path(out))
        asks = {i: scorer.conversation(str(records[i]["prompt"]), str(records[i]["response"])) for i in todo}
        cached = sum(cache.get(key) is not None for key, _ in asks.values())
        outputs = scorer.ask(dict(asks.values()), cache)
        calls = len({k for k, _ in asks.values()}) - cached
        for i in todo:
            output = outputs[asks[i][0]]
            if isinstance(output, Exception):
                raise DataError(f"judge {scorer.model!r}: {output}", path=label, row=rows[i], column="judge_output")
            records[i]["judge_output"] = output
            try:
                records[i]["judge_rating"] = parse_rating(output)
            except NoVerdict as exc:
                raise DataError(f"{exc}: {_short(output)}", path=label, row=rows[i], column="judge_output") from None
            records[i]["score"] = scorer.score_of(output)
    else:
        from routecast.progress import Progress

        with Progress(f"score ({scorer.name})", total=len(todo), unit="rows", enabled=progress) as bar:
            for i in todo:
                record = records[i]
                row = ScoringRow(prompt=str(record["prompt"]), response=str(record["response"]),
                                 model=str(record["model"]), reference=record.get(reference), record=dict(record))
                try:
                    value = scorer.score(row)
                except Exception as exc:  # the scorer is user code: any failure is one line naming the row
                    raise DataError(f"scorer {scorer.name!r} raised {type(exc).__name__}: {exc}"[:400],
                                    path=label, row=rows[i], column="response") from None
                records[i]["score"] = _check_score(value, scorer, label, rows[i])
                bar.advance()
    write_records(Path(out), records)
    scores = [r["score"] for r in records if not _missing(r.get("score"))]
    scores = [float(s) for s in scores]
    return ScoreResult(out=Path(out), rows=len(records), scored=len(todo), kept=kept, no_response=no_response,
                       mean_score=float(np.mean(scores)) if scores else None, judge_calls=calls,
                       judge_cached=cached)


def _check_score(value, scorer, label, row) -> float:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.number)) and math.isfinite(float(value)) and 0 <= float(value) <= 1:
        return float(value)
    raise DataError(f"scorer {scorer.name!r} returned {value!r}"[:200] + ", expected a number in [0, 1]",
                    path=label, row=row, column="score")


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _cache_path(out) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".judge-cache.jsonl")


def judge_pairs(source, endpoints, out: str | Path, *, model: str | None = None, reference_model: str | None = None,
                cache: str | Path | None = None, swap: bool = True, columns=None, concurrency: int = 8,
                retries: int = 5, backoff: float = 0.5) -> ScoreResult:
    """Compare responses pairwise with an LLM judge; write a preference log to ``out``."""
    from routecast.data.collect import write_records
    from routecast.data.names import model_name
    from routecast.data.scorers.judge import JudgeCache, NoVerdict, PairwiseJudge

    judge = PairwiseJudge(endpoints, model, cache, concurrency, retries, backoff, swap)
    records, rows, label = _read(source, columns, ("prompt", "model", "response"))
    by_prompt: dict[str, dict[str, int]] = {}
    for i, record in enumerate(records):
        if _missing(record.get("response")):
            continue
        pid = str(record.get("prompt_id") if not _missing(record.get("prompt_id")) else record["prompt"])
        by_prompt.setdefault(pid, {})[model_name(record["model"])] = i
    if reference_model is not None:
        reference_model = model_name(reference_model)
    pairs = []
    for pid, answers in by_prompt.items():
        names = sorted(answers)
        for x, a in enumerate(names):
            for b in names[x + 1:]:
                if reference_model is not None and reference_model not in (a, b):
                    continue
                if reference_model is not None and b == reference_model:
                    a, b = b, a
                pairs.append((pid, a, b))
    if reference_model is not None and not pairs:
        raise DataError(f"no prompt has answers of both {reference_model!r} and another model", path=label,
                        column="model")
    store = JudgeCache(cache if cache is not None else _cache_path(out))
    asks = {}
    for pid, a, b in pairs:
        ia, ib = by_prompt[pid][a], by_prompt[pid][b]
        q, ra, rb = str(records[ia]["prompt"]), str(records[ia]["response"]), str(records[ib]["response"])
        asks[(pid, a, b, 0)] = judge.conversation(q, ra, rb)
        if swap:
            asks[(pid, a, b, 1)] = judge.conversation(q, rb, ra)
    cached = sum(store.get(key) is not None for key, _ in asks.values())
    outputs = judge.ask(dict(asks.values()), store)
    out_records = []
    for pid, a, b in pairs:
        ia = by_prompt[pid][a]
        first = outputs[asks[(pid, a, b, 0)][0]]
        second = outputs[asks[(pid, a, b, 1)][0]] if swap else None
        for output in (first, second):
            if isinstance(output, Exception):
                raise DataError(f"judge {judge.model!r}: {output}", path=label, row=rows[ia], column="judge_output")
        try:
            winner = judge.winner(first, second)
        except NoVerdict as exc:
            bad = first if not _has_verdict(first) else second
            raise DataError(f"{exc}: {_short(bad)}", path=label, row=rows[ia], column="judge_output") from None
        out_records.append({"prompt_id": pid, "prompt": records[ia]["prompt"], "model_a": a, "model_b": b,
                            "winner": winner, "judge_output": first if second is None else [first, second]})
    if not out_records:
        raise DataError("no prompt has responses of two models to compare", path=label, column="response")
    write_records(Path(out), out_records)
    return ScoreResult(out=Path(out), rows=len(out_records), scored=len(out_records), kept=0, no_response=0,
                       mean_score=None, judge_calls=len({k for k, _ in asks.values()}) - cached, judge_cached=cached)


def _has_verdict(text) -> bool:
    from routecast.data.scorers.judge import NoVerdict, parse_verdict

    try:
        parse_verdict(text)
        return True
    except NoVerdict:
        return False
