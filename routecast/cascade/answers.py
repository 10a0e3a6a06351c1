"""Final-answer extraction, re-exported from :mod:`routecast.data.answers` (moved down a layer so
the data layer's scorers can use it; cascades import it from here or from there)."""

from __future__ import annotations

from routecast.data.answers import canonical_number, extract_choice, extract_number, final_answer

__all__ = ["canonical_number", "extract_choice", "extract_number", "final_answer"]
