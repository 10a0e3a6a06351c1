"""The one answer reader (routecast.data.answers.read_answer): every format users' logs hold, a
declared format, the share read per model on every shared log with responses."""

from __future__ import annotations

import numpy as np
import pytest

from routecast.data.answers import code_value, declared_format, final_answer, read_answer, read_share
from routecast.data.inspect import summarize
from routecast.data.loaders import load_log
from routecast.errors import ConfigError, DataError
from tests._support.paths import shared_dataset

FENCED_JSON = '```json\n{\n  "reasoning": "She has 3 + 4 = 7,\nso \\"seven\\".",\n  "answer": "$1,234"\n}\n```'


@pytest.mark.parametrize("text, value, kind, source", [
    (FENCED_JSON, "1234", "number", "json"),
    ('{"reasoning": "2 + 2", "answer": 4}', "4", "number", "json"),
    ('{"reasoning": "unescaped "quote" here", "answer": "160 minutes"}', "160", "number", "json"),
    ('{"answer": "B"}', "B", "choice", "json"),
    ('{"answer": "\\\\frac{1}{2}"}', "\\frac{1}{2}", "expression", "json"),
    ("so the result is \\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}", "expression", "boxed"),
    ("\\boxed{42}", "42", "number", "boxed"),
    ("Natalia sold 48/2 = 24 clips.\n#### 72", "72", "number", "marker"),
    ("The answer is (C).", "C", "choice", "choice"),
    ("Working: 3 and 4. The final answer is 3/4.", "3/4", "expression", "phrase"),
    ("The answer is 8 + 1 = 9", "9", "number", "phrase"),
    ("Here:\n```python\ndef add(a, b):\n    return a + b\n```\nDone, 2 lines.", None, "code", "code"),
    ("So he pays $1,234.50 in total.", "1234.5", "number", "number"),
    ("The answer is Elephant", "the answer is elephant", "text", "text"),
    ("", None, "none", "none"),
    (None, None, "none", "none"),
])
def test_every_format_is_read_with_its_kind(text, value, kind, source):
    read = read_answer(text)
    assert (read.kind, read.source) == (kind, source)
    if value is not None:
        assert read.value == value
    assert final_answer(text) == read.value


def test_code_compares_by_structure_not_layout():
    a = "```python\ndef add(a, b):\n    '''Sum.'''\n    return a + b  # plus\n```"
    b = "```\ndef add(a,b):\n\n    return (a + b)\n```"
    c = "```python\ndef add(a, b):\n    return a - b\n```"
    assert read_answer(a).value == read_answer(b).value != read_answer(c).value
    assert code_value("x = 1") is None and code_value("def broken(:") is None  # no definition / no parse


def test_a_declared_format_reads_that_rule_only():
    prose = "First 3 apples, then 5 pears: 8 fruit."
    assert read_answer(prose).value == "8"
    assert read_answer(prose, "json").value is None and read_answer(prose, "json").source == "none"
    assert read_answer('{"answer": "7"} and 9 more', "json").value == "7"
    assert read_answer('{"answer": "7"} and 9 more', "number").value == "9"
    with pytest.raises(ConfigError, match="answer_format"):
        read_answer("x", "yaml")


def test_a_dataset_card_declares_the_format(tmp_path):
    rows = ["prompt,model,score,response", 'q1,a,1,"{""answer"": ""3""} 5"', 'q1,b,0,"I think 5"',
            'q2,a,0,"no idea, 12"', 'q2,b,1,"{""answer"": ""4""}"']
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "log.csv.card.yaml").write_text("answer_format: json\n")
    log = load_log(tmp_path / "log.csv")
    assert declared_format(log.meta) == "json"
    assert read_share(log.responses[:, log.model_index("a")], log.meta) == 0.5
    assert read_share(log.responses[:, log.model_index("a")]) == 1.0  # guessing reads the prose numbers
    per_model = {r["model"]: r["answers_read"] for r in summarize(log)["per_model"]}
    assert per_model == {"a": 0.5, "b": 0.5}
    (tmp_path / "log.csv.card.yaml").write_text("answer_format: xml\n")
    with pytest.raises(DataError, match="answer_format"):
        load_log(tmp_path / "log.csv")


#: shared logs with responses -> least share of answers read per model (None: chat prose, reported only)
SHARED = {"zeroeval_gsm_13models": 0.99, "routerarena_2models": 0.95, "arena_bench_v1": None,
          "alpaca_eval_gpt4turbo_judge": None}


@pytest.mark.parametrize("name", sorted(SHARED))
def test_share_read_per_model_on_every_shared_log_with_responses(name):
    log = load_log(shared_dataset(name))
    per_model = summarize(log)["per_model"]
    shares = {r["model"]: r["answers_read"] for r in per_model}
    assert set(shares) == set(log.models) and all(0.0 <= s <= 1.0 for s in shares.values())
    if SHARED[name] is not None:
        assert min(shares.values()) >= SHARED[name], shares


def test_share_read_on_the_routellm_gsm8k_part():
    log = load_log("routellm_strong_weak")
    gsm = log.subset(np.flatnonzero(log.meta["benchmark"].astype(str).to_numpy() == "gsm8k"))
    assert all(read_share(gsm.responses[:, j]) >= 0.99 for j in range(gsm.n_models))


def test_zeroeval_answers_agree_with_the_scores():
    """Two right answers to one question must read the same; a JSON answer is what the log scored."""
    log = load_log(shared_dataset("zeroeval_gsm_13models"))
    best = log.model_index("gpt-4o-2024-08-06")
    values = np.array([[read_answer(r).value for r in row] for row in log.responses[:300]], dtype=object)
    for j in range(log.n_models):
        both = (log.scores[:300, j] == 1) & (log.scores[:300, best] == 1)
        assert np.mean(values[both, j] == values[both, best]) >= 0.98, log.models[j]
