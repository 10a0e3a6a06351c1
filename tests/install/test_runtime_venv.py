"""The lean runtime install: ``pip install routecast`` (base dependencies only) serves a checkpoint.

A fresh virtual environment gets routecast's base dependencies and nothing else (no ``[train]``).
A checkpoint is made here, in the full environment (a static-encoder linear router on a real
slice of built-in data), then the runtime environment must

* not be able to import torch, Lightning, optuna, mlflow, sentence-transformers, matplotlib,
  pandas, scikit-learn or scipy;
* route with ``routecast.from_pretrained`` exactly as the full environment does;
* serve it with ``routecast serve`` on 127.0.0.1 and answer one ``/v1/route`` request with the
  same decisions;
* refuse a training command with one line naming the extra (exit code 2).

The install's size (site-packages) and time are printed (``pytest -s``) and recorded as test
properties. pip may reach the package index; when it cannot, the test is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests._support.fake_backend import free_port
from tests._support.paths import REPO
from tests._support.processes import server_process

pytestmark = [pytest.mark.slow, pytest.mark.minilm]

#: the training stack: none of it may be importable in the runtime environment
TRAINING_MODULES = ("torch", "pytorch_lightning", "lightning", "optuna", "mlflow", "sentence_transformers",
                    "matplotlib", "pandas", "sklearn", "scipy")
#: pip output that means "no package index reachable", not "routecast's dependencies are wrong"
_OFFLINE = ("Could not find a version that satisfies", "No matching distribution found",
            "Failed to establish a new connection", "Network is unreachable", "Temporary failure in name resolution",
            "Max retries exceeded")
#: the aim is 250 MB; the bound catches the training stack (2 GB) or a heavy dependency creeping in
SIZE_LIMIT_MB = 320
LAM = 3000.0
INSTALL_TIMEOUT = 900


def _clean_env() -> dict[str, str]:
    """The caller's environment without what would point the runtime venv at the full one."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")}


def _source_copy(dest: Path) -> Path:
    """pyproject + README + the package: pip builds from this copy, never in the shared work tree."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "routecast", dest / "routecast",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return dest


def _dir_megabytes(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total / 1e6


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("runtime")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    source = _source_copy(base / "src")
    env = _clean_env()
    started = time.perf_counter()
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(source)],
                          capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        output = done.stdout + done.stderr
        if any(marker in output for marker in _OFFLINE):
            pytest.skip(f"pip cannot reach a package index to build the runtime venv: {output.strip()[-300:]}")
        pytest.fail(f"pip install of the base dependencies failed:\n{output[-3000:]}")
    site = next((venv / "lib").glob("python3*/site-packages"))
    return {"venv": venv, "site": site, "seconds": seconds, "megabytes": _dir_megabytes(site)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A static-encoder linear router on a real slice of llmrouter_9models, saved with save_pretrained.

    The static encoder is distilled from the bundled MiniLM for the tokens of these prompts only
    (seconds, not the minutes of the full vocabulary); it ships inside the checkpoint either way.
    """
    from tokenizers import Tokenizer

    from routecast.router.encoders.sentence_transformer import bundled_minilm_path
    from routecast.router.encoders.static import distill_static
    from routecast.router.registry import make_router
    from tests._support.serving import real_small_log

    log = real_small_log(160)
    train, held_out = log.subset(np.arange(150)), log.subset(np.arange(150, 160))
    prompts = [str(p) for p in held_out.prompts[:6]]
    tokenizer = Tokenizer.from_file(str(bundled_minilm_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    ids = sorted({i for e in tokenizer.encode_batch([str(p) for p in log.prompts], add_special_tokens=False)
                  for i in e.ids})
    folder = distill_static(None, tmp_path_factory.mktemp("static") / "enc", dim=64, token_ids=ids, progress=False)
    router = make_router("linear", encoder=f"static:{folder}").fit(train)
    path = router.save_pretrained(tmp_path_factory.mktemp("ckpt") / "linear")
    return {"path": path, "prompts": prompts, "router": router}


def _run(venv: Path, *args: str, env_extra: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = _clean_env()
    env.update(env_extra or {})
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=venv.parent)


def test_runtime_venv_has_no_training_stack(runtime_venv, record_property):
    venv = runtime_venv["venv"]
    print(f"\nruntime venv: site-packages {runtime_venv['megabytes']:.0f} MB, "
          f"pip install {runtime_venv['seconds']:.0f} s")
    record_property("runtime_site_packages_mb", round(runtime_venv["megabytes"], 1))
    record_property("runtime_install_seconds", round(runtime_venv["seconds"], 1))
    code = ("import importlib.util, json, sys\n"
            f"print(json.dumps({{m: importlib.util.find_spec(m) is not None for m in {list(TRAINING_MODULES)!r}}}))")
    done = _run(venv, str(venv / "bin" / "python"), "-c", code)
    assert done.returncode == 0, done.stderr[-2000:]
    importable = json.loads(done.stdout.strip().splitlines()[-1])
    assert [m for m, found in importable.items() if found] == []
    assert runtime_venv["megabytes"] < SIZE_LIMIT_MB


def test_runtime_venv_routes_and_serves_like_the_full_install(runtime_venv, checkpoint, tmp_path):
    import httpx

    import routecast

    venv, ckpt, prompts = runtime_venv["venv"], str(checkpoint["path"]), checkpoint["prompts"]
    expected = routecast.from_pretrained(ckpt).route(prompts, lam=LAM)
    assert [d["model"] for d in expected] == checkpoint["router"].route(prompts, lam=LAM).chosen
    cache = {"ROUTECAST_CACHE_DIR": str(tmp_path / "cache")}

    # Python API in the runtime venv: the same decisions, and nothing of the training stack imported
    code = ("import json, sys, routecast\n"
            "records = routecast.from_pretrained(sys.argv[1]).route(json.loads(sys.argv[2]), lam=float(sys.argv[3]))\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.argv[4])))\n"
            "print(json.dumps({'records': records, 'heavy': heavy}))\n")
    done = _run(venv, str(venv / "bin" / "python"), "-c", code, ckpt, json.dumps(prompts), str(LAM),
                json.dumps(list(TRAINING_MODULES)), env_extra=cache)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    assert [r["model"] for r in out["records"]] == [d["model"] for d in expected]
    assert [r["ranking"] for r in out["records"]] == [d["ranking"] for d in expected]
    for got, want in zip(out["records"], expected):
        assert got["predicted_quality"] == pytest.approx(want["predicted_quality"], abs=1e-6)

    # routecast serve in the runtime venv, one /v1/route request
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = _clean_env()
    env.update(cache)
    command = [str(venv / "bin" / "routecast"), "serve", ckpt, "--host", "127.0.0.1", "--port", str(port)]
    with server_process(command, base, startup_timeout=90, env=env):
        reply = httpx.post(f"{base}/v1/route", json={"prompts": prompts, "lam": LAM}, timeout=30)
    assert reply.status_code == 200, reply.text
    decisions = reply.json()["decisions"]
    assert [d["model"] for d in decisions] == [d["model"] for d in expected]
    assert [d["rank"] for d in decisions] == [d["rank"] for d in expected]


def test_runtime_venv_refuses_training_commands_naming_the_extra(runtime_venv, tmp_path):
    venv = runtime_venv["venv"]
    done = _run(venv, str(venv / "bin" / "routecast"), "train", "--data", "llmrouter_9models", "--router", "linear",
                "--out", str(tmp_path / "run"), "--no-track", env_extra={"ROUTECAST_CACHE_DIR": str(tmp_path / "c")})
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("error: routecast train needs the training extra (")
    assert lines[0].endswith("pip install 'routecast[train]'")
    assert not (tmp_path / "run").exists()
