"""Cascade checkpoints are self-contained (the answer scorer's encoder ships inside) and signable.

The router and the scorer use a toy static encoder saved to a folder outside the checkpoint; the tests delete
that folder and point the routecast cache at an empty directory before loading, so a load that
read a model from outside the checkpoint would fail (or rebuild a different encoder).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from routecast.cascade.cascade_checkpoint import SCORER_ENCODER_DIR
from routecast.cascade.cascade_router import CascadeRouter
from routecast.errors import CheckpointError
from routecast.core.checkpoint import manifest_sha256
from routecast.core.signing import generate_keypair
from routecast.serving.cascade_runtime import load_cascade
from tests._support.encoders import toy_static_encoder
from tests.cascade.test_cascade_router import parts, synthetic

ENC = "hashing:dim=64"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(fitted cascade, test log, checkpoint, signed checkpoint, keys folder); the scorer's encoder
    folder and the cache used while fitting are deleted before any test loads."""
    base = tmp_path_factory.mktemp("cascade_ckpt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROUTECAST_CACHE_DIR", str(base / "fit_cache"))
        log = synthetic(240, hedge=True, seed=3)
        texts = list(log.prompts) + [str(r) for r in log.responses.reshape(-1)]
        toy_static_encoder(texts, dim=16).save(base / "scorer_static")
        spec = f"static:{base / 'scorer_static'}"
        train, val, test = parts(log)
        cascade = CascadeRouter(router="linear", encoder=spec, scorer_encoder=spec, kappas=(0.0, 1.0),
                                n_lams=15).fit(train, val)
        keys = base / "keys"
        generate_keypair(keys / "owner.pem", keys / "owner.pub")
        generate_keypair(keys / "attacker.pem", keys / "attacker.pub")
        plain = cascade.save(base / "plain")
        signed = cascade.save(base / "signed", sign_key=keys / "owner.pem")
    shutil.rmtree(base / "scorer_static")
    shutil.rmtree(base / "fit_cache", ignore_errors=True)
    return cascade, test, plain, signed, keys


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTECAST_CACHE_DIR", str(tmp_path / "empty_cache"))


def test_round_trip_with_no_model_outside_the_checkpoint(saved):
    cascade, test, plain, _, _ = saved
    assert (plain / SCORER_ENCODER_DIR / "encoder.safetensors").is_file()
    loaded = CascadeRouter.load(plain)
    assert loaded.scorer_.encoder_.name == cascade.scorer_.encoder_.name
    a, b = cascade.simulate(test, cascade.lams_), loaded.simulate(test, cascade.lams_)
    for key in ("called", "chosen", "cost", "quality"):
        np.testing.assert_array_equal(a[key], b[key])
    # the policy is not trivial on this log: some prompts stop after one call, some escalate
    calls = np.array([bin(int(m)).count("1") for m in a["called"][len(cascade.lams_) // 2]])
    assert calls.min() == 1 and calls.max() >= 2
    j = cascade.pool_.index("A")
    want = cascade.scorer_.predict(list(test.prompts[:20]), list(test.responses[:20, j]), "A")
    got = loaded.scorer_.predict(list(test.prompts[:20]), list(test.responses[:20, j]), "A")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert loaded.manifest_sha256_ == manifest_sha256(plain) and loaded.signed_by_ is None


def test_signed_checkpoint_loads_with_the_right_key_only(saved):
    cascade, test, plain, signed, keys = saved
    loaded = CascadeRouter.load(signed, trusted_key=keys / "owner.pub")
    assert loaded.signed_by_ is not None and len(loaded.signed_by_) == 16
    np.testing.assert_array_equal(loaded.simulate(test)["chosen"], cascade.simulate(test)["chosen"])
    with pytest.raises(CheckpointError, match=r"manifest\.sig: field 'key_id': signed by key \w+, not by the trusted") as exc:
        CascadeRouter.load(signed, trusted_key=keys / "attacker.pub")
    assert "\n" not in str(exc.value)
    with pytest.raises(CheckpointError, match=r"manifest\.sig: missing; a trusted key was given"):
        CascadeRouter.load(plain, trusted_key=keys / "owner.pub")


def test_pinned_sha256(saved):
    _, _, plain, _, _ = saved
    digest = manifest_sha256(plain)
    assert CascadeRouter.load(plain, expect_sha256=digest.upper()).manifest_sha256_ == digest
    with pytest.raises(CheckpointError, match=r"manifest\.json: sha256 [0-9a-f]{64} is not the pinned"):
        CascadeRouter.load(plain, expect_sha256="0" * 64)


def test_tampered_files_are_refused(saved, tmp_path):
    _, _, _, signed, keys = saved
    copy = tmp_path / "copy"
    shutil.copytree(signed, copy)
    weights = copy / SCORER_ENCODER_DIR / "encoder.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"scorer_encoder/encoder\.safetensors: sha256 does not match "
                                              r"manifest\.json") as exc:
        CascadeRouter.load(copy, trusted_key=keys / "owner.pub")
    assert "\n" not in str(exc.value)
    # rewriting the manifest to match is caught by the signature
    manifest = json.loads((copy / "manifest.json").read_text())
    import hashlib

    manifest["files"][f"{SCORER_ENCODER_DIR}/encoder.safetensors"] = hashlib.sha256(bytes(data)).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    with pytest.raises(CheckpointError, match=r"manifest\.sig: field 'signature' does not verify against "
                                              r"manifest\.json"):
        CascadeRouter.load(copy, trusted_key=keys / "owner.pub")
    # an extra file slipped in is refused even without a key
    shutil.rmtree(copy)
    shutil.copytree(signed, copy)
    (copy / SCORER_ENCODER_DIR / "extra.pkl").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"scorer_encoder/extra\.pkl: file is not listed in manifest\.json"):
        CascadeRouter.load(copy)


def test_serving_loader_passes_trust_options(saved):
    _, _, plain, signed, keys = saved
    runtime = load_cascade(signed, trusted_key=keys / "owner.pub")
    assert runtime.manifest_sha256 == manifest_sha256(signed)
    with pytest.raises(CheckpointError, match="not by the trusted key"):
        load_cascade(signed, trusted_key=keys / "attacker.pub")
    assert load_cascade(plain, expect_sha256=manifest_sha256(plain)).manifest_sha256 == manifest_sha256(plain)


def test_export_sign_cli_signs_a_cascade_checkpoint(saved, tmp_path):
    from typer.testing import CliRunner

    from routecast.cli import app as cli

    cascade, test, plain, _, keys = saved
    out = tmp_path / "exported"
    done = CliRunner().invoke(cli, ["export", str(plain), "--out", str(out), "--sign", str(keys / "owner.pem")])
    assert done.exit_code == 0, done.output
    assert "exported cascade router (3 models)" in done.output and "signed" in done.output
    assert f"manifest sha256: {manifest_sha256(out)}" in done.output
    loaded = CascadeRouter.load(out, trusted_key=keys / "owner.pub")
    np.testing.assert_array_equal(loaded.simulate(test)["called"], cascade.simulate(test)["called"])


@pytest.mark.slow
@pytest.mark.minilm
def test_minilm_scorer_ships_as_onnx_with_the_same_decisions(tmp_path, monkeypatch):
    """A MiniLM scorer (sentence-transformers, torch) ships as its ONNX export: the loaded scorer runs
    onnxruntime (no torch needed to serve), rates answers as before and the policy decides the same."""
    monkeypatch.setenv("ROUTECAST_CACHE_DIR", str(tmp_path / "fit_cache"))
    train, val, test = parts(synthetic(96, hedge=True, seed=4))
    cascade = CascadeRouter(router="linear", encoder=ENC, scorer_encoder="minilm", kappas=(1.0,),
                            n_lams=9).fit(train, val)
    path = cascade.save(tmp_path / "ck")
    meta = json.loads((path / SCORER_ENCODER_DIR / "config.json").read_text())["encoder"]
    assert meta["spec"] == "onnx:encoder_model" and meta["name"].startswith("onnx-")
    shutil.rmtree(tmp_path / "fit_cache")
    monkeypatch.setenv("ROUTECAST_CACHE_DIR", str(tmp_path / "empty"))
    loaded = CascadeRouter.load(path)
    assert type(loaded.scorer_.encoder_).__name__ == "OnnxEncoder"
    j = cascade.pool_.index("A")
    want = cascade.scorer_.predict(list(test.prompts), list(test.responses[:, j]), "A")
    got = loaded.scorer_.predict(list(test.prompts), list(test.responses[:, j]), "A")
    np.testing.assert_allclose(got, want, atol=1e-3)
    a, b = cascade.simulate(test, cascade.lams_), loaded.simulate(test, cascade.lams_)
    np.testing.assert_array_equal(a["called"], b["called"])
    np.testing.assert_array_equal(a["chosen"], b["chosen"])


def test_lean_runtime_serves_a_signed_cascade(saved):
    """In a fresh interpreter with every train-extra module blocked (no torch, no scikit-learn), the
    signed checkpoint loads with its key and runs the same cascades as in-process."""
    import os
    import subprocess
    import sys

    from routecast.errors import TRAIN_EXTRA_MODULES
    from tests._support.paths import REPO

    cascade, test, _, signed, keys = saved
    rows = list(range(12))
    answers = [{m: test.responses[i, test.model_index(m)] for m in cascade.pool_} for i in rows]
    prompts = [test.prompts[i] for i in rows]
    code = ("import sys, json\nfor _m in %r:\n    sys.modules[_m] = None\n" % sorted(TRAIN_EXTRA_MODULES)) + """
from routecast.serving.cascade_runtime import load_cascade
runtime = load_cascade(sys.argv[1], trusted_key=sys.argv[2])
prompts, answers = json.loads(sys.argv[3]), json.loads(sys.argv[4])
runs = [runtime.cascade.run(p, lambda m, _p, a=a: a[m]).models_called for p, a in zip(prompts, answers)]
print(json.dumps({"runs": runs, "torch": sys.modules.get("torch") is not None}))
"""
    done = subprocess.run([sys.executable, "-c", code, str(signed), str(keys / "owner.pub"), json.dumps(prompts),
                           json.dumps(answers)], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ})
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    want = [cascade.run(p, lambda m, _p, a=a: a[m]).models_called for p, a in zip(prompts, answers)]
    assert out == {"runs": want, "torch": False}
    assert {len(r) for r in want} >= {1, 2}  # some stop after one call, some escalate
