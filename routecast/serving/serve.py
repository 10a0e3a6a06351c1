"""``routecast serve`` as a library call: merge the config file with the flags, refuse an exposed
server without keys, build the app and run uvicorn with the connection limits.

Why a refusal: ``routecast serve`` holds paid backend keys and decides where every request
goes, so a server on a non-loopback address without client keys is an open proxy to them.
Binding one anyway takes an explicit ``insecure_no_auth``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from dataclasses import fields
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from routecast.errors import ConfigError, RoutecastError
from routecast.serving.server_config import SERVE_KEYS, ServerSettings, read_server_config
from routecast.serving.store import check_store_spec

SERVE_DEFAULTS = {"host": "127.0.0.1", "port": 8000, "backends": None, "api_keys": None,
                  "insecure_no_auth": False, "access_log": False, "decision_log": None, "log_text": False,
                  "price_table": None, "workers": 1, "store": None, "admin_keys": None}


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
    from routecast.core.checkpoint import verify_checkpoint
    from routecast.serving.app import create_app, uvicorn_options
    from routecast.serving.guard.auth import ENV_VAR, ApiKeys

    merged = merged_options(options, config)
    setting_names = {f.name for f in fields(ServerSettings)}
    unknown = sorted(set(merged) - setting_names - set(SERVE_KEYS))
    if unknown:
        raise ConfigError(f"unknown serve option(s) {unknown}")
    settings = ServerSettings.from_any({k: v for k, v in merged.items() if k in setting_names})
    workers = merged["workers"]
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    keys = ApiKeys.load(merged["api_keys"])
    admins = None if merged["admin_keys"] is None else ApiKeys.load(merged["admin_keys"], environ={})
    host = merged["host"]
    if keys is None and admins is None and not is_loopback(host) and not merged["insecure_no_auth"]:
        raise ConfigError(f"refusing to serve on {host} without client API keys: give api_keys (a keys file) "
                          f"or set ${ENV_VAR}, or set insecure_no_auth to serve an open proxy anyway")
    trust = {k: merged.get(k) for k in ("trusted_key", "expect_sha256")}
    from routecast.serving.cascade_runtime import is_cascade_checkpoint, load_cascade

    if is_cascade_checkpoint(checkpoint):
        checkpoint = load_cascade(checkpoint, **trust)  # verified (and pinned) once, before binding
    elif any(v is not None for v in trust.values()):
        from routecast.serving.runtime import load

        checkpoint = load(checkpoint, **trust)  # authenticated once, before binding; the app serves this runtime
    else:
        verify_checkpoint(checkpoint)
    app = create_app(checkpoint, settings, backends=merged["backends"], api_keys=keys, admin_keys=admins,
                     decision_log=merged["decision_log"], log_text=merged["log_text"],
                     price_table=merged["price_table"],
                     store=check_store_spec(merged["store"] or "memory", workers))
    kwargs = {"host": host, "port": merged["port"], "access_log": merged["access_log"], "log_level": "info",
              **uvicorn_options(settings)}
    return app, kwargs


def run_server(checkpoint, options: dict[str, Any], config: str | os.PathLike | None = None) -> None:
    """Build and run the server: in this process (which it then owns: see ``gil_switch_ms``), or
    with ``workers`` > 1 in that many worker processes sharing one port (:func:`run_workers`)."""
    workers = merged_options(options, config)["workers"]
    if workers != 1:
        return run_workers(checkpoint, options, config)
    app, kwargs = build_server(checkpoint, options, config)
    _own_gil_switch(app.state.server.settings)
    uvicorn.run(app, **kwargs)


def _own_gil_switch(settings: ServerSettings) -> None:
    if settings.gil_switch_ms is not None:
        # the router runs in a worker thread that holds the GIL while it tokenises; the event loop
        # waits up to one switch interval each time it wakes, several times per request
        sys.setswitchinterval(settings.gil_switch_ms / 1000)


def run_workers(checkpoint, options: dict[str, Any], config: str | os.PathLike | None = None) -> None:
    """Serve with ``workers`` processes on one port (uvicorn's supervisor restarts one that dies).

    What the workers share: the per-key rate limits and budgets (``store``; by default a SQLite
    file in a temporary folder of this server), the decision log (one SQLite file in WAL mode;
    every worker appends to it) and ``/metrics`` (prometheus_client's multiprocess mode in the
    same temporary folder, so a scrape answered by any worker is the sum over all of them). What
    they do not share: circuit breakers, micro-batches and sticky conversations, which are per
    process. The temporary folder is removed when the server stops.

    Every check (options, keys, checkpoint, the store - Redis must answer) runs here, before the
    port is bound; each worker then builds its own app from the same options.
    """
    import tempfile

    from uvicorn.supervisors import Multiprocess

    from routecast.serving.metrics import MULTIPROC_ENV

    with tempfile.TemporaryDirectory(prefix="routecast-serve-") as run_dir:
        options = dict(options)
        merged = merged_options(options, config)
        if merged["store"] is None:
            options["store"] = f"sqlite:///{run_dir}/limits.sqlite"
        app, kwargs = build_server(checkpoint, options, config)  # checks only; each worker builds its own
        del app
        metrics_dir = os.path.join(run_dir, "metrics")
        os.mkdir(metrics_dir)
        kwargs.pop("http")
        worker_config = WorkerConfig((os.fspath(checkpoint), options, None if config is None else os.fspath(config)),
                                     workers=merged["workers"], lifespan="on", **kwargs)
        sock = worker_config.bind_socket()
        previous = os.environ.get(MULTIPROC_ENV)
        os.environ[MULTIPROC_ENV] = metrics_dir  # the workers inherit it and import prometheus_client with it
        try:
            supervisor = Multiprocess(worker_config, sockets=[sock])
            supervisor.run()
        finally:
            sock.close()
            if previous is None:
                os.environ.pop(MULTIPROC_ENV, None)
            else:
                os.environ[MULTIPROC_ENV] = previous
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise ConfigError("a server worker failed to start (its error is in the log above)")


class WorkerConfig(uvicorn.Config):
    """A uvicorn ``Config`` whose app is built inside each worker process.

    uvicorn pickles its config into every worker; a built app, and the protocol class bound to
    the header limits, cannot be pickled. This config carries only ``serve_spec`` = (checkpoint
    folder, options, config file) and builds both in the worker, where :meth:`load` runs."""

    def __init__(self, serve_spec: tuple, **kwargs):
        super().__init__(app=f"{__name__}:WorkerConfig", http="httptools", **kwargs)
        self.serve_spec = serve_spec

    def load(self) -> None:
        if not self.loaded:
            checkpoint, options, config_file = self.serve_spec
            try:
                app, kwargs = build_server(checkpoint, options, config_file)
            except RoutecastError as exc:  # e.g. Redis went away since the parent's check: stop, not a restart loop
                logging.getLogger("uvicorn.error").error("worker cannot start: %s", exc)
                sys.exit(STARTUP_FAILURE)
            _own_gil_switch(app.state.server.settings)
            self.app, self.http = app, kwargs["http"]
        super().load()
