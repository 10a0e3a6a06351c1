"""Each kind of bad input gives ONE DataError naming the file, the 1-based row and the column."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from routecast.data import load_log, load_preferences
from routecast.errors import DataError

HEADER = "prompt_id,prompt,model,score,cost\n"
GOOD = ["p1,hello,a,1,0.1", "p1,hello,b,0,0.2", "p2,world,a,0.5,0.1"]


def _csv(tmp_path, lines, header=HEADER):
    path = tmp_path / "log.csv"
    path.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def _err(path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        load_log(path, **kwargs)
    err = info.value
    assert err.path == str(path)
    return err


@pytest.mark.parametrize("bad_line, row, column, text", [
    ("p3,x,a,1.5,0.1", 4, "score", "[0, 1]"),
    ("p3,x,a,-0.1,0.1", 4, "score", "[0, 1]"),
    ("p3,x,a,abc,0.1", 4, "score", "expected a number"),
    ("p3,x,a,inf,0.1", 4, "score", "[0, 1]"),
    ("p3,x,a,1,-2", 4, "cost", "finite and >= 0"),
    ("p3,x,a,1,inf", 4, "cost", "finite and >= 0"),
    ("p1,hello,a,1,0.1", 4, "prompt_id", "duplicate row"),
    ("p1,other text,c,1,0.1", 4, "prompt", "two different prompt texts"),
    ("p3,,a,1,0.1", 4, "prompt", "empty"),
    (",x,a,1,0.1", 4, "prompt_id", "empty"),
])
def test_bad_cell(tmp_path, bad_line, row, column, text):
    err = _err(_csv(tmp_path, GOOD + [bad_line, "p9,last,a,1,0.1"]), duplicates="error")
    assert (err.row, err.column) == (row, column)
    assert text in str(err)
    assert f"row {row}" in str(err) and str(tmp_path) in str(err)


@pytest.mark.parametrize("missing", ["prompt", "model", "score"])
def test_missing_required_column(tmp_path, missing):
    frame = pd.DataFrame({"prompt": ["a"], "model": ["m"], "score": [1.0]}).drop(columns=missing)
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    err = _err(path)
    assert err.column == missing and err.row is None and "missing required column" in str(err)


def test_empty_files(tmp_path):
    for name in ("e.csv", "e.jsonl", "e.json", "e.parquet"):
        path = tmp_path / name
        path.write_bytes(b"")
        assert "empty" in str(_err(path))
    header_only = tmp_path / "h.csv"
    header_only.write_text(HEADER)
    assert "no data rows" in str(_err(header_only))


def test_unknown_extension_and_forced_format(tmp_path):
    path = tmp_path / "log.xlsx"
    path.write_text("x")
    assert "unknown file extension" in str(_err(path))
    assert "format must be" in str(_err(_csv(tmp_path, GOOD), format="yaml"))


def test_non_utf8_names_row(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes((HEADER + GOOD[0] + "\n" + GOOD[1] + "\n").encode() + "p2,caf\xe9,a,1,0.1\n".encode("latin-1"))
    err = _err(path)
    assert err.row == 3 and "UTF-8" in str(err)
    jpath = tmp_path / "log.jsonl"
    jpath.write_bytes(b'{"prompt": "ok", "model": "a", "score": 1}\n{"prompt": "caf\xe9", "model": "a", "score": 1}\n')
    assert _err(jpath).row == 2


def test_invalid_json_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"prompt": "a", "model": "m", "score": 1}\n{"prompt": "b", "model": \n')
    err = _err(path)
    assert err.row == 2 and "invalid JSON" in str(err)
    path.write_text('{"prompt": "a", "model": "m", "score": 1}\n[1, 2]\n')
    assert _err(path).row == 2
    path.write_text('{"prompt": "a", "model": "m", "score": 1, "score": 0}\n')
    err = _err(path)
    assert (err.row, err.column) == (1, "score") and "twice" in str(err)


def test_json_score_types(tmp_path):
    path = tmp_path / "log.jsonl"
    rows = [{"prompt": "a", "model": "m", "score": 1}, {"prompt": "b", "model": "m", "score": True}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    err = _err(path)
    assert (err.row, err.column) == (2, "score")
    rows[1]["score"] = [0.5]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert (_err(path).row, _err(path).column) == (2, "score")


def test_parquet_bad_score_row(tmp_path):
    frame = pd.DataFrame({"prompt": list("abcdef"), "model": ["m"] * 6, "score": [0, 1, 0.5, 1, 7.0, 0]})
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    err = _err(path)
    assert (err.row, err.column) == (5, "score")


def test_duplicate_csv_header(tmp_path):
    err = _err(_csv(tmp_path, GOOD, header="prompt_id,prompt,model,score,score\n"))
    assert err.column == "score" and "twice" in str(err)


def test_ragged_csv_row(tmp_path):
    err = _err(_csv(tmp_path, GOOD + ["p3,x,a,1,0.1,extra,cells"]))
    assert err.row == 4


def test_wide_bad_cost_names_model_column(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("sample_id,prompt,m1,m1|total_cost\ns1,hi,1,0.1\ns2,yo,0,-1\n")
    err = _err(path)
    assert (err.row, err.column) == (2, "m1|total_cost")


def test_preference_winner_not_in_pair(tmp_path):
    path = tmp_path / "prefs.csv"
    path.write_text("prompt,model_a,model_b,winner\nq1,x,y,model_a\nq2,x,y,tie (bothbad)\nq3,x,y,z\n")
    with pytest.raises(DataError) as info:
        load_preferences(path)
    assert (info.value.row, info.value.column) == (3, "winner")
