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


def answer_matrix(responses: np.ndarray) -> np.ndarray:
    """(n, k) object array of normalised final answers for an (n, k) array of response texts."""
    flat = [final_answer(r) for r in np.asarray(responses, dtype=object).reshape(-1)]
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
