"""A tampered checkpoint is refused with a CheckpointError naming the cause and the file.

Each test damages a fresh copy of one good checkpoint in one way. None of them may execute
anything from the folder: the pickle test plants a payload that would create a marker file if
it were ever unpickled, and checks the marker is absent.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest

from routecast.errors import CheckpointError
from routecast.core.checkpoint import load_checkpoint, save_checkpoint
from tests._support.serving import TinyRouter, synthetic_log


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return save_checkpoint(TinyRouter().fit(synthetic_log()), tmp_path_factory.mktemp("good") / "ck")


@pytest.fixture
def ckpt(good, tmp_path):
    copy = tmp_path / "ck"
    shutil.copytree(good, copy)
    return copy


def _rehash(ckpt: Path) -> None:
    """Make the manifest agree with the files again (an attacker who edits both)."""
    manifest = json.loads((ckpt / "manifest.json").read_text())
    for name in manifest["files"]:
        data = (ckpt / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (ckpt / "manifest.json").write_text(json.dumps(manifest))


def _edit_config(ckpt: Path, change) -> None:
    config = json.loads((ckpt / "config.json").read_text())
    change(config)
    (ckpt / "config.json").write_text(json.dumps(config))
    _rehash(ckpt)


def test_good_checkpoint_loads(good):
    assert load_checkpoint(good).models_ == ("small", "medium", "large")


def test_flipped_byte_in_weights(ckpt):
    weights = ckpt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 does not match"):
        load_checkpoint(ckpt)


def test_truncated_weights(ckpt):
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: size 40 bytes differs .* truncated"):
        load_checkpoint(ckpt)


def test_truncated_weights_with_rehashed_manifest_is_still_refused(ckpt):
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    _rehash(ckpt)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        load_checkpoint(ckpt)


def test_file_missing_from_manifest(ckpt):
    manifest = json.loads((ckpt / "manifest.json").read_text())
    del manifest["files"]["model.safetensors"]
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: file is not listed in manifest\.json"):
        load_checkpoint(ckpt)


def test_listed_file_missing(ckpt):
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: listed in manifest\.json but missing"):
        load_checkpoint(ckpt)


def test_extra_file(ckpt):
    (ckpt / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.txt: file is not listed"):
        load_checkpoint(ckpt)


def test_slipped_pickle_is_refused_and_never_unpickled(ckpt, tmp_path):
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "unpickled!"))

    (ckpt / "model.pkl").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match=r"model\.pkl: file is not listed"):
        load_checkpoint(ckpt)
    # even listed in the manifest and named as the weights file, it is read as safetensors only
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"]["model.pkl"] = {"sha256": "", "size": 0}
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    _edit_config(ckpt, lambda c: c.update(weights="model.pkl"))
    with pytest.raises(CheckpointError, match=r"model\.pkl: not a readable safetensors file"):
        load_checkpoint(ckpt)
    assert not marker.exists()


def test_unknown_router_type(ckpt):
    _edit_config(ckpt, lambda c: c.update(router_type="os.system"))
    with pytest.raises(CheckpointError, match=r"config\.json: router_type 'os\.system' cannot be built: unknown router"):
        load_checkpoint(ckpt)


def test_unknown_format_version(ckpt):
    _edit_config(ckpt, lambda c: c.update(format_version=99))
    with pytest.raises(CheckpointError, match=r"config\.json: unknown checkpoint format_version 99"):
        load_checkpoint(ckpt)


def test_unknown_manifest_version(ckpt):
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["format_version"] = 2
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"manifest\.json: unknown checkpoint format_version 2"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("target", ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors"])
def test_config_path_pointing_outside(ckpt, target):
    _edit_config(ckpt, lambda c: c.update(weights=target))
    with pytest.raises(CheckpointError, match=r"config\.json: weights file .*(outside|absolute)"):
        load_checkpoint(ckpt)


def test_manifest_entry_pointing_outside(ckpt):
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"]["../secret"] = {"sha256": "0" * 64, "size": 1}
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"manifest\.json: manifest entry '\.\./secret' points outside"):
        load_checkpoint(ckpt)


def test_unexpected_array(ckpt):
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(ckpt / "model.safetensors"))
    arrays["backdoor_"] = arrays["coef_"].copy()
    save_file(arrays, str(ckpt / "model.safetensors"))
    _rehash(ckpt)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: arrays do not match config\.json.*unexpected: \['backdoor_'\]"):
        load_checkpoint(ckpt)


def test_missing_array(ckpt):
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(ckpt / "model.safetensors"))
    del arrays["coef_"]
    save_file(arrays, str(ckpt / "model.safetensors"))
    _rehash(ckpt)
    with pytest.raises(CheckpointError, match=r"missing: \['coef_'\]"):
        load_checkpoint(ckpt)


def test_unknown_hyperparameter(ckpt):
    _edit_config(ckpt, lambda c: c["hyperparameters"].update(__class__="os.system"))
    with pytest.raises(CheckpointError, match=r"has no hyperparameter '__class__'"):
        load_checkpoint(ckpt)


def test_not_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        load_checkpoint(tmp_path / "nope")


def test_symlink_inside_checkpoint(ckpt, tmp_path):
    (tmp_path / "elsewhere.bin").write_bytes(b"x")
    (ckpt / "link.bin").symlink_to(tmp_path / "elsewhere.bin")
    with pytest.raises(CheckpointError, match=r"link\.bin: symlinks are not allowed"):
        load_checkpoint(ckpt)
