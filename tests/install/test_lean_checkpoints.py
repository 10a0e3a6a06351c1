"""The lean runtime (no torch) loads and routes every exportable checkpoint, in-process fast guards.

Each checkpoint is written here, in the full environment, then loaded in a fresh interpreter in
which every module of the ``train`` extra is blocked (``sys.modules[name] = None``: ``import
torch`` raises ModuleNotFoundError, as on ``pip install routecast``). The slow, real venv build
is tests/install/test_runtime_venv.py.

* torch-head routers (mlp, mf, irt) route through the ``head.onnx`` every such checkpoint
  carries: the same decisions as torch, predicted quality within 1e-5, and a re-save without
  torch writes the same bytes;
* a torch-head checkpoint without ``head.onnx`` is refused in one line that says what to do;
* ``finetuned-encoder`` stays train-only: one line naming the extra;
* an ``onnx`` encoder ships its graph (int8 here) inside the checkpoint and is loaded from there,
  with an empty cache dir and no MiniLM package.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from routecast.errors import TRAIN_EXTRA_MODULES, CheckpointError, ConfigError
from routecast.core.checkpoint import load_checkpoint, save_checkpoint
from routecast.core.registry import make_router
from tests._support.paths import REPO
from tests._support.encoders import toy_static_encoder
from tests._support.serving import prompts_of, synthetic_log

BLOCK = "import sys\nfor _m in {mods!r}:\n    sys.modules[_m] = None\n".format(mods=sorted(TRAIN_EXTRA_MODULES))
LAM = 30.0
#: load, route, report which train-extra modules got imported, optionally re-save
_LEAN_ROUTE = BLOCK + """
import json, routecast
runtime = routecast.from_pretrained(sys.argv[1])
router = runtime.router
out = {"records": runtime.route(json.loads(sys.argv[2]), lam=float(sys.argv[3])),
       "quality": router.predict_quality(embeddings=runtime.encode(json.loads(sys.argv[2]))).tolist(),
       "torch": "torch" in sys.modules and sys.modules["torch"] is not None}
if len(sys.argv) > 4:
    router.save_pretrained(sys.argv[4])
print(json.dumps(out))
"""


def _lean(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**os.environ, **(env or {})})


def _prompts() -> list[str]:
    return prompts_of("math", 6, seed=11) + prompts_of("chat", 6, seed=12) + synthetic_log(8, seed=13).prompts.tolist()


def _fit(name: str, log=None, encoder_dim: int = 16, **params):
    """``name`` fitted on a toy static encoder (numpy + tokenizers only, as on the lean runtime)."""
    log = log if log is not None else synthetic_log()
    encoder = toy_static_encoder(list(log.prompts) + _prompts(), dim=encoder_dim)
    router = make_router(name, **params)
    router.encoder_ = encoder
    return router.fit(log, embeddings=encoder.encode(list(log.prompts)))


def _manifest(path) -> dict:
    return json.loads((path / "manifest.json").read_text())["files"]


@pytest.mark.parametrize("name, params", [
    ("mlp", {"max_epochs": 3, "hidden_dim": 16}),
    ("mf", {"epochs": 3, "dim": 8}),
    ("irt", {"max_epochs": 3, "hidden_dim": 16, "ability_dim": 3}),
])
def test_torch_head_router_routes_without_torch_like_torch(name, params, tmp_path):
    router = _fit(name, **params)
    ckpt = router.save_pretrained(tmp_path / name)
    config = json.loads((ckpt / "config.json").read_text())
    assert config["onnx_head"]["file"] == "head.onnx" and config["onnx_head"]["in_dim"] == 16
    assert "head.onnx" in _manifest(ckpt)
    prompts = _prompts()
    full = load_checkpoint(ckpt)
    expected = full.route(prompts, lam=LAM).records()
    want_quality = full.predict_quality(prompts)

    done = _lean(_LEAN_ROUTE, str(ckpt), json.dumps(prompts), str(LAM), str(tmp_path / "resaved"))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["torch"] is False
    assert [(r["model"], r["rank"], r["ranking"]) for r in out["records"]] == \
        [(r["model"], r["rank"], r["ranking"]) for r in expected]
    got_quality = np.asarray(out["quality"])
    assert got_quality.shape == (len(prompts), 3)
    np.testing.assert_allclose(got_quality, want_quality, atol=1e-5, rtol=0)
    assert np.ptp(want_quality) > 1e-3  # the comparison is not between constants
    # a re-save on the lean runtime writes the same weights and the same graph, byte for byte
    resaved = _manifest(tmp_path / "resaved")
    original = _manifest(ckpt)
    for file in ("model.safetensors", "head.onnx"):
        assert resaved[file] == original[file], file
    assert json.loads((tmp_path / "resaved" / "config.json").read_text())["onnx_head"] == config["onnx_head"]


def test_torch_head_checkpoint_without_head_onnx_is_one_line_on_the_lean_runtime(tmp_path, monkeypatch):
    from routecast.router import checkpoint_state

    router = _fit("mlp", max_epochs=2, hidden_dim=8)
    monkeypatch.setattr(checkpoint_state, "write_onnx_head", lambda *a, **k: None)  # an older checkpoint
    ckpt = save_checkpoint(router, tmp_path / "old")
    assert json.loads((ckpt / "config.json").read_text())["onnx_head"] is None
    assert load_checkpoint(ckpt).route(["x"], lam=LAM).chosen  # torch installed: still fine
    done = _lean(BLOCK + "from routecast.core.checkpoint import load_checkpoint\n"
                 "from routecast.errors import CheckpointError\n"
                 "try:\n    load_checkpoint(sys.argv[1])\nexcept CheckpointError as exc:\n    print(exc)\n", str(ckpt))
    assert done.returncode == 0, done.stderr[-3000:]
    line, = done.stdout.strip().splitlines()
    assert line.startswith(f"{ckpt / 'config.json'}: router 'mlp' has a torch network, torch is not installed")
    assert "routecast export --onnx" in line and line.endswith("pip install 'routecast[train]'")


def test_onnx_head_whose_shape_does_not_fit_is_refused(tmp_path):
    """A lean load checks the graph against the router: a head of another router is refused."""
    from routecast.router.net_state import TorchNetState

    small = _fit("mlp", max_epochs=1, hidden_dim=8)
    other = _fit("mlp", encoder_dim=64, max_epochs=1, hidden_dim=8)
    ckpt = other.save_pretrained(tmp_path / "other")
    lean = make_router("mlp")
    assert isinstance(lean, TorchNetState)
    lean.net_config_ = dict(small.net_config_)
    lean.models_ = small.models_
    with pytest.raises(CheckpointError, match=r"maps \['batch', 64\] -> \['batch', 3\]; this router needs "
                                              r"\[batch, 16\] -> \[batch, 3\]"):
        lean.attach_onnx_head((ckpt / "head.onnx").read_bytes(), {"input": "embeddings", "output": "scores"},
                              source="head.onnx")
    with pytest.raises(CheckpointError, match="not a loadable ONNX graph"):
        lean.attach_onnx_head(b"junk", {}, source="head.onnx")


def test_training_a_torch_router_without_torch_names_the_extra():
    done = _lean(BLOCK + "import numpy as np\nfrom routecast.core.registry import make_router\n"
                 "from routecast.errors import MissingExtraError\n"
                 "router = make_router('mf')\n"
                 "try:\n    router._fit(None, np.zeros((2, 4)))\nexcept MissingExtraError as exc:\n    print(exc)\n")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == ("training router 'mf' needs the training extra (torch is not installed): "
                                   "pip install 'routecast[train]'")


# --------------------------------------------------------------------------- the onnx encoder
@pytest.fixture(scope="module")
def onnx_checkpoint(tmp_path_factory):
    """A linear router on the int8 ONNX MiniLM (exported once into the shared cache dir)."""
    from routecast.router.encoders import get_encoder

    encoder = get_encoder("onnx:quantize=int8")
    log = synthetic_log(60)
    router = make_router("linear", encoder="onnx:quantize=int8")
    router.encoder_ = encoder
    router.fit(log, embeddings=encoder.encode(list(log.prompts)))
    path = router.save_pretrained(tmp_path_factory.mktemp("onnx") / "linear-onnx")
    return {"path": path, "router": router, "encoder": encoder}


@pytest.mark.slow
@pytest.mark.minilm
def test_onnx_encoder_checkpoint_ships_its_graph_and_routes_without_torch(onnx_checkpoint, tmp_path):
    ckpt, router = onnx_checkpoint["path"], onnx_checkpoint["router"]
    config = json.loads((ckpt / "config.json").read_text())
    assert config["encoder"]["spec"] == "onnx:encoder_model,quantize=int8"
    assert config["encoder"]["name"] == onnx_checkpoint["encoder"].name
    shipped = sorted(f for f in _manifest(ckpt) if f.startswith("encoder_model/"))
    assert shipped == ["encoder_model/model.int8pc.onnx", "encoder_model/routecast_onnx.json",
                       "encoder_model/tokenizer.json"]
    size = _manifest(ckpt)["encoder_model/model.int8pc.onnx"]["size"]
    assert 10e6 < size < 40e6  # the int8 graph (~23 MB), not the float one (~90 MB)
    prompts = _prompts()
    expected = router.route(prompts, lam=LAM).records()
    cache = tmp_path / "empty-cache"
    done = _lean(_LEAN_ROUTE, str(ckpt), json.dumps(prompts), str(LAM), env={"ROUTECAST_CACHE_DIR": str(cache)})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(r["model"], r["rank"]) for r in out["records"]] == [(r["model"], r["rank"]) for r in expected]
    np.testing.assert_allclose(out["quality"], router.predict_quality(prompts), atol=1e-5, rtol=0)
    assert not cache.exists()  # nothing read from (or written to) outside the checkpoint


@pytest.mark.slow
@pytest.mark.minilm
def test_exported_onnx_folder_refuses_a_modified_graph_and_a_wrong_quantisation(onnx_checkpoint, tmp_path):
    import shutil

    from routecast.router.encoders import get_encoder

    folder = tmp_path / "enc"
    shutil.copytree(onnx_checkpoint["path"] / "encoder_model", folder)
    same = get_encoder(f"onnx:{folder},quantize=int8")
    assert same.name == onnx_checkpoint["encoder"].name
    text = ["what is the derivative of x squared?"]
    np.testing.assert_allclose(same.encode(text), onnx_checkpoint["encoder"].encode(text), atol=1e-6)
    with pytest.raises(ConfigError, match=r"holds the int8 graph \(model.int8pc.onnx\), the spec asks for "
                                          r"quantize=None"):
        get_encoder(f"onnx:{folder}")
    graph = folder / "model.int8pc.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"model.int8pc.onnx: sha256 differs from field 'model_sha256'"):
        get_encoder(f"onnx:{folder},quantize=int8").encode(text)
    meta = json.loads((folder / "routecast_onnx.json").read_text())
    meta["dim"] = True
    (folder / "routecast_onnx.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"routecast_onnx.json: field 'dim' is missing or invalid \(True\)"):
        get_encoder(f"onnx:{folder},quantize=int8")
