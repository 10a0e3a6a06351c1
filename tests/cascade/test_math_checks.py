"""Math answer evidence (routecast.cascade.math_checks) and its place in the posterior's features."""

from __future__ import annotations

import numpy as np
import pytest

from routecast.cascade.math_checks import MATH_FEATURES, arithmetic, check_steps, math_evidence

COL = {name: i for i, name in enumerate(MATH_FEATURES)}

RIGHT = ("Janet starts with 16 eggs.\nShe eats 3, so she has 16 - 3 = 13 eggs left.\n"
         "She sells 13 eggs for 13 * $2 = $<<13*2=26>>26.\n#### 26")
WRONG = ("She has 16 - 3 = 12 eggs left.\nShe sells them for 12 * 2 = <<12*2=24>>24 dollars.\n"
         "However, she keeps some, so assume 20.\n#### 20")


def test_arithmetic_evaluates_plain_expressions_only():
    assert arithmetic("6*7") == 42.0
    assert arithmetic("1,200 / 4 + $3") == 303.0
    assert arithmetic("(2 + 3) x 4") == 20.0
    assert arithmetic("-5 + 2") == -3.0
    for bad in ("__import__('os')", "2 ** 10", "a + 1", "1 / 0", ""):
        assert arithmetic(bad) is None


def test_steps_are_recomputed_and_wrong_results_counted():
    results, wrong = check_steps(RIGHT)
    assert sorted(results) == [13.0, 26.0, 26.0]  # inline "16 - 3 = 13", "13*2=26" annotation and inline
    assert wrong == 0
    results, wrong = check_steps(WRONG)
    assert wrong == 1  # 16 - 3 is not 12; 12 * 2 = 24 is right (twice: inline and annotation)
    assert len(results) == 3


def test_evidence_of_a_right_and_a_wrong_worked_answer():
    right, wrong = math_evidence(RIGHT), math_evidence(WRONG)
    assert right[COL["math_wrong_step"]] == 0.0 and wrong[COL["math_wrong_step"]] == 1.0
    assert wrong[COL["math_wrong_share"]] == pytest.approx(1 / 3)
    assert right[COL["math_final_computed"]] == 1.0  # 26 was computed
    assert wrong[COL["math_final_computed"]] == 0.0  # 20 appears from nowhere
    assert right[COL["math_hedge"]] == 0.0 and wrong[COL["math_hedge"]] == pytest.approx(2 / 3)
    assert right[COL["math_steps"]] == pytest.approx(np.log1p(3) / 3)
    assert math_evidence("5 / 2 = 2.5\n#### 2.5")[COL["math_final_fraction"]] == 1.0


def test_the_numbers_the_question_gives_are_looked_for_in_the_answer():
    question = "Janet has 16 eggs, eats 3 and sells the rest at $2 each. She also has 1,000 hens."
    right = math_evidence(RIGHT, question)
    assert right[COL["math_given_used"]] == pytest.approx(3 / 4)  # 16, 3, 2 used; 1000 not
    assert right[COL["math_all_given_used"]] == 0.0
    full = math_evidence(RIGHT + "\nThe 1,000 hens do not matter.", question)
    assert full[COL["math_given_used"]] == 1.0 and full[COL["math_all_given_used"]] == 1.0
    assert math_evidence(RIGHT)[COL["math_given_used"]] == 0.0  # no question: not read


def test_prose_and_missing_answers_carry_no_math_evidence():
    np.testing.assert_array_equal(math_evidence("Paris is the capital; however, Lyon is larger."),
                                  np.zeros(len(MATH_FEATURES)))
    np.testing.assert_array_equal(math_evidence(None), np.zeros(len(MATH_FEATURES)))
    # a chat answer ending on a number, with no step to check, is no worked solution
    np.testing.assert_array_equal(math_evidence("However, most people sleep about 8 hours."),
                                  np.zeros(len(MATH_FEATURES)))
    assert math_evidence("The answer is 8 + 1 = 9")[COL["math_final_computed"]] == 1.0


def test_the_posterior_reads_math_evidence_only_of_called_models():
    from routecast.cascade.posterior import compute_facts, feature_names, state_features

    responses = np.array([[WRONG, RIGHT]], dtype=object)
    facts = compute_facts(["How many eggs?"], responses, ["a", "b"])
    col = {n: i for i, n in enumerate(feature_names(2))}
    x = state_features(np.zeros(2), facts, np.array([True, False]))
    assert x[0, col["called*math_wrong_step"]] == 1.0
    assert x[1, col["called*math_final_computed"]] == 0.0  # b not called: its evidence is unread
    y = state_features(np.zeros(2), facts, np.array([True, True]))
    assert y[1, col["called*math_final_computed"]] == 1.0
    assert x.shape[1] == len(feature_names(2))
