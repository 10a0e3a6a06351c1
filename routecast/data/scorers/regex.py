"""Regular expression: does the response match ``pattern`` (or does its group equal the reference)?"""

from __future__ import annotations

import re

from routecast.data.scorers.base import Scorer, ScoringRow


class RegexScorer(Scorer):
    name = "regex"
    needs_reference = False

    def __init__(self, pattern: str, ignore_case: bool = False):
        try:
            self.regex_ = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        except (re.error, TypeError) as exc:
            raise TypeError(f"pattern {pattern!r} is not a regular expression ({exc})") from None
        self.pattern, self.ignore_case = pattern, ignore_case

    def score(self, row: ScoringRow) -> float:
        match = self.regex_.search(row.response or "")
        if match is None:
            return 0.0
        if self.regex_.groups and row.reference is not None:
            got = match.group(1) or ""
            want = str(row.reference)
            if self.ignore_case:
                got, want = got.lower(), want.lower()
            return float(got.strip() == want.strip())
        return 1.0
