"""Scorers: turn a collected response into a score in [0, 1] (what ``routecast score`` runs).

=================  ==========================================================================
name               score
=================  ==========================================================================
``exact``          1 if the response equals the reference (case, punctuation, spaces ignored)
``choice``         1 if the multiple-choice letter stated in the response is the reference's
``numeric``        1 if the final number (GSM8K ``#### 42``, else the last number) equals the
                   reference's (``tolerance`` for floats)
``regex``          1 if ``pattern`` matches; with a capture group and a reference, 1 if the
                   group's text equals the reference
``entry:NAME``     a user's own function, registered as entry point ``NAME`` in the group
                   ``routecast.scorers`` of an installed package (loaded by name, never exec'd)
``judge``          an LLM judge, MT-Bench single-answer grading 1-10 -> (rating - 1) / 9
=================  ==========================================================================

Pairwise judging (MT-Bench's A/B/tie verdicts, both orders) makes a preference log instead of
scores: :func:`routecast.data.score.judge_pairs`. Answer extraction is
:mod:`routecast.data.answers`, the same as the cascades' agreement votes.
"""

from __future__ import annotations

from routecast.data.scorers.base import Scorer, ScoringRow
from routecast.errors import ConfigError

NAMES = ("exact", "choice", "numeric", "regex", "entry:NAME", "judge")


def make_scorer(name: str, **params) -> Scorer:
    """A scorer by name (see the module docstring) with its parameters."""
    from routecast.data.scorers.choice import ChoiceScorer
    from routecast.data.scorers.entry_point import EntryPointScorer
    from routecast.data.scorers.exact import ExactMatchScorer
    from routecast.data.scorers.numeric import NumericScorer
    from routecast.data.scorers.regex import RegexScorer

    if name.startswith("entry:"):
        return EntryPointScorer(name.partition(":")[2], **params)
    if name == "judge":
        from routecast.data.scorers.judge import SingleAnswerJudge

        return SingleAnswerJudge(**params)
    classes = {"exact": ExactMatchScorer, "choice": ChoiceScorer, "numeric": NumericScorer, "regex": RegexScorer}
    if name not in classes:
        raise ConfigError(f"unknown scorer {name!r}; scorers are {', '.join(NAMES)}")
    try:
        return classes[name](**params)
    except TypeError as exc:
        raise ConfigError(f"scorer {name!r}: {exc}") from None


__all__ = ["Scorer", "ScoringRow", "make_scorer", "NAMES"]
