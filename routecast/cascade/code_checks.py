"""Code answer evidence without running the code: does it parse, define what was asked, and how.

On code tasks (mbpp, HumanEval-style prompts) the posterior's other evidence misreads answers:
final-answer agreement between two programs is rare even when both are right, and the last-number
rule reads noise. What can be checked cheaply, and is checked here, is structure - never
execution (generated code is untrusted; nothing here imports, evaluates or runs it):

* whether the response holds code at all (a fenced block, or a bare ``def``), and whether that code
  parses (:func:`ast.parse`); a truncated or prose-mixed program does not;
* whether it defines a function or class, and whether it defines the name the prompt asks for
  (``assert remove_Occ(...)`` in an mbpp prompt, "def add(" or "function `add`" in others);
* its size (log of statements) and whether it only ``pass``-es or raises ``NotImplementedError``.

Structural agreement between two programs (equal syntax trees, comments and layout aside) is the
answer agreement itself: :func:`routecast.data.answers.read_answer` reads code as its tree.
Features are zero for responses without code, so logs without code learn nothing from them.
"""

from __future__ import annotations

import ast
import re

import numpy as np

from routecast.data.answers import code_blocks

#: per answer, read once its model is called (see :func:`code_evidence`)
CODE_FEATURES = ("code_present", "code_parses", "code_defines", "code_defines_asked", "code_size", "code_stub")

_ASKED = re.compile(r"(?:assert\s+(?:not\s+)?\(?\s*|def\s+|function\s+`?|method\s+`?)([A-Za-z_]\w*)\s*`?\(")
_BARE_DEF = re.compile(r"^(?:def|class)\s+\w+", re.MULTILINE)
_MAX_CODE = 20_000


def asked_names(prompt: object) -> set[str]:
    """Function names the prompt asks for (from its asserts, ``def`` lines, "function `name`")."""
    if not isinstance(prompt, str):
        return set()
    return {name for name in _ASKED.findall(prompt[:_MAX_CODE]) if name not in {"print", "len", "set", "sorted"}}


def _program(response: str) -> str | None:
    blocks = code_blocks(response)
    if blocks:
        return max(blocks, key=len)[:_MAX_CODE]
    if _BARE_DEF.search(response):
        return response[:_MAX_CODE]
    return None


def code_evidence(response: object, prompt: object = None) -> np.ndarray:
    """(len(CODE_FEATURES),) structural evidence of one response to ``prompt``; zeros without code."""
    out = np.zeros(len(CODE_FEATURES))
    if not isinstance(response, str):
        return out
    code = _program(response)
    if code is None:
        return out
    out[0] = 1.0
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return out
    out[1] = 1.0
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    out[2] = float(bool(defined))
    asked = asked_names(prompt)
    out[3] = float(bool(asked) and bool(asked & defined))
    statements = sum(isinstance(n, ast.stmt) for n in ast.walk(tree))
    out[4] = np.log1p(statements) / 5.0
    bodies = [n.body for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    out[5] = float(bool(bodies) and all(_is_stub(b) for b in bodies))
    return out


def _is_stub(body: list) -> bool:
    real = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(getattr(s, "value", None), ast.Constant))]
    return all(isinstance(s, ast.Pass) or (isinstance(s, ast.Raise) and "NotImplemented" in ast.dump(s))
               for s in real)
