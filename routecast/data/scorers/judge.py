"""LLM judges through an OpenAI-compatible endpoint, graded as MT-Bench grades.

* :class:`SingleAnswerJudge`: MT-Bench's single-answer grading. The judge explains, then rates the
  answer 1-10 as ``Rating: [[7]]``; the score is ``(rating - 1) / 9`` so the scale's ends are 0
  and 1. The rating is read as MT-Bench reads it (``[[x]]``, else ``[x]``).
* :class:`PairwiseJudge`: MT-Bench's pairwise comparison. The judge sees two answers and ends with
  ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie). With ``swap=True`` (the default, as MT-Bench's
  "two games") each pair is judged in both orders; verdicts that disagree count as a tie, which
  cancels the judge's position bias.

Judging costs money and time, so every judge output is cached: an append-only, fsync'd JSONL file
keyed by sha256 of (judge model, template, prompt, answers). A rerun -- or a second scorer run
over an overlapping log -- asks the judge only what it has not answered yet. The judge's raw
output is kept (``judge_output`` in the scored log, and in the cache). An output with no rating
or verdict is one :class:`~routecast.errors.DataError` naming the file, the row and
``judge_output``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from pathlib import Path

from routecast.data.scorers.base import Scorer
from routecast.errors import ConfigError

SINGLE_SYSTEM = "You are a helpful assistant."
SINGLE_TEMPLATE = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below. Your evaluation should consider factors such as the "
    "helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. Begin your "
    "evaluation by providing a short explanation. Be as objective as possible. After providing your "
    "explanation, you must rate the response on a scale of 1 to 10 by strictly following this format: "
    "\"[[rating]]\", for example: \"Rating: [[5]]\".\n\n[Question]\n{question}\n\n"
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]")
PAIR_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants "
    "to the user question displayed below. You should choose the assistant that follows the user's "
    "instructions and answers the user's question better. Your evaluation should consider factors such as the "
    "helpfulness, relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your "
    "evaluation by comparing the two responses and provide a short explanation. Avoid any position biases and "
    "ensure that the order in which the responses were presented does not influence your decision. Do not "
    "allow the length of the responses to influence your evaluation. Do not favor certain names of the "
    "assistants. Be as objective as possible. After providing your explanation, output your final verdict by "
    "strictly following this format: \"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is better, "
    "and \"[[C]]\" for a tie.")
PAIR_TEMPLATE = (
    "[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n"
    "[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n"
    "[The End of Assistant B's Answer]")
_RATING = (re.compile(r"\[\[(\d+\.?\d*)\]\]"), re.compile(r"\[(\d+\.?\d*)\]"))
_VERDICT = re.compile(r"\[\[([ABC])\]\]")


class NoVerdict(ValueError):
    """A judge output without the rating/verdict its format asks for."""


def parse_rating(text: str) -> float:
    for pattern in _RATING:
        found = pattern.findall(text or "")
        if found:
            rating = float(found[-1])
            if 1 <= rating <= 10:
                return rating
            raise NoVerdict(f"the judge's rating {rating:g} is outside 1-10")
    raise NoVerdict("the judge answered with no [[rating]] number")


def parse_verdict(text: str) -> str:
    found = _VERDICT.findall(text or "")
    if not found:
        raise NoVerdict("the judge answered with no [[A]]/[[B]]/[[C]] verdict")
    return found[-1]


class JudgeCache:
    """Judge outputs by key, on disk (append-only JSONL, fsync'd per entry); ``None`` path = memory only."""

    def __init__(self, path: str | Path | None):
        self.path = None if path is None else Path(path)
        self.entries: dict[str, str] = {}
        if self.path is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.entries[entry["key"]] = entry["output"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line torn by a kill: that judgement is simply asked again

    @staticmethod
    def key(*parts: str) -> str:
        return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def put(self, key: str, output: str, judge_model: str) -> None:
        self.entries[key] = output
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, "judge_model": judge_model, "output": output},
                                    ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


class _Judge(Scorer):
    needs_reference = False

    def __init__(self, endpoints, model: str | None = None, cache: str | Path | None = None,
                 concurrency: int = 8, retries: int = 5, backoff: float = 0.5):
        from routecast.data.endpoints import load_endpoints

        found = load_endpoints(endpoints)
        if model is None:
            if len(found) != 1:
                raise ConfigError(f"the judge endpoints file has {len(found)} endpoints {sorted(found)}; "
                                  "name the judge with model=")
            model = next(iter(found))
        if model not in found:
            raise ConfigError(f"judge model {model!r} is not in the endpoints file; it has {sorted(found)}")
        self.endpoints, self.model, self.cache = endpoints, model, cache
        self.concurrency, self.retries, self.backoff = concurrency, retries, backoff
        self.endpoint_ = found[model]

    def ask(self, conversations: dict[str, list[dict]], cache: JudgeCache) -> dict[str, str | Exception]:
        """Judge outputs for ``{key: messages}``: cached ones from ``cache``, the rest asked concurrently.
        A call that fails after its retries maps to its :class:`CallFailed`."""
        out: dict[str, str | Exception] = {k: cache.get(k) for k in conversations if cache.get(k) is not None}
        missing = {k: v for k, v in conversations.items() if k not in out}
        if missing:
            asyncio.run(self._ask_all(missing, cache, out))
        return out

    async def _ask_all(self, missing, cache, out) -> None:
        from routecast.data.chat_calls import CallFailed, EndpointSlot, chat

        slot = EndpointSlot(self.endpoint_)
        global_slots = asyncio.Semaphore(self.concurrency)

        async def one(key, messages):
            try:
                result = await chat(slot, messages, retries=self.retries, backoff=self.backoff,
                                    global_slots=global_slots, temperature=0)
            except CallFailed as exc:
                out[key] = exc
                return
            cache.put(key, result.text, self.model)
            out[key] = result.text

        try:
            await asyncio.gather(*(one(k, m) for k, m in missing.items()))
        finally:
            await slot.close()


class SingleAnswerJudge(_Judge):
    """MT-Bench single-answer grading (see the module docstring)."""

    name = "judge"

    def conversation(self, question: str, answer: str) -> tuple[str, list[dict]]:
        key = JudgeCache.key(self.model, "single-v1", question, answer)
        return key, [{"role": "system", "content": SINGLE_SYSTEM},
                     {"role": "user", "content": SINGLE_TEMPLATE.format(question=question, answer=answer)}]

    @staticmethod
    def score_of(output: str) -> float:
        return (parse_rating(output) - 1.0) / 9.0


class PairwiseJudge(_Judge):
    """MT-Bench pairwise comparison (see the module docstring); used by
    :func:`routecast.data.score.judge_pairs`."""

    name = "judge-pairwise"

    def __init__(self, endpoints, model: str | None = None, cache=None, concurrency: int = 8,
                 retries: int = 5, backoff: float = 0.5, swap: bool = True):
        super().__init__(endpoints, model, cache, concurrency, retries, backoff)
        self.swap = swap

    def conversation(self, question: str, answer_a: str, answer_b: str) -> tuple[str, list[dict]]:
        key = JudgeCache.key(self.model, "pair-v1", question, answer_a, answer_b)
        text = PAIR_TEMPLATE.format(question=question, answer_a=answer_a, answer_b=answer_b)
        return key, [{"role": "system", "content": PAIR_SYSTEM}, {"role": "user", "content": text}]

    @staticmethod
    def winner(first: str, second: str | None) -> str:
        """``model_a``/``model_b``/``tie`` from the verdict with a first (and, swapped, b first)."""
        names = {"A": "model_a", "B": "model_b", "C": "tie"}
        one = names[parse_verdict(first)]
        if second is None:
            return one
        two = {"A": "model_b", "B": "model_a", "C": "tie"}[parse_verdict(second)]
        return one if one == two else "tie"
