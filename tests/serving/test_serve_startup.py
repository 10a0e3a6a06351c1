"""What ``routecast serve`` checks before it binds its port, each refusal one line with exit code 2
(issue 25 items 1 and 9, issue 26 item 8): a backends file that misspells or omits a model of the
checkpoint (or ``--allow-missing-backends`` and a fallback header on every chat it affects), an
unknown default operating point, a decision log that cannot be opened, a training run folder, an
occupied port; and the note that chats will answer 503 without backends."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from routecast.errors import ConfigError
from routecast.serving.serve import build_server, prepare_server
from tests._support.fake_backend import free_port
from tests._support.serving import quality_checkpoint

MATH = "Solve for x: 3x + 4 = 10"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return quality_checkpoint(tmp_path_factory.mktemp("startup") / "ck")


def _backends(tmp_path, backend, names) -> str:
    path = tmp_path / "backends.json"
    path.write_text(json.dumps({"backends": {n: {"base_url": backend.base_url, "timeout": 2} for n in names}}))
    return str(path)


def test_a_misspelt_backend_model_is_refused_naming_the_model_and_the_near_miss(ckpt, backend, tmp_path):
    path = _backends(tmp_path, backend, ["small", "medium", "Large"])
    with pytest.raises(ConfigError) as caught:
        build_server(ckpt, {"backends": path})
    message = str(caught.value)
    assert "\n" not in message
    assert "no backend for the checkpoint's model(s) 'large' (did you mean 'Large'?)" in message
    assert "--allow-missing-backends" in message
    path = _backends(tmp_path, backend, ["small", "medium"])  # omitted, nothing close: no suggestion
    with pytest.raises(ConfigError, match=r"model\(s\) 'large'; add them"):
        build_server(ckpt, {"backends": path})
    build_server(ckpt, {"backends": _backends(tmp_path, backend, ["*"])})  # a default backend serves every model


def test_allow_missing_backends_warns_and_reports_the_fallback_on_every_chat_it_affects(ckpt, backend, tmp_path):
    path = _backends(tmp_path, backend, ["small", "medium", "llarge"])
    prepared = prepare_server(ckpt, {"backends": path, "allow_missing_backends": True,
                                     "decision_log": str(tmp_path / "dl.sqlite")})
    warning, = prepared.notes
    assert warning.startswith("warning: no backend for the checkpoint's model(s) 'large' (did you mean 'llarge'?)")
    with TestClient(prepared.app) as client:
        routed = [client.post("/v1/chat/completions", json={"model": "router:quality", "messages": [
            {"role": "user", "content": MATH}]}) for _ in range(2)]
        direct = client.post("/v1/chat/completions", json={"model": "router", "messages": [
            {"role": "user", "content": "Say hello to Bo in a cheerful way"}]})  # routed to small: unaffected
        metrics = client.get("/metrics").text
    for r in routed:
        assert r.status_code == 200, r.text
        assert r.headers["x-routecast-model"] == "medium" and r.headers["x-routecast-fallback"] == "large->medium"
    assert direct.headers["x-routecast-model"] == "small" and "x-routecast-fallback" not in direct.headers
    assert 'routecast_fallbacks_total{from_model="large",to_model="medium"} 2.0' in metrics
    from routecast.data.decision_log import DecisionLog

    with DecisionLog(tmp_path / "dl.sqlite") as log:
        row = log.get(routed[0].headers["x-routecast-request-id"])
    assert row["chosen"] == "medium" and row["fallback"] == "large->medium"


def test_no_backends_is_said_at_start_up(ckpt):
    notes = prepare_server(ckpt, {}).notes
    assert notes == ["no backends file (--backends): /v1/route works, every POST /v1/chat/completions answers 503"]


def _serve(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "routecast.cli", "serve", *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ))


def _one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Uvicorn running" not in done.stderr
    line, = done.stderr.strip().splitlines()
    return line


@pytest.mark.parametrize("flags, expected", [
    (["--operating-point", "nope"], "error: unknown operating point 'nope'; this router has: quality"),
    (["--decision-log", "/proc/dl.sqlite"], "error: file /proc/dl.sqlite: cannot open the decision log ("),
])
def test_start_up_errors_are_one_line_before_binding(ckpt, flags, expected):
    port = free_port()
    line = _one_line(_serve(ckpt, "--port", port, *flags))
    assert line.startswith(expected), line
    with socket.create_server(("127.0.0.1", port)):  # nothing was left bound
        pass


def test_a_training_run_folder_is_refused_with_a_hint_to_export(ckpt, tmp_path):
    import shutil

    shutil.copytree(ckpt, tmp_path / "run" / "router")
    line = _one_line(_serve(tmp_path / "run"))
    assert line == (f"error: {tmp_path / 'run'} is a training run folder, not an exported checkpoint: export it "
                    f"first (routecast export {tmp_path / 'run'} --out CKPT) and serve CKPT")


def test_an_occupied_port_is_one_line(ckpt):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line = _one_line(_serve(ckpt, "--port", port))
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}: Address already in use"), line
