"""Loading what ``routecast serve`` serves: a router or a cascade router checkpoint, told apart by
its config.json, behind the one :class:`routecast.serving.runtime_protocol.ServingRuntime`."""

from __future__ import annotations

import os
from pathlib import Path

from routecast.errors import ConfigError
from routecast.serving.cascade_runtime import is_cascade_checkpoint, load_cascade
from routecast.serving.runtime import load
from routecast.serving.runtime_protocol import ServingRuntime


def load_runtime(checkpoint: "str | os.PathLike | ServingRuntime", *, trusted_key: str | os.PathLike | None = None,
                 expect_sha256: str | None = None) -> ServingRuntime:
    """The checkpoint's serving runtime, a router's or a cascade's (told apart by its config.json),
    verified - and authenticated when a trust option is given."""
    if not isinstance(checkpoint, (str, os.PathLike)):
        return checkpoint  # already a loaded runtime
    folder = Path(checkpoint)
    if (folder / "router" / "manifest.json").is_file() and not (folder / "manifest.json").is_file():
        raise ConfigError(f"{folder} is a training run folder, not an exported checkpoint: export it first "
                          f"(routecast export {folder} --out CKPT) and serve CKPT")
    loader = load_cascade if is_cascade_checkpoint(folder) else load
    return loader(folder, trusted_key=trusted_key, expect_sha256=expect_sha256)
