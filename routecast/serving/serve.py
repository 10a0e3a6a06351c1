"""``routecast serve`` as a library call: merge the config file with the flags, refuse an exposed
server without keys, build the app and run uvicorn with the connection limits.

Why a refusal: ``routecast serve`` holds paid backend keys and decides where every request
goes, so a server on a non-loopback address without client keys is an open proxy to them.
Binding one anyway takes an explicit ``insecure_no_auth``.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import fields
from typing import Any

from routecast.errors import ConfigError
from routecast.serving.server_config import SERVE_KEYS, ServerSettings, read_server_config

SERVE_DEFAULTS = {"host": "127.0.0.1", "port": 8000, "backends": None, "api_keys": None,
                  "insecure_no_auth": False, "access_log": False}


def merged_options(options: dict[str, Any], config: str | os.PathLike | None = None) -> dict[str, Any]:
    """The config file's values, overridden by every option that is not None."""
    merged = dict(SERVE_DEFAULTS)
    if config is not None:
        merged.update(read_server_config(config))
    merged.update({k.replace("-", "_"): v for k, v in options.items() if v is not None})
    return merged


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_server(checkpoint, options: dict[str, Any], config: str | os.PathLike | None = None):
    """(app, uvicorn keyword arguments) for ``routecast serve``; every check happens before binding."""
    from routecast.router.checkpoint import verify_checkpoint
    from routecast.serving.app import create_app, uvicorn_options
    from routecast.serving.guard.auth import ENV_VAR, ApiKeys

    merged = merged_options(options, config)
    setting_names = {f.name for f in fields(ServerSettings)}
    unknown = sorted(set(merged) - setting_names - set(SERVE_KEYS))
    if unknown:
        raise ConfigError(f"unknown serve option(s) {unknown}")
    settings = ServerSettings.from_any({k: v for k, v in merged.items() if k in setting_names})
    keys = ApiKeys.load(merged["api_keys"])
    host = merged["host"]
    if keys is None and not is_loopback(host) and not merged["insecure_no_auth"]:
        raise ConfigError(f"refusing to serve on {host} without client API keys: give api_keys (a keys file) "
                          f"or set ${ENV_VAR}, or set insecure_no_auth to serve an open proxy anyway")
    trust = {k: merged.get(k) for k in ("trusted_key", "expect_sha256")}
    if any(v is not None for v in trust.values()):
        from routecast.serving.runtime import load

        checkpoint = load(checkpoint, **trust)  # authenticated once, before binding; the app serves this runtime
    else:
        verify_checkpoint(checkpoint)
    app = create_app(checkpoint, settings, backends=merged["backends"], api_keys=keys)
    kwargs = {"host": host, "port": merged["port"], "access_log": merged["access_log"], "log_level": "info",
              **uvicorn_options(settings)}
    return app, kwargs


def run_server(checkpoint, options: dict[str, Any], config: str | os.PathLike | None = None) -> None:
    """Build and run the server in this process (which it then owns: see ``gil_switch_ms``)."""
    import sys

    import uvicorn

    app, kwargs = build_server(checkpoint, options, config)
    switch_ms = app.state.server.settings.gil_switch_ms
    if switch_ms is not None:
        # the router runs in a worker thread that holds the GIL while it tokenises; the event loop
        # waits up to one switch interval each time it wakes, several times per request
        sys.setswitchinterval(switch_ms / 1000)
    uvicorn.run(app, **kwargs)
