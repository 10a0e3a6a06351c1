"""Numeric answer, GSM8K style: the response's final number equals the reference's.

The final answer is :func:`routecast.data.answers.final_answer` (a ``\\boxed{}``, a GSM8K
``####`` marker, else the last number in the text; ``$``, thousands commas and trailing zeros do
not matter). A response whose final answer is not a number scores 0.
"""

from __future__ import annotations

import math

from routecast.data.answers import canonical_number, final_answer
from routecast.data.scorers.base import Scorer, ScoringRow


def _as_float(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


class NumericScorer(Scorer):
    name = "numeric"

    def __init__(self, tolerance: float = 1e-6):
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
            raise TypeError(f"tolerance must be a number >= 0, got {tolerance!r}")
        self.tolerance = tolerance

    def score(self, row: ScoringRow) -> float:
        reference = str(row.reference)
        want = _as_float(canonical_number(reference.strip()) or final_answer(reference))
        got = _as_float(final_answer(row.response))
        if want is None or got is None:
            return 0.0
        return float(math.isclose(got, want, rel_tol=0.0, abs_tol=self.tolerance))
