"""``routecast serve`` as a library call: merge the config file with the flags, refuse an exposed
server without keys, build the app and run uvicorn with the connection limits.

Every start-up error happens before the port is bound and is one line (exit code 2 from the
CLI, never a traceback): bad options, the checkpoint (loaded here, not in the app's lifespan),
an unknown default operating point, a backends file that misses one of the checkpoint's models,
a decision log that cannot be opened, the store, an occupied port.

Why a refusal: ``routecast serve`` holds paid backend keys and decides where every request
goes, so a server on a non-loopback address without client keys is an open proxy to them.
Binding one anyway takes an explicit ``insecure_no_auth``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from dataclasses import dataclass, fields
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from routecast.errors import ConfigError, RoutecastError
from routecast.serving.loading import load_runtime
from routecast.serving.server_config import SERVE_KEYS, ServeOptions, ServerSettings, read_server_config
from routecast.serving.store import check_store_spec


def merged_options(options: dict[str, Any], config: str | os.PathLike | None = None) -> dict[str, Any]:
    """The defaults of :class:`ServeOptions`, then the config file's values, then every option that is not None."""
    merged = {f.name: f.default for f in fields(ServeOptions) if f.name in SERVE_KEYS}
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


@dataclass
class PreparedServer:
    """A checked server, not yet bound: the app, uvicorn's keyword arguments, the options it was
    built from and the start-up notes to print (e.g. that chats will 503 without backends)."""

    app: Any
    uvicorn_kwargs: dict[str, Any]
    options: ServeOptions
    notes: list[str]


def prepare_server(checkpoint, options: dict[str, Any], config: str | os.PathLike | None = None) -> PreparedServer:
    """Every check of ``routecast serve`` before the port is bound: options, keys, the checkpoint
    (verified and loaded), the default operating point, the backends against the checkpoint's
    models, the decision log and the store. A failure is one :class:`RoutecastError` (one line)."""
    from routecast.serving.app import create_app, uvicorn_options
    from routecast.serving.backends import check_backend_models, load_backends
    from routecast.serving.guard.auth import ENV_VAR, ApiKeys
    from routecast.serving.state import budget_pacer

    opts = ServeOptions.from_mapping(merged_options(options, config))
    settings = opts.settings
    keys = ApiKeys.load(opts.api_keys)
    admins = None if opts.admin_keys is None else ApiKeys.load(opts.admin_keys, environ={})
    if keys is None and admins is None and not is_loopback(opts.host) and not opts.insecure_no_auth:
        raise ConfigError(f"refusing to serve on {opts.host} without client API keys: give api_keys (a keys file) "
                          f"or set ${ENV_VAR}, or set insecure_no_auth to serve an open proxy anyway")
    runtime = load_runtime(checkpoint, trusted_key=opts.trusted_key, expect_sha256=opts.expect_sha256)
    if settings.default_operating_point is not None:
        runtime.operating_point(settings.default_operating_point)  # a typo fails before binding
    budget_pacer(settings, runtime)  # a cascade, or models of one cost, fail before binding
    backends = load_backends(opts.backends)
    notes = check_backend_models(backends, runtime.models, source=opts.backends,
                                 allow_missing=opts.allow_missing_backends)
    shadow, canary = _candidates(opts, backends, notes)
    if opts.decision_log is not None:
        from routecast.data.decision_log import DecisionLog

        DecisionLog(opts.decision_log).close()  # an unwritable path fails before binding, in one line
    app = create_app(runtime, settings, backends=opts.backends, api_keys=keys, admin_keys=admins,
                     decision_log=opts.decision_log,
                     log_text=opts.log_text, price_table=opts.price_table,
                     store=check_store_spec(opts.store or "memory", opts.workers),
                     trusted_key=opts.trusted_key, expect_sha256=opts.expect_sha256, workers=opts.workers,
                     allow_missing_backends=opts.allow_missing_backends, shadow=shadow, canary=canary)
    kwargs = {"host": opts.host, "port": opts.port, "access_log": opts.access_log, "log_level": "info",
              **uvicorn_options(settings)}
    return PreparedServer(app, kwargs, opts, notes)


def _candidates(opts: ServeOptions, backends, notes: list[str]):
    """(shadow, canary) runtimes of ``--shadow`` / ``--canary`` (None when not given), verified with
    ``--trusted-key`` as the live checkpoint is; a canary's models are checked against the backends."""
    from routecast.serving.backends import check_backend_models

    shadow = canary = None
    if opts.shadow is not None:
        if opts.decision_log is None:
            raise ConfigError("--shadow logs the candidate's decisions beside the live ones: give --decision-log too")
        shadow = load_runtime(opts.shadow, trusted_key=opts.trusted_key)
    if opts.canary is not None:
        canary = load_runtime(opts.canary, trusted_key=opts.trusted_key)
        notes += check_backend_models(backends, canary.models, source=opts.backends,
                                      allow_missing=opts.allow_missing_backends)
    return shadow, canary


def build_server(checkpoint, options: dict[str, Any], config: str | os.PathLike | None = None):
    """(app, uvicorn keyword arguments) for ``routecast serve``; every check happens before binding."""
    prepared = prepare_server(checkpoint, options, config)
    return prepared.app, prepared.uvicorn_kwargs


def check_port(host: str, port: int) -> None:
    """Bind ``host:port`` once and let it go, so an occupied port is one line before uvicorn starts
    (uvicorn prints an error and two shutdown lines, then exits 1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server there? "
                              "choose another --port)") from None


def run_server(checkpoint, options: dict[str, Any], config: str | os.PathLike | None = None) -> None:
    """Build and run the server: in this process (which it then owns: see ``gil_switch_ms``), or
    with ``workers`` > 1 in that many worker processes sharing one port (:func:`run_workers`)."""
    workers = merged_options(options, config)["workers"]
    if workers != 1:
        return run_workers(checkpoint, options, config)
    prepared = prepare_server(checkpoint, options, config)
    check_port(prepared.uvicorn_kwargs["host"], prepared.uvicorn_kwargs["port"])
    _print_notes(prepared.notes)
    _own_gil_switch(prepared.options.settings)
    uvicorn.run(prepared.app, **prepared.uvicorn_kwargs)


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        print(f"routecast: {note}", file=sys.stderr, flush=True)


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
        prepared = prepare_server(checkpoint, options, config)  # checks only; each worker builds its own
        kwargs, notes = prepared.uvicorn_kwargs, prepared.notes
        del prepared
        metrics_dir = os.path.join(run_dir, "metrics")
        os.mkdir(metrics_dir)
        kwargs.pop("http")
        worker_config = WorkerConfig((os.fspath(checkpoint), options, None if config is None else os.fspath(config)),
                                     workers=merged["workers"], lifespan="on", **kwargs)
        check_port(kwargs["host"], kwargs["port"])
        _print_notes(notes)
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
