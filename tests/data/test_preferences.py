from __future__ import annotations

import numpy as np
import pandas as pd

from routecast.data import OutcomeLog, PairwiseLog, load_preferences
from routecast.data.preferences import pairs_from_log


def test_load_preferences_csv_and_winner_variants(tmp_path):
    path = tmp_path / "prefs.csv"
    path.write_text("question_id,prompt,model_a,model_b,winner\n"
                    "1,q1,x,y,model_a\n2,q2,x,y,tie (bothbad)\n3,q3,y,z,z\n4,q4,x,z,Tie\n5,q5,x,z,model_b\n")
    log = load_preferences(path)
    assert isinstance(log, PairwiseLog) and len(log) == 5
    assert list(log.winner) == ["model_a", "tie", "model_b", "tie", "model_b"]
    assert log.models == ("x", "y", "z")
    assert list(log.prompt_ids) == ["1", "2", "3", "4", "5"]


def test_load_preferences_arena_onehot(tmp_path):
    frame = pd.DataFrame({"prompt": ["a", "b", "c"], "model_a": ["x"] * 3, "model_b": ["y"] * 3,
                          "winner_model_a": [1, 0, 0], "winner_model_b": [0, 1, 0], "winner_tie": [0, 0, 1]})
    path = tmp_path / "arena.parquet"
    frame.to_parquet(path)
    assert list(load_preferences(path).winner) == ["model_a", "model_b", "tie"]


def test_pairs_from_log():
    log = OutcomeLog(prompt_ids=["p", "q"], prompts=["P", "Q"], models=("a", "b", "c"),
                     scores=np.array([[1.0, 0.0, 0.95], [0.5, np.nan, 0.5]]), costs=np.full((2, 3), np.nan))
    pairs = pairs_from_log(log)
    got = list(zip(pairs.prompt_ids, pairs.model_a, pairs.model_b, pairs.winner))
    assert got == [("p", "a", "b", "model_a"), ("p", "a", "c", "model_a"), ("p", "b", "c", "model_b"),
                   ("q", "a", "c", "tie")]
    assert list(pairs_from_log(log, min_margin=0.1).winner)[1] == "tie"
