"""Checkpoints: a folder of JSON + safetensors that can be loaded without trusting it.

One format for every policy (routers, cascade routers). Layout (``format_version`` 1)::

    CKPT/
      config.json          format_version, routecast_version, router_type (the policy's registered
                           name), the policy's own entries (hyperparameters, learned JSON state, the
                           dtype and shape of every array next to the file holding them...), extra
      *.safetensors        the policy's arrays (and its components'), declared in a config.json
      SUB/config.json      a component saved in a subfolder (a cascade's ex-ante router, an encoder)
      manifest.json        sha256 + size of every other file
      manifest.sig         optional: ed25519 signature of manifest.json (``routecast export --sign``)

The format knows no router or cascade type: each policy writes and validates its own state through
two hooks (:mod:`routecast.core.checkpoint.policies`), the class resolved by name through the
registry. What a router stores (model table, costs, encoder, ONNX head) is described in
:mod:`routecast.router.checkpoint_state`.

Threat model. Loading never executes code from the folder (no pickle; arrays through
``safetensors.numpy.load``; the policy class only through the registry by name). By default a
load checks *integrity*: every file is listed with its sha256 and size, nothing unlisted, no
symlinks, nothing outside the folder (:mod:`~routecast.core.checkpoint.manifest`). The policy then
checks *meaning*: finite arrays of the declared shape and dtype, names, costs, bounded sizes...
It does not give *authenticity*: whoever can rewrite the files can rewrite the manifest. For that
pass ``expect_sha256`` (the manifest's sha256, printed by ``routecast export``) or ``trusted_key``
(a public key; the folder must carry a valid signature).

Each file is read once into memory, with its size checked before reading (a 600 MB junk array is
refused without reading it); the hash is computed over those bytes and the same bytes are parsed,
so a file swapped between check and use cannot be loaded. Every refusal is one
:class:`~routecast.errors.CheckpointError` naming the file and the field.
"""

from routecast.core.checkpoint.arrays import array_index, check_arrays, parse_arrays, save_arrays
from routecast.core.checkpoint.files import (CONFIG_FILE, FORMAT_VERSION, MANIFEST_FILE, MAX_ARRAY_BYTES,
                                             MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, MAX_OTHER_FILE_BYTES,
                                             MAX_SIGNATURE_BYTES, SIGNATURE_FILE, dump_json, is_checkpoint_dir,
                                             is_int, manifest_sha256, safe_relpath, sha256_file)
from routecast.core.checkpoint.folder import copy_checkpoint, write_folder
from routecast.core.checkpoint.manifest import CheckpointFolder, read_folder
from routecast.core.checkpoint.policies import (TYPE_FIELD, LoadedCheckpoint, export_checkpoint, load_checkpoint,
                                                load_component, open_checkpoint, policy_name, read_config,
                                                save_checkpoint, verify_checkpoint, write_component)

__all__ = ["FORMAT_VERSION", "CONFIG_FILE", "MANIFEST_FILE", "SIGNATURE_FILE", "MAX_ARRAY_BYTES", "MAX_CONFIG_BYTES",
           "MAX_MANIFEST_BYTES", "MAX_OTHER_FILE_BYTES", "MAX_SIGNATURE_BYTES", "TYPE_FIELD", "CheckpointFolder",
           "LoadedCheckpoint", "array_index", "check_arrays", "copy_checkpoint", "dump_json", "export_checkpoint",
           "is_checkpoint_dir", "is_int", "load_checkpoint", "load_component", "manifest_sha256", "open_checkpoint",
           "parse_arrays", "policy_name", "read_config", "read_folder", "safe_relpath", "save_arrays",
           "save_checkpoint", "sha256_file", "verify_checkpoint", "write_component", "write_folder"]
