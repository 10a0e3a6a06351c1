"""Exact match: the response is the reference, up to case, punctuation and spacing."""

from __future__ import annotations

from routecast.data.answers import normalise_text
from routecast.data.scorers.base import Scorer, ScoringRow


class ExactMatchScorer(Scorer):
    name = "exact"

    def __init__(self, normalise: bool = True):
        self.normalise = normalise

    def score(self, row: ScoringRow) -> float:
        if row.response is None:
            return 0.0
        if not self.normalise:
            return float(row.response.strip() == str(row.reference).strip())
        got = normalise_text(row.response)
        return float(got is not None and got == normalise_text(str(row.reference)))
