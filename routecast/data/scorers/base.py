"""What every scorer gets and gives: one collected row in, a score in [0, 1] out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ScoringRow:
    """One (prompt, model) row of a collected log."""

    prompt: str
    response: str | None
    model: str
    reference: Any = None
    record: dict = field(default_factory=dict)


class Scorer:
    """Base class: ``score(row)`` -> float in [0, 1]; ``needs_reference`` says whether rows must
    carry a reference answer (checked, with file/row/column, before anything is scored)."""

    name = "scorer"
    needs_reference = True

    def score(self, row: ScoringRow) -> float:  # pragma: no cover - interface
        raise NotImplementedError
