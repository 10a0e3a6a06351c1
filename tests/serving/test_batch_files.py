"""`routecast route` input validation, duplicate ids, resume after SIGTERM / SIGKILL, output locks
and file errors (issue 14, item 7). Tiny knn checkpoint on the hashing encoder."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest

import routecast
from routecast.atomic import describe_os_error, file_errors, out_lock
from routecast.errors import BusyError, DataError, FileAccessError, RoutecastError
from routecast.serving.batch import partial_paths, route_file, validate_prompts
from tests._support.serving import make_checkpoint, prompts_of


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    return routecast.load(make_checkpoint(tmp_path_factory.mktemp("batch") / "ck"))


def _jsonl(path: Path, rows: list, *, raw_lines: list[str] = ()) -> Path:
    lines = [json.dumps(r) for r in rows] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _prompts(n: int) -> list[dict]:
    texts = prompts_of("math", n // 2, seed=1) + prompts_of("chat", n - n // 2, seed=2)
    return [{"id": f"q{i}", "prompt": t} for i, t in enumerate(texts)]


def _decisions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("bad_line, message", [
    ("{not json", r"row 3: invalid JSON"),
    ('["a list"]', r"row 3: expected a JSON object"),
    ('{"text": "no prompt key"}', r"row 3, column 'prompt': missing"),
    ('{"prompt": 5}', r"row 3, column 'prompt': 'prompt' must be a string, got int"),
    ('{"prompt": "ok", "id": [1]}', r"row 3, column 'id': 'id' must be a string or an integer, got list"),
    ('{"prompt": "\\ud800 lone"}', r"row 3, column 'prompt': 'prompt' holds a lone surrogate \('\\ud800'\) at character 1"),
    ('{"prompt": "ok", "id": ' + "9" * 5000 + "}", r"row 3, column 'id': a number with 5,000 digits"),
    ('{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}", r"row 3: invalid JSON"),
    ('{"prompt": "   "}', r"row 3, column 'prompt': 'prompt' is empty"),
    ('{"prompt": ""}', r"row 3, column 'prompt': 'prompt' is empty"),
    ('{"prompt": ["a"]}', r"row 3, column 'prompt': 'prompt' must be a string, got list"),
    ('{"prompt": null}', r"row 3, column 'prompt': missing or non-string 'prompt'"),
    ('{"prompt": "ok", "id": true}', r"row 3, column 'id': 'id' must be a string or an integer, got bool"),
    ('{"prompt": "ok", "id": "\\udfff"}', r"row 3, column 'id': 'id' holds a lone surrogate"),
    ('{"prompt": "ok", "prompt": "twice"}', r"row 3, column 'prompt': key 'prompt' appears twice"),
    ("\xff\xfe", r"row 3: line is not valid UTF-8"),
])
def test_each_bad_line_is_one_error_naming_the_line(runtime, tmp_path, bad_line, message):
    src = tmp_path / "in.jsonl"
    data = '{"prompt": "a"}\n{"prompt": "b"}\n'.encode() + (bad_line.encode("latin-1") if bad_line == "\xff\xfe"
                                                              else bad_line.encode()) + b"\n"
    src.write_bytes(data)
    with pytest.raises(DataError, match=message) as info:
        route_file(runtime, src, tmp_path / "out.jsonl", batch_size=1)
    assert f"file {src}, " in str(info.value) and "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # nothing routed, nothing left behind


def test_bom_is_accepted_like_the_data_loader(runtime, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + b'{"id": "a", "prompt": "Solve for x: 2x + 1 = 5"}\n{"prompt": "Say hi"}\n')
    summary = route_file(runtime, src, tmp_path / "out.jsonl", lam=30.0)
    assert [d["id"] for d in _decisions(tmp_path / "out.jsonl")] == ["a", 2]
    assert summary["n_prompts"] == 2
    text = tmp_path / "in.txt"
    text.write_bytes(b"\xef\xbb\xbfSolve for x: 2x + 1 = 5\n")
    route_file(runtime, text, tmp_path / "out2.jsonl", fmt="text", lam=30.0)
    assert _decisions(tmp_path / "out2.jsonl")[0]["id"] == 1


def test_duplicate_ids_are_refused_or_counted(runtime, tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", [{"id": "x", "prompt": "a b"}, {"prompt": "c d"}, {"id": "x", "prompt": "e"},
                                         {"id": 2, "prompt": "collides with line 2's implicit id"}])
    with pytest.raises(DataError, match=r"row 3, column 'id': duplicate id 'x' \(first on line 1\)"):
        route_file(runtime, src, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
    assert validate_prompts(src, allow_duplicates=True) == {"n_prompts": 4, "duplicates": 2}
    summary = route_file(runtime, src, tmp_path / "out.jsonl", allow_duplicates=True, lam=1.0)
    assert summary["duplicates"] == 2 and summary["n_prompts"] == 4
    assert [d["id"] for d in _decisions(tmp_path / "out.jsonl")] == ["x", 2, "x", 2]
    # a string "2" and the integer 2 are different ids
    src2 = _jsonl(tmp_path / "in2.jsonl", [{"id": "2", "prompt": "a"}, {"id": 2, "prompt": "b"}])
    assert route_file(runtime, src2, tmp_path / "out2.jsonl")["n_prompts"] == 2


class _Interrupt:
    """Wraps a runtime; sends this process a real SIGTERM after ``after`` route() calls."""

    def __init__(self, runtime, after: int):
        self.inner, self.after, self.calls = runtime, after, 0
        self.models, self.manifest_sha256 = runtime.models, runtime.manifest_sha256

    def route(self, texts, **kwargs):
        self.calls += 1
        if self.calls > self.after:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.inner.route(texts, **kwargs)


def test_sigterm_keeps_complete_decisions_and_resume_writes_nothing_twice(runtime, tmp_path):
    rows = _prompts(23)
    src = _jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    route_file(runtime, src, tmp_path / "reference.jsonl", batch_size=5, lam=30.0)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RoutecastError, match=r"interrupted \(terminated by signal 15\) after routing 10 of 23 "
                                             r"prompts; the 10 decisions are kept in .*out\.jsonl\.partial"):
        route_file(_Interrupt(runtime, after=2), src, out, batch_size=5, lam=30.0)
    assert signal.getsignal(signal.SIGTERM) is previous  # handler restored
    partial, state = partial_paths(out)
    assert not out.exists() and len(_decisions(partial)) == 10 and state.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl.partial", "out.jsonl.partial.json",
                                                          "reference.jsonl"]  # no hidden temp, no lock file
    # different settings cannot resume into it
    with pytest.raises(DataError, match=r"cannot resume: route differ from the interrupted run"):
        route_file(runtime, src, out, batch_size=5, lam=31.0, resume=True)
    calls = []
    original = runtime.route
    runtime.route = lambda texts, **kw: calls.append(len(texts)) or original(texts, **kw)
    try:
        summary = route_file(runtime, src, out, batch_size=5, lam=30.0, resume=True)
    finally:
        del runtime.route
    assert calls == [5, 5, 3]  # only the 13 missing prompts were routed
    assert summary["resumed"] == 10 and summary["n_prompts"] == 23
    assert out.read_text() == (tmp_path / "reference.jsonl").read_text()
    assert sum(summary["decisions"].values()) == 23
    assert not partial.exists() and not state.exists()


def test_sigkill_leftovers_are_cleaned_or_reused(runtime, tmp_path):
    rows = _prompts(12)
    src = _jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    route_file(runtime, src, tmp_path / "reference.jsonl", batch_size=4, lam=30.0)
    reference = (tmp_path / "reference.jsonl").read_text().splitlines(keepends=True)
    # what a SIGKILL in the middle of the second batch's write leaves: a torn line, a stale atomic temp
    with pytest.raises(RoutecastError):
        route_file(_Interrupt(runtime, after=0), src, out, batch_size=4, lam=30.0)  # creates the state file
    partial, state = partial_paths(out)
    partial.write_text("".join(reference[:5]) + reference[5][:17])
    stale = tmp_path / ".out.jsonl.ab12cd.tmp"
    stale.write_bytes(b"x" * 1000)
    summary = route_file(runtime, src, out, batch_size=4, lam=30.0, resume=True)
    assert summary["resumed"] == 5
    assert out.read_text() == "".join(reference)
    assert not stale.exists()
    # without resume an old partial is discarded, not appended to
    partial.write_text("".join(reference[:3]))
    (tmp_path / ".out.jsonl.partial.ef34.tmp").write_text("junk")
    assert route_file(runtime, src, out, batch_size=4, lam=30.0)["resumed"] == 0
    assert out.read_text() == "".join(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl", "reference.jsonl"]


def test_resume_refuses_a_changed_input(runtime, tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", _prompts(8))
    out = tmp_path / "out.jsonl"
    with pytest.raises(RoutecastError):
        route_file(_Interrupt(runtime, after=1), src, out, batch_size=4, lam=30.0)
    _jsonl(src, _prompts(9))
    with pytest.raises(DataError, match=r"cannot resume: input_mtime_ns, input_size differ"):
        route_file(runtime, src, out, batch_size=4, lam=30.0, resume=True)


def test_a_second_writer_to_the_same_output_is_refused(runtime, tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", _prompts(4))
    out = tmp_path / "out.jsonl"
    with out_lock(out):
        with pytest.raises(BusyError, match=rf"{out}: another routecast process \(pid {os.getpid()}\) is writing it"):
            route_file(runtime, src, out)
        assert not out.exists()
    route_file(runtime, src, out)  # released: works, and the lock file is gone
    assert not (tmp_path / ".out.jsonl.lock").exists()


def test_file_errors_become_one_line(runtime, tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", _prompts(2))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileAccessError, match=r"afile: is a file, expected a folder$"):
        route_file(runtime, src, tmp_path / "afile" / "out.jsonl")
    with pytest.raises(FileAccessError, match=r"afile/x: a parent of this path is a file, not a folder$"):
        with file_errors():
            open(tmp_path / "afile" / "x", "w")
    denied = PermissionError(errno.EACCES, "Permission denied", "/srv/runs/out")
    assert describe_os_error(denied) == "/srv/runs/out: permission denied"
    with pytest.raises(FileAccessError, match=r"^/srv/runs/out: permission denied$"):
        with file_errors():
            raise denied
    with pytest.raises(ValueError):  # not a file error: untouched
        with file_errors():
            raise ValueError("a bug")


def test_fuzzed_lines_give_a_dataerror_or_valid_prompts(tmp_path_factory):
    """Random bytes and random JSON values per line: never anything but DataError (no traceback)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                               lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                               max_leaves=8)
    lines = st.one_of(st.binary(max_size=60),
                      json_values.map(lambda v: json.dumps(v).encode()),
                      st.builds(lambda p, i: json.dumps({"prompt": p, "id": i}).encode(), json_values, json_values))
    folder = tmp_path_factory.mktemp("fuzz")

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(lines, min_size=1, max_size=4), st.sampled_from(["jsonl", "text"]))
    def check(raw_lines, fmt):
        src = folder / "in.jsonl"
        src.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in raw_lines) + b"\n")
        try:
            counts = validate_prompts(src, fmt=fmt)
        except DataError as exc:
            assert f"file {src}" in str(exc) and "\n" not in str(exc)
        else:
            assert counts["n_prompts"] <= len(raw_lines)

    check()
