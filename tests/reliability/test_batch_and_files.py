"""The real `routecast` entry point under signals, locks and file errors; and signed checkpoints end
to end (keygen -> export --sign -> route --trusted-key / --expect-sha256). Bounded: every child
process has a timeout, every wait a deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import routecast
from routecast.atomic import out_lock
from routecast.serving.batch import partial_paths, route_file
from tests._support.paths import REPO
from tests._support.serving import make_checkpoint, prompts_of

EXE = [sys.executable, "-m", "routecast.cli"]
N_PROMPTS = 3000


def _run(args, timeout=180, **kw):
    return subprocess.run(EXE + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw)


def _one_clean_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    ckpt = make_checkpoint(root / "ck")
    texts = prompts_of("math", N_PROMPTS // 2, seed=5) + prompts_of("chat", N_PROMPTS - N_PROMPTS // 2, seed=6)
    src = root / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"p{i}", "prompt": t}) + "\n" for i, t in enumerate(texts)))
    reference = root / "reference.jsonl"
    route_file(routecast.load(ckpt), src, reference, batch_size=1, lam=30.0)
    return {"root": root, "ckpt": ckpt, "src": src, "reference": reference.read_text()}


def _start_route(setup, out: Path, *extra):
    args = ["route", setup["ckpt"], "--input", setup["src"], "--output", out, "--lam", "30", "--batch-size", "1",
            "--no-progress", *extra]
    return subprocess.Popen(EXE + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)


def _wait_for_lines(path: Path, n: int, proc, deadline_s: float = 120) -> int:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if path.exists():
            count = path.read_bytes().count(b"\n")
            if count >= n:
                return count
        if proc.poll() is not None:
            pytest.fail(f"route ended early: {proc.returncode} {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"{path} never reached {n} lines")


def test_sigterm_then_sigkill_then_resume_gives_the_uninterrupted_output(setup, tmp_path):
    out = tmp_path / "out.jsonl"
    partial, state = partial_paths(out)
    proc = _start_route(setup, out)
    _wait_for_lines(partial, 100, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    line = _one_clean_line(stderr)
    assert "interrupted (terminated by signal 15)" in line and "again with resume to continue" in line
    kept = len(partial.read_text().splitlines())
    assert 100 <= kept < N_PROMPTS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl.partial", "out.jsonl.partial.json"]

    proc = _start_route(setup, out, "--resume")
    _wait_for_lines(partial, kept + 100, proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.communicate(timeout=60)
    assert not out.exists()

    done = _run(["route", setup["ckpt"], "--input", setup["src"], "--output", out, "--lam", "30", "--batch-size", "1",
                 "--no-progress", "--resume"])
    assert done.returncode == 0, done.stderr
    assert f"routed {N_PROMPTS} prompts" in done.stdout and "resumed" in done.stdout
    assert out.read_text() == setup["reference"]  # every id once, in order, same decisions
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_bad_lines_and_duplicates_from_the_cli(setup, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n')
    args = ["route", setup["ckpt"], "--input", src, "--output", tmp_path / "out.jsonl", "--no-progress"]
    done = _run(args)
    assert done.returncode == 2
    assert "row 2, column 'id': duplicate id 1 (first on line 1)" in _one_clean_line(done.stderr)
    done = _run(args + ["--allow-duplicates"])
    assert done.returncode == 0 and "1 repeated ids" in done.stdout, done.stderr
    src.write_text('{"prompt": "' + "\\ud800" + '"}\n')
    done = _run(args)
    assert done.returncode == 2 and "row 1, column 'prompt': 'prompt' holds a lone surrogate" in \
        _one_clean_line(done.stderr)


def test_second_writer_and_unwritable_outputs_fail_with_one_line(setup, tmp_path):
    (tmp_path / "a-file").write_text("x")
    for command in (["route", setup["ckpt"], "--input", setup["src"], "--output", tmp_path / "a-file" / "o.jsonl"],
                    ["export", setup["ckpt"], "--out", tmp_path / "a-file" / "ck"],
                    ["train", "--data", "llmrouter_9models", "--router", "best-single", "--no-track",
                     "--out", tmp_path / "a-file" / "run"]):
        done = _run(command)
        assert done.returncode == 2, done.stderr
        assert "a-file: is a file, expected a folder" in _one_clean_line(done.stderr)
    busy = tmp_path / "busy"
    with out_lock(busy):
        for command in (["export", setup["ckpt"], "--out", busy],
                        ["route", setup["ckpt"], "--input", setup["src"], "--output", busy],
                        ["train", "--data", "llmrouter_9models", "--router", "best-single", "--no-track",
                         "--out", busy]):
            done = _run(command)
            assert done.returncode == 2, (command[0], done.stderr)
            assert f"{busy}: another routecast process (pid {os.getpid()}) is writing it" in \
                _one_clean_line(done.stderr), command[0]
    assert not busy.exists()


def test_signed_export_and_authenticated_route(setup, tmp_path):
    done = _run(["keygen", tmp_path / "owner.pem"])
    assert done.returncode == 0 and "owner.pem.pub" in done.stdout, done.stderr
    done = _run(["export", setup["ckpt"], "--out", tmp_path / "signed", "--sign", tmp_path / "owner.pem"])
    assert done.returncode == 0, done.stderr
    sha = done.stdout.split("manifest sha256: ")[1].split()[0]
    assert len(sha) == 64 and (tmp_path / "signed" / "manifest.sig").is_file()
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "Solve for x: 2x + 1 = 5"}\n')
    base = ["route", tmp_path / "signed", "--input", src, "--output", tmp_path / "o.jsonl", "--lam", "30"]
    for trust in (["--trusted-key", tmp_path / "owner.pem.pub"], ["--expect-sha256", sha]):
        done = _run(base + trust)
        assert done.returncode == 0, done.stderr
    # tamper consistently (manifest rewritten): integrity passes, authenticity does not
    config = tmp_path / "signed" / "config.json"
    data = json.loads(config.read_text())
    data["extra"] = {"note": "rewritten"}
    config.write_text(json.dumps(data))
    manifest_path = tmp_path / "signed" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    import hashlib

    manifest["files"]["config.json"] = {"sha256": hashlib.sha256(config.read_bytes()).hexdigest(),
                                        "size": config.stat().st_size}
    manifest_path.write_text(json.dumps(manifest))
    assert _run(base).returncode == 0
    done = _run(base + ["--trusted-key", tmp_path / "owner.pem.pub"])
    assert done.returncode == 2 and "manifest.sig: field 'signature' does not verify" in _one_clean_line(done.stderr)
    done = _run(base + ["--expect-sha256", sha])
    assert done.returncode == 2 and f"is not the pinned {sha}" in _one_clean_line(done.stderr)
