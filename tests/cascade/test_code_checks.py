"""Code answer evidence (routecast.cascade.code_checks): parsed, never run."""

from __future__ import annotations

import numpy as np

from routecast.cascade.code_checks import CODE_FEATURES, asked_names, code_evidence
from routecast.cascade.posterior import compute_facts, feature_names

COL = {name: i for i, name in enumerate(CODE_FEATURES)}
PROMPT = ("Write a python function to remove first and last occurrence of a given character from the string.\n"
          "assert remove_Occ(\"hello\",\"l\") == \"heo\"")


def test_the_asked_name_is_found_in_asserts_and_defs():
    assert asked_names(PROMPT) == {"remove_Occ"}
    assert asked_names("Complete `def add(a, b):` so that it sums.") == {"add"}
    assert asked_names(None) == set()


def test_a_right_shaped_answer_and_its_failures():
    good = "```python\ndef remove_Occ(s, ch):\n    s = s.replace(ch, '', 1)\n    return s[::-1].replace(ch, '', 1)[::-1]\n```"
    got = code_evidence(good, PROMPT)
    assert [got[COL[k]] for k in ("code_present", "code_parses", "code_defines", "code_defines_asked", "code_stub")] \
        == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert got[COL["code_size"]] > 0
    wrong_name = code_evidence(good.replace("remove_Occ", "strip_char"), PROMPT)
    assert wrong_name[COL["code_defines"]] == 1.0 and wrong_name[COL["code_defines_asked"]] == 0.0
    truncated = code_evidence("```python\ndef remove_Occ(s, ch):\n    return s.replace(ch,", PROMPT)
    assert truncated[COL["code_present"]] == 1.0 and truncated[COL["code_parses"]] == 0.0
    stub = code_evidence("def remove_Occ(s, ch):\n    '''todo'''\n    pass\n", PROMPT)
    assert stub[COL["code_stub"]] == 1.0 and stub[COL["code_defines_asked"]] == 1.0


def test_no_code_no_evidence_and_nothing_is_run():
    np.testing.assert_array_equal(code_evidence("The answer is 42.", PROMPT), np.zeros(len(CODE_FEATURES)))
    np.testing.assert_array_equal(code_evidence(None), np.zeros(len(CODE_FEATURES)))
    # parsing a program that would exit or raise if run is harmless: it is never executed
    assert code_evidence("```python\nimport sys\nsys.exit(3)\ndef f():\n    raise SystemExit\n```")[COL["code_parses"]] == 1.0


def test_code_checks_enter_the_posterior_features():
    names = feature_names(2)
    assert [n for n in names if n.startswith("called*code_")] == [f"called*{c}" for c in CODE_FEATURES]
    good = "```python\ndef remove_Occ(s, ch):\n    return s\n```"
    facts = compute_facts([PROMPT], np.array([[good, "no idea"]], dtype=object), ["a", "b"])
    checks = facts.math[0]
    assert checks.shape == (2, len(names) - names.index("called*math_steps"))
    assert checks[0, -len(CODE_FEATURES) + COL["code_defines_asked"]] == 1.0 and not checks[1].any()
