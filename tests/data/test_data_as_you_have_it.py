"""Data in as users have it: column maps, dataset cards, chat JSONL, pairwise logs; validation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from routecast.data import PairwiseLog, load_data, load_log, load_preferences, routing_text, split_log
from routecast.data.columns import parse_mapping
from routecast.data.inspect import summarize, summary_tables
from routecast.errors import DataError

SHEET = ("Question,LLM,Accuracy,Cost ($)\n"
         "What is 2+2?,gpt-4o ,1,0.002\nWhat is 2+2?, llama,0,0.0001\n"
         "Capital of France?,gpt-4o,1,0.002\nCapital of France?,llama,0.5,0.0001\n")
MAP = 'prompt=Question,model=LLM,score=Accuracy,cost="Cost ($)"'


def test_parse_mapping_quotes_and_errors():
    assert parse_mapping(MAP) == {"prompt": "Question", "model": "LLM", "score": "Accuracy", "cost": "Cost ($)"}
    assert parse_mapping('prompt="a,b=c"') == {"prompt": "a,b=c"}
    for bad in ("prompt", "prompt=", "prompt=a,prompt=b", 'prompt="open'):
        with pytest.raises(DataError):
            parse_mapping(bad)


def test_spreadsheet_csv_with_a_mapping(tmp_path):
    path = tmp_path / "team_sheet.csv"
    path.write_text(SHEET, encoding="utf-8")
    log = load_log(path, columns=MAP)
    assert log.models == ("gpt-4o", "llama")  # "gpt-4o " and " llama" stripped
    np.testing.assert_allclose(log.scores, [[1.0, 0.0], [1.0, 0.5]])
    np.testing.assert_allclose(log.costs, [[0.002, 0.0001], [0.002, 0.0001]])
    with pytest.raises(DataError) as info:
        load_log(path, columns="prompt=Question,model=Model,score=Accuracy")
    assert (info.value.path, info.value.column) == (str(path), "Model") and "not in the file" in str(info.value)
    with pytest.raises(DataError, match="missing required column 'prompt'"):
        load_log(path)


@pytest.mark.parametrize("card_name", ["team_sheet.csv.card.yaml", "dataset.yaml"])
def test_spreadsheet_csv_with_a_dataset_card(tmp_path, card_name):
    path = tmp_path / "team_sheet.csv"
    path.write_text(SHEET, encoding="utf-8")
    (tmp_path / card_name).write_text("columns:\n  prompt: Question\n  model: LLM\n  score: Accuracy\n",
                                      encoding="utf-8")
    log = load_log(path)
    assert log.n_prompts == 2 and log.mean_scores().tolist() == [1.0, 0.25]
    assert np.isnan(log.costs).all()
    # an explicit mapping is merged over the card, key by key
    assert load_log(path, columns='cost="Cost ($)"').costs[0].tolist() == [0.002, 0.0001]


def test_bad_card_names_the_card(tmp_path):
    path = tmp_path / "team_sheet.csv"
    path.write_text(SHEET, encoding="utf-8")
    card = tmp_path / "team_sheet.csv.card.yaml"
    card.write_text("colums:\n  prompt: Question\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_log(path)
    assert info.value.path == str(card) and "unknown key" in str(info.value)


CHAT = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
                  {"role": "assistant", "content": "4"}],
     "model": "gpt-4o", "usage": {"prompt_tokens": 12, "completion_tokens": 1}, "score": 1},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]}],
     "model": "llama", "usage": {"prompt_tokens": 10, "completion_tokens": 5}, "response": "five",
     "feedback": "down"},
    {"messages": [{"role": "user", "content": "What is 2+2?"}], "model": "gpt-4o", "feedback": True},
]


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_chat_jsonl_loads_with_routing_text_usage_costs_and_feedback(tmp_path):
    path = _jsonl(tmp_path / "chat.jsonl", CHAT)
    log = load_log(path, prices={"gpt-4o": [2.5, 10.0], "llama": [0.1, 0.1]})
    assert log.models == ("gpt-4o", "llama")
    assert list(log.prompts) == ["What is 2+2?\n\nBe brief.", "What is 2+2?"]
    np.testing.assert_array_equal(log.scores, [[1.0, np.nan], [1.0, 0.0]])
    assert log.costs[0, 0] == pytest.approx((12 * 2.5 + 1 * 10.0) / 1e6)   # usage tokens x prices
    assert log.costs[1, 1] == pytest.approx((10 * 0.1 + 5 * 0.1) / 1e6)
    assert log.responses[0, 0] == "4" and log.responses[1, 1] == "five"


def test_routing_text_policy():
    long_system = "S" * 100
    text = routing_text([{"role": "system", "content": long_system}, {"role": "user", "content": "old"},
                         {"role": "assistant", "content": "a"}, {"role": "user", "content": "new question"}],
                        max_chars=30)
    assert text == "new question\n\n" + "S" * 16 and len(text) == 30
    assert routing_text([{"role": "user", "content": "U" * 50}], max_chars=10) == "U" * 10
    assert routing_text([{"role": "developer", "content": "only instructions"}]) == "only instructions"


def test_chat_line_without_user_turn_is_one_error(tmp_path):
    bad = CHAT[:2] + [{"messages": [{"role": "assistant", "content": "hi"}], "model": "x"}]
    path = _jsonl(tmp_path / "chat.jsonl", bad)
    with pytest.raises(DataError) as info:
        load_log(path)
    assert (info.value.path, info.value.row, info.value.column) == (str(path), 3, "messages")
    assert "no user turn" in str(info.value)


PREFS = "prompt,model_a,model_b,winner\nq1,x,y,x\nq2,x ,y,tie\nq3,y,z,z\nq4,x,z,model_a\nq5,y,x,model_b\n"


def test_preference_csv_is_first_class(tmp_path):
    path = tmp_path / "prefs.csv"
    path.write_text(PREFS, encoding="utf-8")
    pairs = load_data(path)
    assert isinstance(pairs, PairwiseLog) and (pairs.n_pairs, pairs.n_prompts, pairs.n_models) == (5, 5, 3)
    summary = summarize(pairs, prices={"x": [1.0, 2.0]})
    rows = {r["model"]: r for r in summary["per_model"]}
    assert (rows["x"]["wins"], rows["x"]["ties"], rows["x"]["losses"], rows["x"]["pairs"]) == (3, 1, 0, 4)
    assert rows["x"]["win_rate"] == pytest.approx(3.5 / 4) and rows["y"]["mean_cost"] is None
    assert rows["x"]["mean_cost"] == pytest.approx((1 * 1.0 + 256 * 2.0) / 1e6)  # 2 chars -> 1 token in
    assert summary_tables(summary)[1]["rows"][0][0] == "x"
    train, val, test = split_log(pairs, val=0.2, test=0.2, seed=0)
    assert len(train) + len(val) + len(test) == 5 and len(test) >= 1
    assert set(train.prompts) & set(test.prompts) == set()
    assert pairs.model_costs({"x": [1.0, 2.0], "z": [0.0, 0.0]}) == {"x": pytest.approx(513e-6), "z": 0.0}


def test_pairwise_winner_not_in_the_pair(tmp_path):
    path = tmp_path / "prefs.csv"
    path.write_text(PREFS + "q6,x,y,z\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_preferences(path)
    assert (info.value.path, info.value.row, info.value.column) == (str(path), 6, "winner")


def test_missing_paths_say_not_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for source in ("../shared/data/routerarena_2models", "nothere.csv", "nothere"):
        with pytest.raises(DataError) as info:
            load_log(source)
        assert "not found" in str(info.value) and "extension" not in str(info.value)
    (tmp_path / "here.csv").write_text("prompt,model,score\na,m,1\n", encoding="utf-8")
    assert load_log("here.csv").n_prompts == 1  # relative to the user's folder


def test_model_names_as_users_mean_them(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("prompt,model,score\nx, a,1\ny,a ,0\nz,a,1\nx,caf\u00e9,1\ny,cafe\u0301,0\n", encoding="utf-8")
    log = load_log(path)
    assert log.models == ("a", "caf\u00e9")
    np.testing.assert_array_equal(log.scores, [[1, 1], [0, 0], [1, np.nan]])
    dup = tmp_path / "dup.csv"
    dup.write_text("prompt,model,score\nx, a,1\nx,a ,0\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_log(dup, duplicates="error")
    # the file has no prompt_id column: the message names the user's prompt column, not a derived id
    assert (info.value.row, info.value.column) == (2, "prompt") and "duplicate row" in str(info.value)
    assert "prompt_id" not in str(info.value)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_huge_number_is_a_clear_error(tmp_path, suffix):
    digits = "1" * 5000
    path = tmp_path / f"big{suffix}"
    if suffix == ".csv":
        path.write_text(f"prompt,model,score\na,m,1\nb,m,{digits}\n", encoding="utf-8")
    else:
        path.write_text('{"prompt": "a", "model": "m", "score": 1}\n'
                        f'{{"prompt": "b", "model": "m", "score": {digits}}}\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_log(path)
    assert (info.value.path, info.value.row, info.value.column) == (str(path), 2, "score")
    assert "5,000 digits" in str(info.value) or "5000 digits" in str(info.value)


def test_all_missing_scores_is_an_error(tmp_path):
    path = tmp_path / "unscored.jsonl"
    _jsonl(path, [{"prompt": "a", "model": "m", "score": None}, {"prompt": "b", "model": "n", "score": None}])
    with pytest.raises(DataError) as info:
        load_log(path)
    assert info.value.column == "score" and "no score is logged" in str(info.value)


def test_preference_log_trains_a_preference_router_with_price_table_costs(tmp_path):
    from routecast.core.registry import make_router

    lines = ["prompt,model_a,model_b,winner"]
    for i in range(40):
        topic = "math" if i % 2 else "poetry"
        lines.append(f"a {topic} question number {i},big,small,{'big' if topic == 'math' else 'tie'}")
    path = tmp_path / "prefs.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    train, _, test = split_log(load_data(path), val=0.0, test=0.25, seed=0)
    costs = train.model_costs({"big": [10.0, 30.0], "small": [0.1, 0.3]})
    assert costs["big"] > 50 * costs["small"]
    router = make_router("sw-ranking", encoder="hashing").fit_preferences(train, costs=costs)
    assert set(router.models_) == {"big", "small"}
    assert set(router.route(list(test.prompts[:2]), lam=0.0).chosen) <= {"big", "small"}
