"""Multiple choice: the letter (A-E) the response states as its answer is the reference letter."""

from __future__ import annotations

from routecast.data.answers import extract_choice
from routecast.data.scorers.base import Scorer, ScoringRow


class ChoiceScorer(Scorer):
    name = "choice"

    def score(self, row: ScoringRow) -> float:
        want = extract_choice(str(row.reference))
        got = extract_choice(row.response) if row.response else None
        return float(got is not None and got == want)
