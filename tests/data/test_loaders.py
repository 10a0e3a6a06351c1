from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from routecast.data import OutcomeLog, builtin_names, load_log
from routecast.errors import DataError
from tests._support import data_files as helpers


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".parquet"])
def test_long_formats_load_the_same_matrix(tmp_path, suffix):
    frame = helpers.small_long()
    log = load_log(helpers.write(frame, tmp_path / f"log{suffix}"))
    assert isinstance(log, OutcomeLog)
    assert list(log.prompt_ids) == ["p1", "p2", "p3"]
    assert log.models == ("small", "big")
    np.testing.assert_array_equal(log.scores, [[0.0, 1.0], [1.0, 1.0], [0.5, 0.25]])
    np.testing.assert_allclose(log.costs, [[0.001, 0.01], [0.001, 0.01], [0.002, 0.02]])
    assert list(log.meta["benchmark"]) == ["math", "geo", "math"]
    assert log.responses is None


def test_json_array_and_json_lines_in_dot_json(tmp_path):
    frame = helpers.small_long()
    lines = tmp_path / "lines.json"
    helpers.write(frame, tmp_path / "x.jsonl").rename(lines)
    np.testing.assert_array_equal(load_log(lines).scores, load_log(helpers.write(frame, tmp_path / "a.json")).scores)


def test_prompt_id_derived_from_sha1_when_absent(tmp_path):
    import hashlib

    frame = helpers.small_long().drop(columns="prompt_id")
    log = load_log(helpers.write(frame, tmp_path / "log.csv"))
    assert log.prompt_ids[0] == "sha1:" + hashlib.sha1(b"What is 2+2?").hexdigest()[:16]
    assert log.n_prompts == 3


def test_empty_score_cell_is_not_logged_and_row_still_counted(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("prompt_id,prompt,model,score\np1,hi,a,1\np1,hi,b,\np2,yo,a,NaN\np2,yo,b,0.5\n")
    log = load_log(path)
    assert log.scores.shape == (2, 2)
    assert np.isnan(log.scores[0, 1]) and np.isnan(log.scores[1, 0])
    assert log.missing_cells() == 2
    assert np.isnan(log.costs).all()


def _wide_from_long(frame: pd.DataFrame) -> pd.DataFrame:
    wide = pd.DataFrame({"sample_id": ["p1", "p2", "p3"], "prompt": frame["prompt"].iloc[::2].to_list(),
                         "eval_name": ["math", "geo", "math"]})
    for m in ("small", "big"):
        sub = frame[frame["model"] == m].reset_index(drop=True)
        wide[m] = sub["score"]
        wide[f"{m}|model_response"] = [f"answer of {m} {i}" for i in range(3)]
        wide[f"{m}|total_cost"] = sub["cost"]
    wide["oracle_model_to_route_to"] = ["big", "small", "small"]
    return wide


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_wide_routerbench_equals_long(tmp_path, suffix):
    frame = helpers.small_long()
    long_log = load_log(helpers.write(frame, tmp_path / f"long{suffix}"))
    wide_log = load_log(helpers.write(_wide_from_long(frame), tmp_path / f"wide{suffix}"))
    assert list(wide_log.prompt_ids) == list(long_log.prompt_ids)
    assert wide_log.models == long_log.models
    np.testing.assert_array_equal(wide_log.scores, long_log.scores)
    np.testing.assert_allclose(wide_log.costs, long_log.costs)
    assert list(wide_log.meta["benchmark"]) == list(long_log.meta["benchmark"])
    assert wide_log.responses[2, 1] == "answer of big 2"
    assert "oracle_model_to_route_to" not in wide_log.meta.columns


def test_format_forced_wide_on_long_file_fails_clearly(tmp_path):
    path = helpers.write(helpers.small_long(), tmp_path / "log.csv")
    with pytest.raises(DataError, match="wide format needs"):
        load_log(path, format="wide")


def test_models_and_max_prompt_chars(tmp_path):
    path = helpers.write(helpers.small_long(), tmp_path / "log.parquet")
    log = load_log(path, models=["big"], max_prompt_chars=4)
    assert log.models == ("big",)
    assert list(log.prompts) == ["What", "Capi", "Name"]
    np.testing.assert_array_equal(log.scores[:, 0], [1.0, 1.0, 0.25])
    with pytest.raises(DataError, match="not in the log"):
        load_log(path, models=["nope"])


def test_builtin_names_and_loading():
    assert builtin_names() == ["llmrouter_9models", "routellm_strong_weak"]
    log = load_log("llmrouter_9models")
    assert (log.n_prompts, log.n_models) == (5978, 9)
    assert log.missing_cells() == 0 and not np.isnan(log.costs).any()
    assert {"benchmark", "split", "in_both_splits"} <= set(log.meta.columns)
    assert int(log.meta["in_both_splits"].sum()) == 228
    rl = load_log("routellm_strong_weak")
    assert (rl.n_prompts, rl.n_models) == (15521, 2)
    assert set(rl.meta["benchmark"]) == {"mmlu", "gsm8k", "mt_bench"}
    has_resp = np.array([r is not None for r in rl.responses[:, 0]])
    assert set(rl.meta["benchmark"][has_resp]) == {"gsm8k"}
    gpt4 = rl.model_index("gpt-4-1106-preview")
    assert (rl.costs[:, gpt4] > rl.costs[:, 1 - gpt4]).all()


def test_unknown_builtin_name_lists_builtins():
    with pytest.raises(DataError, match="built-in"):
        load_log("no_such_dataset")


@pytest.mark.skipif(not (helpers.SHARED_DATA / "routerdc_7models").exists(), reason="shared data not found at "
                    f"{helpers.SHARED_DATA}")
def test_shared_folders_load_counts_in_equal_counts_out():
    for folder in helpers.FOLDERS:
        path = helpers.SHARED_DATA / folder / "data.parquet"
        df = pd.read_parquet(path, columns=["prompt_id", "model", "score"])
        t0 = time.perf_counter()
        log = load_log(path)
        elapsed = time.perf_counter() - t0
        assert log.n_prompts == df["prompt_id"].nunique(), folder
        assert log.n_models == df["model"].nunique(), folder
        assert int((~np.isnan(log.scores)).sum()) == int(df["score"].notna().sum()), folder
        assert elapsed < 10, (folder, elapsed)  # generous; the real figure (~0.6 s for 135k rows) is in the report


def test_llmrouter_price_columns_give_costs():
    path = helpers.SHARED_DATA / "llmrouter_9models" / "data.parquet"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    log = load_log(path)
    assert not np.isnan(log.costs).any()
    df = pd.read_parquet(path, columns=["prompt_id", "prompt", "model", "price_in_per_mtok", "price_out_per_mtok"])
    row = df.iloc[0]
    j = log.model_index(row["model"])
    i = list(log.prompt_ids).index(row["prompt_id"])
    expected = (np.ceil(len(row["prompt"]) / 4) * row["price_in_per_mtok"] + 256 * row["price_out_per_mtok"]) / 1e6
    assert log.costs[i, j] == pytest.approx(expected)
