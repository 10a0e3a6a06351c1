"""The lean runtime install: ``pip install routecast`` (base dependencies only) serves every exportable checkpoint.

A fresh virtual environment gets routecast's base dependencies and nothing else (no ``[train]``);
it is built once per session (module fixture). Three checkpoints are made here, in the full
environment, on a real slice of built-in data:

* ``linear-static``: a linear router on a static encoder (the default encoder kind);
* ``mlp-static``: a torch-head router, routed in the venv through its ``head.onnx``;
* ``linear-onnx``: the int8 ONNX MiniLM encoder, whose graph ships inside the checkpoint.

Then the runtime environment must

* not be able to import torch, Lightning, optuna, mlflow, sentence-transformers, matplotlib,
  pandas, scikit-learn or scipy;
* route each with ``routecast.from_pretrained`` as the full environment does (same decisions,
  predicted quality within 1e-5) with an empty cache dir;
* serve each with ``routecast serve`` on 127.0.0.1 and answer one ``/v1/route`` request with the
  same decisions;
* refuse a training command with one line naming the extra (exit code 2).

The install's size (site-packages, with and without the pip and setuptools that ``python -m venv``
puts there, and the largest distributions) and time are printed (``pytest -s``) and recorded as
test properties. pip may reach the package index; when it cannot, the test is skipped, saying so.
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
#: the aim is 250 MB; the bound catches the training stack (2 GB) or a heavy dependency creeping in.
#: Measured 2026-12-06 (pip install 16 s, warm pip cache, idle; 79-197 s earlier under load): 278 MB, 256 MB without the pip (14) + setuptools (8)
#: that `python -m venv` adds. onnxruntime 80, numpy 71 (28 of it OpenBLAS), cryptography 16 (manifest
#: signatures), tokenizers 12 + its huggingface-hub 7 + hf-xet 12 (never called: no hub downloads),
#: pygments 9 + rich 3 (typer requires rich; typer-slim is now only an alias of typer), routecast 6,
#: pydantic 10. None of these is optional for a capability the lean install has.
SIZE_LIMIT_MB = 300
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


def _megabytes_by_distribution(site: Path) -> dict[str, float]:
    """MB on disk per installed distribution (the files its RECORD lists, .pyc included), largest first;
    files no RECORD lists go under ``(unlisted)``."""
    owned: dict[str, str] = {}
    for record in site.glob("*.dist-info/RECORD"):
        dist = record.parent.name.split("-")[0].lower().replace("_", "-")
        for line in record.read_text(encoding="utf-8").splitlines():
            rel = line.rsplit(",", 2)[0]
            full = os.path.normpath(site / rel)
            if full.startswith(str(site) + os.sep):
                owned[full] = dist
    sizes: dict[str, float] = {}
    for root, _dirs, files in os.walk(site):
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                dist = owned.get(os.path.normpath(full), "(unlisted)")
                sizes[dist] = sizes.get(dist, 0.0) + os.path.getsize(full) / 1e6
    return dict(sorted(sizes.items(), key=lambda item: -item[1]))


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
    return {"venv": venv, "site": site, "seconds": seconds, "megabytes": _dir_megabytes(site),
            "by_distribution": _megabytes_by_distribution(site)}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The three checkpoints of the module docstring, on a real slice of llmrouter_9models.

    The static encoder is distilled from the bundled MiniLM for the tokens of these prompts only
    (seconds, not the minutes of the full vocabulary); it ships inside the checkpoint either way.
    The int8 ONNX MiniLM is exported once into the shared cache dir (needs torch, here).
    """
    from tokenizers import Tokenizer

    from routecast.router.encoders.sentence_transformer import bundled_minilm_path
    from routecast.router.encoders.static import distill_static
    from routecast.core.registry import make_router
    from tests._support.serving import real_small_log

    log = real_small_log(160)
    train, held_out = log.subset(np.arange(150)), log.subset(np.arange(150, 160))
    prompts = [str(p) for p in held_out.prompts[:6]]
    tokenizer = Tokenizer.from_file(str(bundled_minilm_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    ids = sorted({i for e in tokenizer.encode_batch([str(p) for p in log.prompts], add_special_tokens=False)
                  for i in e.ids})
    folder = distill_static(None, tmp_path_factory.mktemp("static") / "enc", dim=64, token_ids=ids, progress=False)
    routers = {
        "linear-static": make_router("linear", encoder=f"static:{folder}"),
        "mlp-static": make_router("mlp", encoder=f"static:{folder}", max_epochs=20, hidden_dim=32),
        "linear-onnx": make_router("linear", encoder="onnx:quantize=int8"),
    }
    out = {}
    base = tmp_path_factory.mktemp("ckpt")
    for name, router in routers.items():
        router.fit(train)
        out[name] = {"path": router.save_pretrained(base / name), "prompts": prompts, "router": router}
    return out


def _run(venv: Path, *args: str, env_extra: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = _clean_env()
    env.update(env_extra or {})
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=venv.parent)


def test_runtime_venv_has_no_training_stack(runtime_venv, record_property):
    venv = runtime_venv["venv"]
    sizes = runtime_venv["by_distribution"]
    venv_own = sum(sizes.get(name, 0.0) for name in ("pip", "setuptools"))
    print(f"\nruntime venv: site-packages {runtime_venv['megabytes']:.0f} MB "
          f"({runtime_venv['megabytes'] - venv_own:.0f} MB without the pip + setuptools of python -m venv), "
          f"pip install {runtime_venv['seconds']:.0f} s")
    print("largest: " + ", ".join(f"{name} {mb:.1f}" for name, mb in list(sizes.items())[:16]))
    record_property("runtime_site_packages_mb", round(runtime_venv["megabytes"], 1))
    record_property("runtime_site_packages_mb_without_pip_setuptools", round(runtime_venv["megabytes"] - venv_own, 1))
    record_property("runtime_mb_by_distribution", json.dumps({k: round(v, 1) for k, v in sizes.items()}))
    record_property("runtime_install_seconds", round(runtime_venv["seconds"], 1))
    code = ("import importlib.util, json, sys\n"
            f"print(json.dumps({{m: importlib.util.find_spec(m) is not None for m in {list(TRAINING_MODULES)!r}}}))")
    done = _run(venv, str(venv / "bin" / "python"), "-c", code)
    assert done.returncode == 0, done.stderr[-2000:]
    importable = json.loads(done.stdout.strip().splitlines()[-1])
    assert [m for m, found in importable.items() if found] == []
    assert runtime_venv["megabytes"] < SIZE_LIMIT_MB


@pytest.mark.parametrize("kind", ["linear-static", "mlp-static", "linear-onnx"])
def test_runtime_venv_routes_and_serves_like_the_full_install(runtime_venv, checkpoints, kind, tmp_path):
    import httpx

    import routecast

    checkpoint = checkpoints[kind]
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
        assert got["predicted_quality"] == pytest.approx(want["predicted_quality"], abs=1e-5)

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
    assert not (tmp_path / "cache").exists()  # the checkpoint read nothing from outside itself


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
