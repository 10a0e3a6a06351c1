"""Agreement between the final answers of the models a cascade has already called.

When two independently trained models reach the same final answer, that answer is much more
likely right than either model's answer alone (the self-consistency / "model agreement" idea
behind several cascade papers). So from the second stage on, a cascade can stop when the
current model agrees with those before it. Answers are compared after
:func:`routecast.cascade.answers.final_answer` normalisation; a missing answer agrees with nothing.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from routecast.cascade.answers import final_answer
from routecast.data.answers import ANSWER_SOURCES, read_answer

#: how a response states its final answer: the rule of
#: :func:`routecast.data.answers.read_answer` that read it (``none``: no usable text; ``json``, ``boxed``,
#: ``marker`` (GSM8K ``#### 42``), ``choice``, ``phrase`` ("the answer is 3/4"), ``code``, ``number``
#: (only a last number in the text), ``text`` (the whole text)).
#: The format is evidence on its own: a maths answer that skips the requested marker, or a
#: RouterArena answer without the requested box, is right far less often (GSM8K Mixtral: 0.68
#: with the marker, 0.23 without; RouterArena gemini: 0.71 boxed, 0.45 not).
ANSWER_FORMATS = ANSWER_SOURCES


def answer_format(text: object, declared: str | None = "auto") -> str:
    """Which rule of :func:`routecast.data.answers.read_answer` gives ``text``'s final answer."""
    return read_answer(text, declared).source


def format_onehot(responses, declared: str | None = "auto") -> np.ndarray:
    """(n, len(ANSWER_FORMATS)) one-hot of :func:`answer_format` for a sequence of responses."""
    index = {f: i for i, f in enumerate(ANSWER_FORMATS)}
    out = np.zeros((len(responses), len(ANSWER_FORMATS)))
    for row, text in enumerate(responses):
        out[row, index[answer_format(text, declared)]] = 1.0
    return out


def agreement_score(answers: Sequence[str | None]) -> float:
    """Share of the earlier answers equal to the last one, in [0, 1].

    ``answers`` are normalised final answers in calling order. With fewer than two answers there
    is nothing to agree with: the score is NaN, which never reaches a threshold (never stops).
    """
    if len(answers) < 2:
        return float("nan")
    current = answers[-1]
    if current is None:
        return 0.0
    earlier = answers[:-1]
    return float(sum(a == current for a in earlier) / len(earlier))


def answer_matrix(responses: np.ndarray, declared: str | None = "auto") -> np.ndarray:
    """(n, k) object array of normalised final answers for an (n, k) array of response texts."""
    flat = [final_answer(r, declared) for r in np.asarray(responses, dtype=object).reshape(-1)]
    return np.asarray(flat, dtype=object).reshape(np.shape(responses))


def agreement_matrix(answers: np.ndarray) -> np.ndarray:
    """(n, k) agreement score of each column with the columns before it (column 0 is NaN)."""
    answers = np.asarray(answers, dtype=object)
    n, k = answers.shape
    out = np.full((n, k), np.nan)
    for j in range(1, k):
        current = answers[:, j]
        valid = np.array([a is not None for a in current])
        same = np.zeros(n)
        for i in range(j):
            same += np.array([a is not None and a == b for a, b in zip(current, answers[:, i])], dtype=float)
        out[:, j] = np.where(valid, same / j, 0.0)
    return out
