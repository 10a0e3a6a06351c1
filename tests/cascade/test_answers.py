import pytest

from routecast.cascade.agreement import agreement_matrix, agreement_score, answer_matrix
from routecast.cascade.answers import canonical_number, extract_choice, extract_number, final_answer


@pytest.mark.parametrize("text, expected", [
    ("The answer is (B).", "B"),
    ("Answer: C", "C"),
    ("Let me think. answer: b.", "B"),
    ("The correct option is D because it is the only one.", "D"),
    ("Therefore, the answer is \\boxed{E}.", "E"),
    ("B", "B"),
    ("(c).", "C"),
    ("First I thought the answer is A, but the answer is (C).", "C"),
    ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
    ("#### 1,234", "1234"),
    ("So he pays $1,234.50 in total.", "1234.5"),
    ("x = 7.0", "7"),
    ("The result is -3 degrees", "-3"),
    ("\\boxed{42}", "42"),
    ("Hello,   World!!", "hello world"),
    ("The answer is Elephant", "the answer is elephant"),
    ("The answer is a fraction, 3/4", "4"),
    ("", None),
    ("  ?! ", None),
    (None, None),
])
def test_final_answer(text, expected):
    assert final_answer(text) == expected


def test_letters_inside_words_are_not_choices():
    assert extract_choice("Apples are Delicious") is None
    assert extract_choice("answer is Because") is None


def test_numbers_canonical():
    assert extract_number("no digits here") is None
    assert canonical_number("$3,000") == "3000"
    assert canonical_number("0.50") == "0.5"


def test_agreement_score_and_matrix():
    assert agreement_score(["A"]) != agreement_score(["A"])  # NaN: nothing to agree with yet
    assert agreement_score(["A", "A"]) == 1.0
    assert agreement_score(["A", "B", "A"]) == 0.5
    assert agreement_score(["A", None]) == 0.0
    answers = answer_matrix([["Answer: A", "The answer is (A)", "#### 3"],
                             ["#### 5", "so 5", "5"]])
    assert answers.tolist() == [["A", "A", "3"], ["5", "5", "5"]]
    agree = agreement_matrix(answers)
    assert agree[:, 1].tolist() == [1.0, 1.0]
    assert agree[:, 2].tolist() == [0.0, 1.0]
