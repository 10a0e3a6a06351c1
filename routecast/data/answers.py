"""Final-answer extraction: the comparable core of a free-text model response.

Lives in the data layer because both the scorers (:mod:`routecast.data.scorers`, which turn
collected responses into scores) and the cascades (voting, agreement deferral) need it, and
layers only import downwards; :mod:`routecast.cascade.answers` re-exports it.

Voting ensembles and agreement-based deferral compare *answers*, not texts: "The answer is (B)."
and "Answer: b" must count as the same vote, as must "#### 1,234" and "so he pays $1234.".
:func:`final_answer` is the canonical string :func:`read_answer` reads (below). A response with
nothing usable (None, empty, only punctuation) has no answer (``None``), and ``None`` never agrees
with anything.

Reading answers of every format
-------------------------------
Every part of routecast that compares or checks answers (agreement, votes, the scorers, the math
checks, the answer scorer's format features, ``data inspect``) reads them here, so a format
learnt once counts everywhere. Users' logs state answers in many ways; :func:`read_answer` tries,
in order (the first rule that finds an answer wins):

``json``    a JSON object with an answer field (``answer``, ``final_answer``; fenced in
            ```` ```json ```` or bare), the first such object (what ZeroEval-style scorers read);
``boxed``   the last ``\\boxed{...}`` (MATH / RouterArena style);
``marker``  a GSM8K ``#### 42`` marker;
``choice``  an option letter A-E stated as the answer ("The answer is (B)", "Answer: c");
``phrase``  a number or an expression stated as the answer ("the final answer is 3/4");
``code``    the last fenced code block, when it parses as Python and defines a function or class;
``number``  the last number in the text;
``text``    the whole text, lower-cased, punctuation and whitespace removed.

The answer's *kind* says what was read: ``number``, ``choice`` (an option letter),
``expression`` (maths that is not a plain number), ``code`` (compared by its syntax tree, so
formatting and comments do not matter; nothing is executed) or ``text``. ``none`` is no answer.

Where guessing is wrong (a log whose prose ends on numbers that are not answers, or whose
answer field should be the only thing read) a log declares its format - ``answer_format`` in its
dataset card (:mod:`routecast.data.columns`) or an ``answer_format`` column - and
:func:`read_answer` applies that rule only (an output that does not follow it has no answer).
"""

from __future__ import annotations

import ast
import json
import re
import string
from dataclasses import dataclass

from routecast.errors import ConfigError

_BOXED = re.compile(r"\\boxed\s*\{")
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


def final_answer(text: object, answer_format: str | None = "auto") -> str | None:
    """Canonical final answer of a response (:func:`read_answer`'s value)."""
    return read_answer(text, answer_format).value


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


# ------------------------------------------------------- the answer reader
#: how a final answer is stated (the rules above, in order); ``none``: no usable answer
ANSWER_SOURCES = ("none", "json", "boxed", "marker", "choice", "phrase", "code", "number", "text")
#: what a final answer is
ANSWER_KINDS = ("none", "number", "choice", "expression", "code", "text")
#: formats a log may declare (``auto``: try every rule in order)
DECLARED_FORMATS = ("auto",) + ANSWER_SOURCES[1:]
#: JSON keys holding the final answer, in order of preference
ANSWER_KEYS = ("answer", "final_answer", "Answer", "final answer", "result")

_MARKER = re.compile(r"####\s*(.+)")
_PHRASE = re.compile(r"(?i)\b(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*[:\s]*\**\$?\s*"
                     r"([-+(]?[\d\\][^\n]{0,60}?)\s*\**\s*(?:[.;,](?:\s|$)|$|\n)", re.MULTILINE)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_LANGS = ("", "python", "py", "python3")
_FIRST_NUMBER = re.compile(r"^\s*-?\$?\s?\d[\d,]*(?:\.\d+)?")
_EXPR_JUNK = re.compile(r"\\left|\\right|\\!|\\,|\\;|\s|\$")
_ANSWER_FIELD = re.compile(r'"(?:answer|final_answer)"\s*:\s*(?:"((?:[^"\\]|\\.)*)"|(-?[\d.,]+))')
_MAX_SCAN = 50_000
_MAX_JSON_TRIES = 40


@dataclass(frozen=True)
class Answer:
    """A final answer: ``value`` (canonical string, None if no answer), ``kind`` (:data:`ANSWER_KINDS`)
    and ``source`` (:data:`ANSWER_SOURCES`, the rule that read it)."""

    value: str | None
    kind: str
    source: str

    @property
    def read(self) -> bool:
        return self.value is not None


NO_ANSWER = Answer(None, "none", "none")


def read_answer(text: object, answer_format: str | None = "auto") -> Answer:
    """The final answer of ``text`` (see the module docstring); ``answer_format`` a declared rule
    (:data:`DECLARED_FORMATS`; None or ``auto``: guess)."""
    fmt = check_format(answer_format)
    if not isinstance(text, str):
        return NO_ANSWER
    text = text.strip()[:_MAX_SCAN]
    if not text:
        return NO_ANSWER
    rules = _RULES if fmt == "auto" else {fmt: _RULES[fmt]}
    for source, rule in rules.items():
        found = rule(text)
        if found is not None and found[0] is not None:
            return Answer(found[0], found[1], source)
    return NO_ANSWER


def check_format(answer_format: str | None) -> str:
    """A declared answer format, checked (None: ``auto``)."""
    fmt = "auto" if answer_format is None else str(answer_format).strip().lower()
    if fmt not in DECLARED_FORMATS:
        raise ConfigError(f"answer_format must be one of {', '.join(DECLARED_FORMATS)}, got {answer_format!r}")
    return fmt


def declared_format(meta) -> str:
    """The answer format a log declares (its ``answer_format`` metadata column; ``auto`` if none).

    A log mixing formats across prompts declares none: each answer is then guessed."""
    if meta is None or "answer_format" not in getattr(meta, "columns", ()):
        return "auto"
    values = {str(v).strip().lower() for v in meta["answer_format"].dropna()}
    return check_format(values.pop()) if len(values) == 1 else "auto"


def read_share(responses, meta=None) -> float:
    """Share of the present responses (str) whose final answer is read beyond the whole-text
    fallback, in the format ``meta`` (a log's metadata) declares (NaN when none is present): how
    much a log's answers can be compared."""
    fmt = declared_format(meta)
    present = [r for r in responses if isinstance(r, str)]
    if not present:
        return float("nan")
    unread = ("none",) if fmt == "text" else ("none", "text")
    return sum(read_answer(r, fmt).source not in unread for r in present) / len(present)


# ------------------------------------------------------------------ rules
def _value_of(raw: str) -> tuple[str | None, str]:
    """A stated answer (a JSON field, a box, a marker) -> (canonical value, kind)."""
    raw = raw.strip()
    inner = last_boxed(raw)
    if inner is not None:
        raw = inner.strip()
    if "=" in raw and _FIRST_NUMBER.match(raw.rsplit("=", 1)[1]):  # "8 + 1 = 9", "x = 9"
        raw = raw.rsplit("=", 1)[1].strip()
    short = _canonical_short(raw)
    if short is None:
        return None, "none"
    if re.fullmatch(r"[A-E]", short) and len(raw) <= 4:
        return short, "choice"
    if canonical_number(short) is not None and re.fullmatch(r"-?\$?\s?\d[\d,]*(?:\.\d+)?\s*\.?", raw):
        return short, "number"
    lead = _FIRST_NUMBER.match(raw)
    if lead and re.fullmatch(r"[\s%A-Za-z.]*", raw[lead.end():]):  # "160 minutes", "25%"
        return canonical_number(lead.group(0)), "number"
    if re.search(r"[\\^_=+*/()]|\d", raw) and len(raw) <= 80:
        return _EXPR_JUNK.sub("", raw).replace("dfrac", "frac").replace("tfrac", "frac"), "expression"
    return short, "text"


def _json_rule(text: str):
    if "{" not in text:
        return None
    decoder = json.JSONDecoder(strict=False)  # models write raw newlines inside JSON strings
    start, tries = text.find("{"), 0
    while start >= 0 and tries < _MAX_JSON_TRIES:
        tries += 1
        try:
            obj, _ = decoder.raw_decode(text, start)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            for key in ANSWER_KEYS:
                if key in obj and obj[key] is not None and not isinstance(obj[key], (dict, list)):
                    value = obj[key]
                    return _value_of(str(value)) if not isinstance(value, bool) else (str(value).lower(), "text")
        start = text.find("{", start + 1)
    # an object JSON cannot parse (an unescaped quote in the reasoning): its answer field as written
    field = _ANSWER_FIELD.search(text)
    return None if field is None else _value_of(next(g for g in field.groups() if g is not None))


def _boxed_rule(text: str):
    boxed = last_boxed(text)
    return None if boxed is None else _value_of(boxed)


def _marker_rule(text: str):
    found = _MARKER.findall(text)
    if not found:
        return None
    number = extract_number(found[-1])
    return (number, "number") if number is not None else (normalise_text(found[-1]), "text")


def _choice_rule(text: str):
    letter = extract_choice(text)
    return None if letter is None else (letter, "choice")


def _phrase_rule(text: str):
    found = _PHRASE.findall(text)
    if not found:
        return None
    value, kind = _value_of(found[-1].rstrip(".").strip("*").strip())
    return (value, kind) if kind in ("number", "expression") else None


def code_blocks(text: str) -> list[str]:
    """The fenced code blocks of ``text`` tagged Python or untagged, in order (an unclosed last
    fence runs to the end: a truncated answer still shows its code)."""
    return [body for lang, body in _FENCE.findall(text[:_MAX_SCAN]) if lang.lower() in _CODE_LANGS]


def _code_rule(text: str):
    blocks = code_blocks(text)
    return None if not blocks else code_value(blocks[-1])


def code_value(code: str):
    """(structure, "code") of Python source that parses and defines a function or class, else None.

    The structure is the syntax tree without docstrings (``ast.dump``): two answers that differ
    only in layout and comments compare equal. Parsed, never run."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in ast.walk(tree)):
        return None
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False), "code"


def _number_rule(text: str):
    number = extract_number(text)
    return None if number is None else (number, "number")


def _text_rule(text: str):
    value = normalise_text(text)
    return None if value is None else (value, "text")


_RULES = {"json": _json_rule, "boxed": _boxed_rule, "marker": _marker_rule, "choice": _choice_rule,
          "phrase": _phrase_rule, "code": _code_rule, "number": _number_rule, "text": _text_rule}
