"""Final-answer extraction: the comparable core of a free-text model response.

Lives in the data layer because both the scorers (:mod:`routecast.data.scorers`, which turn
collected responses into scores) and the cascades (voting, agreement deferral) need it, and
layers only import downwards; :mod:`routecast.cascade.answers` re-exports it.

Voting ensembles and agreement-based deferral compare *answers*, not texts: "The answer is (B)."
and "Answer: b" must count as the same vote, as must "#### 1,234" and "so he pays $1234.".
:func:`final_answer` turns a response into a short canonical string, trying in order

1. a ``\\boxed{...}`` expression (RouterArena / MATH style), normalised like the rest;
2. a GSM8K ``#### 42`` marker;
3. a multiple-choice letter A-E stated as the answer ("The answer is (B)", "Answer: C",
   "correct option is D");
4. the last number in the text (commas, ``$`` and trailing zeros after a decimal point removed);
5. the whole text, lower-cased with punctuation and whitespace stripped.

A response with nothing usable (None, empty, only punctuation) has no answer (``None``), and
``None`` never agrees with anything.
"""

from __future__ import annotations

import re
import string

_BOXED = re.compile(r"\\boxed\s*\{")
#: the GSM8K final-answer marker ("#### 42"); public so the answer-format feature reads the same rule
GSM8K_MARKER = re.compile(r"####\s*(.+)")
# an upper-case letter, or a lower-case one in brackets or closing the line ("answer: b.")
_LETTER = r"(?:[\(\[\*]\s*([A-Ea-e])\s*[\)\]\*]|([A-E])(?![A-Za-z])|([a-e])(?=\s*[.)]?\s*(?:$|\n)))"
_CHOICE_PATTERNS = [
    # "the answer is (B)", "answer: C", "correct answer is: D.", "final answer - e"
    re.compile(r"(?i:answer)\s*(?:(?i:is)|:|=|-)?\s*(?:(?i:option)\s*)?" + _LETTER, re.MULTILINE),
    re.compile(r"(?i:option|choice)\s*(?:(?i:is)|:)?\s*" + _LETTER, re.MULTILINE),
]
_LONE_LETTER = re.compile(r"^\s*[\(\[\*]*\s*([A-Ea-e])\s*[\)\]\*]*\s*[.:)]?(?:\s|$)")
_NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?")
_PUNCT = str.maketrans("", "", string.punctuation)


def final_answer(text: object) -> str | None:
    """Canonical final answer of a response (see the module docstring for the rules)."""
    if text is None or not isinstance(text, str):
        return None
    text = text.strip()
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed is not None:
        return _canonical_short(boxed)
    gsm = GSM8K_MARKER.findall(text)
    if gsm:
        number = extract_number(gsm[-1])
        return number if number is not None else normalise_text(gsm[-1])
    letter = extract_choice(text)
    if letter is not None:
        return letter
    number = extract_number(text)
    if number is not None:
        return number
    return normalise_text(text)


def extract_choice(text: str) -> str | None:
    """Multiple-choice letter A-E stated as the answer, upper-cased; the last statement wins.

    A response that is only a letter ("B", "(c).") counts too. Letters inside words never match.
    """
    hits: list[tuple[int, str]] = []
    for pattern in _CHOICE_PATTERNS:
        for match in pattern.finditer(text):
            letter = next(g for g in match.groups() if g)
            hits.append((match.start(), letter.upper()))
    if hits:
        return max(hits)[1]
    lone = _LONE_LETTER.match(text)
    if lone and len(text.strip()) <= 4:
        return lone.group(1).upper()
    return None


def extract_number(text: str) -> str | None:
    """The last number in ``text`` as a canonical string ("$1,234.50" -> "1234.5", "7.0" -> "7")."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    return canonical_number(found[-1])


def canonical_number(raw: str) -> str | None:
    cleaned = raw.replace("$", "").replace(",", "").replace(" ", "")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(round(value, 9)).rstrip("0").rstrip(".")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, with nested braces balanced."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    start = starts[-1]
    depth = 1
    for pos in range(start, len(text)):
        char = text[pos]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:pos]
    return text[start:]


def _canonical_short(answer: str) -> str | None:
    """A boxed or marked answer: a letter, a number, or normalised text."""
    stripped = answer.strip().strip("{}").strip()
    if re.fullmatch(r"[\(\[]?\s*[A-Ea-e]\s*[\)\]]?\.?", stripped):
        return re.sub(r"[^A-Ea-e]", "", stripped).upper()
    if re.fullmatch(r"-?\$?\s?\d[\d,]*(?:\.\d+)?\s*", stripped):
        return canonical_number(stripped)
    return normalise_text(stripped)


def normalise_text(text: str) -> str | None:
    """Lower-case, drop punctuation, collapse whitespace; ``None`` when nothing is left."""
    out = " ".join(text.lower().translate(_PUNCT).split())
    return out or None
