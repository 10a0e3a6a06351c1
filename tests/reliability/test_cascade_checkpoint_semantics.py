"""Cascade checkpoints get the semantic validation router checkpoints get (issue 26, item 3).

Each case below rewrites one field of a valid cascade checkpoint (config.json or an array of
weights.safetensors) and then rewrites manifest.json to match, as an attacker who can write the
folder would: integrity holds, only the meaning is wrong. Every one must be refused at load with
ONE line naming the file and the field (a CheckpointError, no traceback), and ``routecast serve``
must exit 2 with that line before binding.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from routecast.cascade.cascade_router import CascadeRouter
from routecast.core.checkpoint import dump_json
from routecast.core.checkpoint.manifest import write_manifest
from routecast.errors import CheckpointError
from tests.cascade.test_cascade_router import parts, synthetic

ENC = "hashing:dim=64"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(a valid signed cascade checkpoint with an answer scorer and a named default operating point,
    the signing key, its public key)."""
    from routecast.core.signing import generate_keypair

    base = tmp_path_factory.mktemp("cascade_semantics")
    generate_keypair(base / "k.pem", base / "k.pub")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROUTECAST_CACHE_DIR", str(base / "cache"))
        train, val, _ = parts(synthetic(160, hedge=True, seed=5))
        cascade = CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(0.0, 1.0),
                                n_lams=9).fit(train, val)
        cascade.add_operating_point("cheap", lam=float(cascade.lam_) * 2 + 1.0, make_default=True)
        return cascade.save(base / "ck", sign_key=base / "k.pem"), base / "k.pem", base / "k.pub"


def _config(edit):
    def apply(folder):
        path = folder / "config.json"
        config = json.loads(path.read_text())
        edit(config)
        path.write_text(dump_json(config))
    return apply


def _array(name, edit):
    """Change one array of weights.safetensors (declared shape updated, so only the meaning is wrong)."""
    def apply(folder):
        from safetensors.numpy import load, save

        weights = folder / "weights.safetensors"
        arrays = dict(load(weights.read_bytes()))
        arrays[name] = np.ascontiguousarray(edit(arrays[name].copy()))
        weights.write_bytes(save(arrays))
        path = folder / "config.json"
        config = json.loads(path.read_text())
        config["arrays"][name] = {"dtype": str(arrays[name].dtype), "shape": list(arrays[name].shape)}
        path.write_text(dump_json(config))
    return apply


def _set(index, value):
    def edit(a):
        a[index] = value
        return a
    return edit


def _setitem(key, value):
    return _config(lambda c: c.__setitem__(key, value))


def _pool(index, value):
    return _config(lambda c: c["pool"].__setitem__(index, value))


CASES = [
    ("NaN cost", _array("costs", _set(0, np.nan)), r"weights\.safetensors: array 'costs' holds 1 non-finite"),
    ("negative cost", _array("costs", _set(1, -1.0)), r"weights\.safetensors: array 'costs' holds a negative cost"),
    ("duplicate pool name", _config(lambda c: c["pool"].__setitem__(1, c["pool"][0])),
     r"config\.json: field 'pool\[1\]': model '\w+' is listed twice"),
    ("CRLF pool name", _config(lambda c: c["pool"].__setitem__(0, c["pool"][0] + "\r\n")),
     r"config\.json: field 'pool\[0\]' .* control characters"),
    ("unknown pool name", _pool(0, "Z"), r"config\.json: field 'pool\[0\]' names model 'Z', which the ex-ante router"),
    ("max_calls 0", _setitem("max_calls", 0), r"config\.json: field 'max_calls' must be an integer from 1"),
    ("max_calls 1000", _setitem("max_calls", 1000), r"config\.json: field 'max_calls' must be an integer from 1"),
    ("max_calls '2'", _setitem("max_calls", "2"), r"config\.json: field 'max_calls' must be an integer from 1"),
    ("NaN kappa", _setitem("kappa", {"__float__": "nan"}), r"config\.json: field 'kappa' must be a finite number"),
    ("NaN tau", _array("tau", _set((0, 0), np.nan)), r"weights\.safetensors: array 'tau' holds 1 non-finite"),
    ("infinite mean_quality", _array("mean_quality", _set(0, np.inf)),
     r"weights\.safetensors: array 'mean_quality' holds 1 non-finite"),
    ("wrong-shaped posterior.coef", _array("posterior.coef", lambda a: a[:, :-1]),
     r"weights\.safetensors: array 'posterior\.coef' has shape \[3, \d+\], expected"),
    ("wrong-shaped draws", _array("draws", lambda a: a[:-1]),
     r"weights\.safetensors: array 'draws' has shape \[\d+, 3\], expected"),
    ("NaN scorer weights", _array("scorer.head0.coef", _set(0, np.nan)),
     r"weights\.safetensors: array 'scorer\.head0\.coef' holds 1 non-finite"),
    ("negative lam", _setitem("lam", -1.0), r"config\.json: field 'lam' must be a finite number >= 0"),
    ("strong index 5", _setitem("strong", 5), r"config\.json: field 'strong' must be a pool index from 0 to 2"),
    ("unknown default point", _setitem("default_operating_point", "nope"),
     r"config\.json: field 'default_operating_point' names 'nope', which is not one of the operating points"),
    ("unknown hyperparameter", _config(lambda c: c["hyperparameters"].__setitem__("bogus", 1)),
     r"config\.json: field 'hyperparameters' names unknown hyperparameter\(s\) 'bogus'"),
    ("missing pool", _config(lambda c: c.pop("pool")), r"config\.json: field 'pool' is missing"),
    ("hyperparameters as a list", _setitem("hyperparameters", [1, 2]),
     r"config\.json: field 'hyperparameters' must be a JSON object, got list"),
    ("pool as an int", _setitem("pool", 3), r"config\.json: field 'pool' must list 2 to \d+ model names, got 3"),
    ("hyperparameter of the wrong type", _config(lambda c: c["hyperparameters"].__setitem__("max_calls", "2")),
     r"config\.json: field 'hyperparameters\.max_calls' has the wrong type"),
    ("NaN operating point lam", _config(lambda c: c["operating_points"]["cheap"].__setitem__("lam",
                                                                                             {"__float__": "nan"})),
     r"config\.json: field 'operating_points\.cheap\.lam' must be a finite number"),
]


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTECAST_CACHE_DIR", str(tmp_path / "empty_cache"))


def test_the_untampered_checkpoint_loads_and_serves(saved):
    """The cases below fail because of the edit, not because the checkpoint never loaded."""
    loaded = CascadeRouter.load(saved[0], trusted_key=saved[2])
    assert loaded.scorer_ is not None and loaded.default_operating_point() == "cheap"
    assert loaded.run("What is 2 + 2?", lambda model, prompt: "4").models_called


@pytest.mark.parametrize("label,tamper,message", CASES, ids=[c[0] for c in CASES])
def test_inconsistent_cascade_checkpoint_is_refused_in_one_line(saved, tmp_path, label, tamper, message):
    from typer.testing import CliRunner

    from routecast.cli import app as cli

    ckpt, key, public = saved
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    tamper(bad)
    write_manifest(bad, sign_key=key)  # re-hashed and re-signed: integrity and signature hold, only the meaning is wrong
    with pytest.raises(CheckpointError, match=message) as exc:
        CascadeRouter.load(bad, trusted_key=public)
    assert "\n" not in str(exc.value)
    done = CliRunner().invoke(cli, ["serve", str(bad), "--port", "1", "--trusted-key", str(public)])
    assert done.exit_code == 2, (label, done.output)
    assert "Traceback" not in done.output and isinstance(done.exception, SystemExit)
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(exc.value) in lines[0], done.output


def test_a_cascade_checkpoint_of_the_previous_format_is_refused_in_one_line(saved, tmp_path):
    """Before the one checkpoint format, cascade checkpoints had their own manifest (``format``, file ->
    sha256, no ``format_version``) and config (``format_version`` 3). They are refused at load with
    one line that says what to do, not read by a second verifier."""
    import hashlib

    from typer.testing import CliRunner

    from routecast.cli import app as cli

    old = tmp_path / "old"
    shutil.copytree(saved[0], old)
    (old / "manifest.sig").unlink()
    config = json.loads((old / "config.json").read_text())
    config.update({"format_version": 3})
    (old / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    files = {p.relative_to(old).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(old.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    (old / "manifest.json").write_text(json.dumps({"format": "routecast-cascade-router", "files": files}))
    with pytest.raises(CheckpointError, match=r"manifest\.json: format 'routecast-cascade-router' without "
                                              r"'format_version' was written before .* fit it again and save it "
                                              r"with this routecast") as exc:
        CascadeRouter.load(old)
    assert "\n" not in str(exc.value)
    done = CliRunner().invoke(cli, ["serve", str(old), "--port", "1"])
    assert done.exit_code == 2 and str(exc.value) in done.output and "Traceback" not in done.output


def test_array_caps_hold_for_components_in_subfolders(saved, tmp_path):
    """The ex-ante router inside a cascade checkpoint is capped by what its own config.json declares,
    as a router checkpoint is: a declared array over max_array_bytes is refused before reading."""
    ckpt, key, public = saved
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    config = json.loads((bad / "router" / "config.json").read_text())
    name = sorted(config["arrays"])[0]
    config["arrays"][name] = {"dtype": "float64", "shape": [100000, 100000]}
    (bad / "router" / "config.json").write_text(dump_json(config))
    write_manifest(bad, sign_key=key)
    with pytest.raises(CheckpointError, match=rf"router/config\.json: field 'arrays\.{name}' declares "
                                              r"80,000,000,000 bytes, above the [\d,]+-byte cap per array"):
        CascadeRouter.load(bad, trusted_key=public)
