"""Math answer evidence: does a worked numeric answer check out on its own terms?

On GSM8K-style logs the cheap model's answer is returned unseen by anyone, so a cascade needs to
tell a right worked solution from a wrong one without the reference. Sentence embeddings and the
answer's format say little there (an answer ending in ``#### 42`` looks the same right or wrong),
but a worked solution carries checkable facts:

* its arithmetic: every ``<<6*7=42>>`` annotation and every inline ``6 * 7 = 42`` is recomputed
  (a small evaluator over ``+ - * /`` and numbers; nothing is executed), and a step whose stated
  result is not what its expression gives is an error the model made;
* whether the final answer is one of the results the solution computed (an answer that appears
  from nowhere is often a guess), and whether it is a whole number (GSM8K answers are);
* hedging ("however", "assume", "approximately", "can't") - a model that had to bend the problem;
* whether it uses the numbers the question gives (share of them in the response, and all of them):
  a word problem states what it needs, so a solution that leaves a given number out has usually
  misread it.

On the GSM8K part of routellm_strong_weak these separate Mixtral's right from wrong answers
(cross-validated AUC of a logistic model of Mixtral's correctness: 0.66 with length and format
alone, 0.76 with the step checks and hedging added, 0.78 with the question's numbers too). The features are read only from a worked numeric answer (a number
as the final answer, and a checkable step or a ``####`` / ``\\boxed`` final answer), so prose
answers (chat logs) get zeros and the posterior learns nothing from them there.
"""

from __future__ import annotations

import ast
import operator
import re

import numpy as np

from routecast.data.answers import Answer, canonical_number, read_answer

#: per answer, read once its model is called (see :func:`math_evidence`)
MATH_FEATURES = ("math_steps", "math_wrong_step", "math_wrong_share", "math_final_computed",
                 "math_final_fraction", "math_hedge", "math_given_used", "math_all_given_used")

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_NUM = r"\d[\d,]*(?:\.\d+)?"
_ANY_NUMBER = re.compile(_NUM)
_ANNOTATION = re.compile(r"<<([^=<>]{1,120})=([^<>]{1,40})>>")
_INLINE = re.compile(rf"((?:{_NUM}\s*[-+*/x×]\s*)+{_NUM})\s*=\s*\$?\s*(-?{_NUM})")
_HEDGE = re.compile(r"(?i)\b(however|assum\w*|approximately|round\w*|can't|cannot|not possible|actually|wait)\b")
_MAX_TEXT = 20_000  # a response is scanned up to here: the checks stay linear and cheap


def _value(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ValueError("division by zero")
        return _OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _value(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    raise ValueError("not plain arithmetic")


def arithmetic(expression: str) -> float | None:
    """Value of a plain arithmetic expression (numbers, ``+ - * /``, ``x`` or ``×`` for times,
    brackets; ``$``, ``%`` and thousands commas dropped), None if it is anything else."""
    text = expression.replace(",", "").replace("$", "").replace("%", "").replace("×", "*").replace("x", "*")
    if not text.strip() or len(text) > 120:
        return None
    try:
        return _value(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, OverflowError, RecursionError):
        return None


def _number(text: str) -> float | None:
    """A written number as a float (the parse of :func:`routecast.data.answers.canonical_number`)."""
    canonical = canonical_number(text)
    return None if canonical is None else float(canonical)


def _same(a: float, b: float) -> bool:
    # a stated result may be rounded to cents ("= 2.33")
    return abs(a - b) <= 1e-6 * max(1.0, abs(b)) or abs(round(a, 2) - b) < 0.011


def check_steps(text: str) -> tuple[list[float], int]:
    """(stated results of the checkable steps, number of steps whose result is wrong)."""
    results, wrong = [], 0
    body = text[:_MAX_TEXT]
    for expression, stated in _ANNOTATION.findall(body) + _INLINE.findall(body):
        value, claim = arithmetic(expression), _number(stated)
        if value is None or claim is None:
            continue
        results.append(claim)
        wrong += not _same(value, claim)
    return results, wrong


def numbers_in(text: str) -> set[float]:
    """The numbers written in digits in ``text`` (thousands commas dropped)."""
    out = set()
    for raw in _ANY_NUMBER.findall(text[:_MAX_TEXT]):
        value = _number(raw)
        if value is not None:
            out.add(value)
    return out


#: answer formats that state a final answer apart from the working (a box, a marker, a JSON field)
_STATED = ("boxed", "marker", "json")


def math_evidence(response: object, prompt: str | None = None, read: Answer | None = None) -> np.ndarray:
    """(len(MATH_FEATURES),) evidence of one response to ``prompt`` (None: the given-number
    features stay 0); zeros unless it is a worked numeric answer. ``read``: the response's
    :func:`~routecast.data.answers.read_answer`, when the caller has it already."""
    out = np.zeros(len(MATH_FEATURES))
    if not isinstance(response, str):
        return out
    read = read_answer(response) if read is None else read
    answer = read.value
    final = None if answer is None or canonical_number(answer) is None else _number(answer)
    if final is None:
        return out
    results, wrong = check_steps(response)
    if not results and read.source not in _STATED:
        return out  # a prose answer that happens to end on a number: no worked solution to check
    out[0] = np.log1p(len(results)) / 3.0
    out[1] = float(wrong > 0)
    out[2] = wrong / max(len(results), 1)
    out[3] = float(any(_same(final, r) for r in results))
    out[4] = float(not float(final).is_integer())
    out[5] = min(len(_HEDGE.findall(response[:_MAX_TEXT])), 3) / 3.0
    given = numbers_in(prompt) if isinstance(prompt, str) else set()
    if given:
        used = len(given & numbers_in(response)) / len(given)
        out[6], out[7] = used, float(used == 1.0)
    return out
