"""Experiment tracking with MLflow: every train, evaluate, tune and calibrate run can be found later.

Why a wrapper instead of ``mlflow.start_run``: MLflow's fluent API keeps the active run in global
state, retries an unreachable server for minutes, and leaves half-logged RUNNING runs behind when
the code inside fails. :class:`Tracker` instead

* uses an explicit :class:`mlflow.MlflowClient` (no global active run), so nested runs (one per
  optuna trial) are explicit children of a parent run;
* probes the tracking URI with a short timeout BEFORE the run's real work starts, and turns an
  unreachable server or an unwritable store into one :class:`TrackingError` naming the URI;
* marks a run whose body raised as ``FAILED`` (tag ``routecast.error`` holds the message), so a
  run is either ``FINISHED`` with everything logged, or visibly ``FAILED``; it never stays
  ``RUNNING``. Failed runs are kept (not deleted) so the failure itself can be inspected;
* defaults to a local SQLite store in the working directory (``sqlite:///mlflow.db``; MLflow 3
  refuses the old ``./mlruns`` file store) with artifacts beside it in ``./mlartifacts``.

MLflow takes ~2 s to import, so it is imported inside functions only; with ``enabled=False``
(``--no-track``) it is never imported at all.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from routecast.errors import RoutecastError

DEFAULT_EXPERIMENT = "routecast"
#: seconds to wait for a tracking server before declaring it unreachable
PROBE_TIMEOUT = 3.0
_KEY_UNSAFE = re.compile(r"[^\w.\- /:]")


class TrackingError(RoutecastError):
    """The tracking store cannot be used (unreachable server, unwritable database...)."""


def default_tracking_uri(cwd: str | os.PathLike | None = None) -> str:
    """``sqlite:///<cwd>/mlflow.db`` as an absolute URI, so a later ``cd`` does not move it."""
    return f"sqlite:///{(Path(cwd or os.getcwd()) / 'mlflow.db').resolve()}"


def resolve_tracking_uri(tracking_uri: str | None) -> str:
    """The URI to use: the one given, else ``$MLFLOW_TRACKING_URI``, else the local SQLite store.

    A bare path (``runs/mlflow.db``) is read as a SQLite file.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    if "://" not in uri:
        uri = f"sqlite:///{Path(uri).resolve()}"
    return uri


def check_tracking(tracking_uri: str | None = None, *, timeout: float = PROBE_TIMEOUT) -> str:
    """Fail fast (within ``timeout`` seconds) if the tracking store cannot be reached.

    Call it before starting expensive work. Returns the resolved URI. HTTP servers are asked
    for ``/health``; any HTTP answer counts as reachable (a wrong server then fails on the first
    logging call with MLflow's own message, wrapped). SQLite stores need a creatable directory.
    """
    uri = resolve_tracking_uri(tracking_uri)
    scheme = uri.split("://", 1)[0].lower()
    if scheme in ("http", "https"):
        import httpx

        try:
            httpx.get(uri.rstrip("/") + "/health", timeout=timeout)
        except httpx.HTTPError as exc:
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({type(exc).__name__}: {exc}); "
                "start it, pass another tracking_uri, or disable tracking") from None
    elif scheme == "sqlite":
        path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None
        if path is not None and str(path) not in ("", ":memory:"):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TrackingError(f"cannot create the MLflow database folder for {uri}: {exc}") from None
            if not os.access(path.parent, os.W_OK):
                raise TrackingError(f"MLflow database folder {path.parent} is not writable ({uri})")
    elif scheme == "file":
        raise TrackingError(f"{uri}: MLflow 3 no longer supports file stores; use "
                            "sqlite:///path/mlflow.db or an http(s):// tracking server")
    return uri


def _bounded_http_env(timeout: float) -> None:
    """Keep MLflow's HTTP client from retrying a dead server for minutes (unless the user chose)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(5, int(math.ceil(timeout * 3)))))


def metric_key(name: str) -> str:
    """An MLflow-safe metric/param name (``quality@budget`` -> ``quality_budget``)."""
    return _KEY_UNSAFE.sub("_", str(name))


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"a.b.c": leaf}`` (lists are kept as leaves)."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten(value, name))
    else:
        out[prefix] = obj
    return out


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    try:
        return math.isfinite(float(value)) and not isinstance(value, str)
    except (TypeError, ValueError):
        return False


def _label_key(items: list) -> str | None:
    """The key that names each dict of a list (``label``/``name``), if every dict has a unique one.

    Operating points (dicts with a ``lam`` or ``step``) are a series, never named rows."""
    if any("lam" in d or "step" in d for d in items):
        return None
    for key in ("label", "name"):
        labels = [d.get(key) for d in items]
        if all(isinstance(x, str) and x and not x.isdigit() for x in labels) and len(set(labels)) == len(labels):
            return key
    return None


def numeric_metrics(metrics: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, list[tuple[int, float]]]]:
    """Split a (nested) metrics dict into summary scalars and per-step series.

    * numeric leaves -> summary metrics (``a.b.c``);
    * lists of numbers -> a series, step i = i-th element;
    * lists of dicts named by a ``label``/``name`` (a leaderboard) -> ``prefix.<label>.<key>``;
    * other lists of dicts, and always those with a ``lam``/``step`` key (a curve's operating
      points, one per lam) -> one series per numeric key, step i = i-th point, so MLflow plots
      each metric against the lam index (the lam itself is the series ``<prefix>.lam``); dicts
      nested inside a point (its call shares) are not logged, they stay in the JSON artifact.

    Strings, None/NaN and the rest are left to the artifacts. Keys pass through :func:`metric_key`.
    """
    scalars: dict[str, float] = {}
    series: dict[str, list[tuple[int, float]]] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, f"{prefix}.{key}" if prefix else str(key))
        elif _is_number(value):
            scalars[metric_key(prefix)] = float(value)
        elif isinstance(value, (list, tuple)) and value:
            if all(isinstance(v, Mapping) for v in value):
                label = _label_key(list(value))
                if label is not None:
                    for item in value:
                        walk({k: v for k, v in item.items() if k != label}, f"{prefix}.{item[label]}")
                    return
                for step, item in enumerate(value):
                    for key, leaf in item.items():  # nested dicts (per-point call shares) stay in the JSON artifact
                        if _is_number(leaf):
                            series.setdefault(metric_key(f"{prefix}.{key}"), []).append((step, float(leaf)))
            elif all(_is_number(v) or v is None for v in value):
                points = [(i, float(v)) for i, v in enumerate(value) if _is_number(v)]
                if points:
                    series[metric_key(prefix)] = points

    walk(metrics, "")
    return scalars, series


class Tracker:
    """One MLflow run (a context manager); ``enabled=False`` makes every method a no-op.

    ::

        with Tracker(tracking_uri, run_name="train-knn", enabled=not no_track) as tracker:
            tracker.log_params({"router": "knn", "k": 20})
            ...                                    # the real work
            tracker.log_metrics({"aiq": 0.71})
            tracker.log_artifacts(out_dir)

    The URI is probed in ``__enter__`` (before the work). If the body raises, the run is
    terminated as ``FAILED`` with the error in tag ``routecast.error`` and the exception
    propagates. :meth:`child` opens a nested run (MLflow's ``mlflow.parentRunId`` tag).
    """

    def __init__(self, tracking_uri: str | None = None, *, experiment: str = DEFAULT_EXPERIMENT,
                 run_name: str | None = None, enabled: bool = True, tags: Mapping[str, str] | None = None,
                 probe_timeout: float = PROBE_TIMEOUT, _parent: "Tracker | None" = None,
                 resume_tag: str | None = None, start_time: float | None = None):
        #: when the run's work began (``time.time()``); default: when the run is opened. A run
        #: logged after its work (``track_run``) passes it, so MLflow shows the real duration
        self.start_time = start_time
        #: a tag key in ``tags``: when a top-level run with the same value exists, it is continued (a
        #: resumed tuning study logs into its first parent run instead of opening another)
        self.resume_tag = resume_tag
        self.resumed = False
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.enabled = enabled
        self.tags = dict(tags or {})
        self.probe_timeout = probe_timeout
        self._parent = _parent
        self._client = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Tracker":
        if not self.enabled:
            return self
        if self._parent is not None:
            self._client, self.experiment_id = self._parent._client, self._parent.experiment_id
            self.tracking_uri = self._parent.tracking_uri
            tags = {"mlflow.parentRunId": self._parent.run_id, **self.tags}
        else:
            self.tracking_uri = check_tracking(self.tracking_uri, timeout=self.probe_timeout)
            _bounded_http_env(self.probe_timeout)
            self._client, self.experiment_id = self._connect()
            tags = dict(self.tags)
        tags.setdefault("mlflow.source.name", "routecast")
        previous = self._resumable_run(tags)
        if previous is not None:
            self.run_id, self.resumed = previous, True
            self._call("continue the run", self._client.update_run, previous, status="RUNNING")
            return self
        start = None if self.start_time is None else int(self.start_time * 1000)
        run = self._call("create a run", self._client.create_run, self.experiment_id,
                         run_name=self.run_name, tags=tags, start_time=start)
        self.run_id = run.info.run_id
        return self

    def _resumable_run(self, tags: Mapping[str, str]) -> str | None:
        """The newest top-level run whose ``resume_tag`` equals this one's (None: start a new run)."""
        if self.resume_tag is None or self._parent is not None or self.resume_tag not in tags:
            return None
        value = str(tags[self.resume_tag]).replace("\\", "\\\\").replace("'", "\\'")
        found = self._call("search runs", self._client.search_runs, [self.experiment_id],
                           filter_string=f"tags.`{self.resume_tag}` = '{value}'", max_results=1,
                           order_by=["attributes.start_time DESC"])
        return found[0].info.run_id if found else None

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.enabled or self.run_id is None:
            return None
        if exc is None:
            self._call("finish the run", self._client.set_terminated, self.run_id, "FINISHED")
            return None
        # the body failed: never leave a RUNNING half-logged run; keep it visible as FAILED
        try:
            message = f"{type(exc).__name__}: {exc}"[:5000]
            self._client.set_tag(self.run_id, "routecast.error", message)
            self._client.set_terminated(self.run_id, "FAILED")
        except Exception:  # the store itself is gone: the original error matters more
            pass
        return None

    def _connect(self):
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = self._call("read the experiment", client.get_experiment_by_name, self.experiment)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                self._call("restore the experiment", client.restore_experiment, experiment.experiment_id)
            return client, experiment.experiment_id
        artifact_location = None
        if self.tracking_uri.startswith("sqlite:///"):
            # keep artifacts next to the database, not in whatever folder the command ran from
            db = Path(self.tracking_uri[len("sqlite:///"):])
            artifact_location = (db.parent / "mlartifacts").resolve().as_uri()
        experiment_id = self._call("create the experiment", client.create_experiment, self.experiment,
                                   artifact_location=artifact_location)
        return client, experiment_id

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RoutecastError:
            raise
        except Exception as exc:  # MlflowException, sqlalchemy, requests errors
            raise TrackingError(f"MLflow ({self.tracking_uri}): could not {what}: "
                                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None

    def child(self, run_name: str | None = None, *, tags: Mapping[str, str] | None = None) -> "Tracker":
        """A nested run under this one (e.g. one optuna trial); use it as a context manager."""
        return Tracker(enabled=self.enabled and self.run_id is not None, run_name=run_name,
                       experiment=self.experiment, tags=tags, _parent=self)

    # -------------------------------------------------------------- logging
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Hyperparameters and settings (nested dicts are flattened to ``a.b``)."""
        if not self.enabled or self.run_id is None:
            return
        from mlflow.entities import Param

        flat = flatten(dict(params))
        items = [Param(metric_key(k), json.dumps(v) if isinstance(v, (list, dict)) else str(v))
                 for k, v in flat.items()]
        if self.resumed:  # MLflow params are immutable: a continued run keeps the first values, new ones are tags
            logged = self._call("read the run", self._client.get_run, self.run_id).data.params
            self.set_tags({f"resumed.{p.key}": p.value for p in items if p.key in logged and logged[p.key] != p.value})
            items = [p for p in items if p.key not in logged]
        for start in range(0, len(items), 100):  # MLflow's batch limit
            self._call("log params", self._client.log_batch, self.run_id, params=items[start:start + 100])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numeric leaves as summary metrics; lists of numbers as per-step series."""
        if not self.enabled or self.run_id is None:
            return
        scalars, series = numeric_metrics(metrics)
        entries = [(k, v, step or 0) for k, v in scalars.items()]
        for key, points in series.items():
            entries.extend((key, v, i) for i, v in points)
        self._log_metric_entries(entries)

    def log_curve(self, steps: Mapping[str, Iterable[float]]) -> None:
        """Per-lam metrics: ``{"lam": [...], "cost": [...], "quality": [...]}``, step i = i-th lam."""
        if not self.enabled or self.run_id is None:
            return
        entries = []
        for key, values in steps.items():
            entries.extend((metric_key(key), float(v), i) for i, v in enumerate(values) if _is_number(v))
        self._log_metric_entries(entries)

    def _log_metric_entries(self, entries: list[tuple[str, float, int]]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, s) for k, v, s in entries]
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit
            self._call("log metrics", self._client.log_batch, self.run_id, metrics=metrics[start:start + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.enabled or self.run_id is None:
            return
        for key, value in tags.items():
            self._call("set a tag", self._client.set_tag, self.run_id, metric_key(key), str(value))

    def log_table(self, artifact_file: str, rows: list[Mapping[str, Any]]) -> None:
        """A table (a list of rows with the same keys) as a JSON artifact MLflow's UI shows as a
        table; per-policy figures go here instead of hundreds of metrics."""
        if not self.enabled or self.run_id is None or not rows:
            return
        columns = list(dict.fromkeys(k for row in rows for k in row))
        data = {c: [json.dumps(row.get(c)) if isinstance(row.get(c), (list, dict)) else row.get(c) for row in rows]
                for c in columns}
        self._call("log a table", self._client.log_table, self.run_id, data, artifact_file)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if not self.enabled or self.run_id is None:
            return
        self._call("log an artifact", self._client.log_artifact, self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: str | os.PathLike, artifact_path: str | None = None) -> None:
        """A whole folder (report, plots, the router checkpoint folder...)."""
        if not self.enabled or self.run_id is None:
            return
        self._call("log artifacts", self._client.log_artifacts, self.run_id, str(directory), artifact_path)

    def log_run_dir(self, run_dir: str | os.PathLike) -> None:
        """Everything a ``routecast train/evaluate --out DIR`` folder holds: params from
        ``run.json``, metrics from ``metrics.json`` (and ``calibration.json``), all files as artifacts."""
        run_dir = Path(run_dir)
        run_json = _read_json(run_dir / "run.json")
        if run_json:
            self.log_params(run_json)
        for name in ("metrics.json", "calibration.json"):
            data = _read_json(run_dir / name)
            if data:
                self.log_metrics(data if name == "metrics.json" else {"calibration": data})
        if run_dir.is_dir():
            self.log_artifacts(run_dir)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TrackingError(f"file {path}: not readable JSON ({exc})") from None


#: the leaderboard columns each per-policy table artifact keeps (the rest is in metrics.json)
TABLE_COLUMNS = ("label", "family", "status", "aiq", "aiq_ci", "gain_over_prior", "gain_over_prior_ci", "prior",
                 "max_quality", "min_cost", "cost_to_match_best", "cost_ratio_to_best", "apgr", "cpt50", "cpt80")


def headline_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """The figures runs are compared by, of one policy (a leaderboard row of metrics.json): its
    ``aiq`` with ``aiq_ci_low/high``, ``cost_to_match_best`` (USD per query at which it reaches
    the best single model's quality) and ``cost_ratio_to_best`` (that as a share of the model's
    cost), ``gain_over_prior`` with its interval, ``max_quality`` and its fit and routing times.
    Non-finite values (a policy that never matches the best model) are left out."""
    aiq_lo, aiq_hi = row.get("aiq_ci") or (None, None)
    gain_lo, gain_hi = row.get("gain_over_prior_ci") or (None, None)
    meta = row.get("meta") or {}
    values = {"aiq": row.get("aiq"), "aiq_ci_low": aiq_lo, "aiq_ci_high": aiq_hi,
              "cost_to_match_best": row.get("cost_to_match_best"), "cost_ratio_to_best": row.get("cost_ratio_to_best"),
              "gain_over_prior": row.get("gain_over_prior"), "gain_over_prior_ci_low": gain_lo,
              "gain_over_prior_ci_high": gain_hi, "max_quality": row.get("max_quality"),
              "train_seconds": meta.get("train_seconds"), "route_us_per_query": meta.get("route_us_per_query")}
    return {k: float(v) for k, v in values.items() if _is_number(v)}


def headline_policy(metrics: Mapping[str, Any], policy: str | None = None) -> dict[str, Any] | None:
    """The row a run is summarised by: ``policy`` (train's router) wherever it is listed, else the
    best-ranked learned (a1) policy, else the best-ranked one; None when nothing is listed."""
    rows = list(metrics.get("leaderboard") or []) + list(metrics.get("unranked") or [])
    if policy is not None:
        return next((r for r in rows if r.get("label") == policy), None)
    ranked = list(metrics.get("leaderboard") or [])
    return next((r for r in ranked if r.get("family") == "a1"), ranked[0] if ranked else None)


def track_evaluation(kind: str, *, metrics_path: str | os.PathLike, params: Mapping[str, Any],
                     hyperparameters: Mapping[str, Any] | None = None, policy: str | None = None,
                     artifacts_dir: str | os.PathLike | None = None, start_time: float | None = None,
                     tracking_uri: str | None = None, enabled: bool = True, run_name: str | None = None,
                     experiment: str = DEFAULT_EXPERIMENT) -> str | None:
    """Log a finished ``train``/``evaluate``/``demo`` run so runs can be compared in MLflow's table.

    * metrics: :func:`headline_metrics` of its policy (``policy``, else the best learned one, named
      in tag ``routecast.policy``), ``zero_router_aiq``, ``oracle_quality``, ``n_prompts`` and, when
      several policies are ranked, ``aiq.<policy>`` of each: a few dozen columns, not hundreds;
    * params: ``params`` (data, router, encoder, seed, split...) and the router's
      ``hyperparameters`` (one that shares a name with a run setting but differs is ``router.<name>``);
    * artifacts: the per-policy tables (``tables/leaderboard.json``, ``tables/unranked.json``,
      ``tables/per_benchmark.json``) and the whole ``artifacts_dir`` (metrics.json, report, plots);
    * ``start_time`` (``time.time()`` when the work began) makes the run's duration the real one.
    Returns the MLflow run id (None when disabled).
    """
    if not enabled:
        return None
    metrics = _read_json(Path(metrics_path)) or {}
    row = headline_policy(metrics, policy)
    summary = headline_metrics(row) if row is not None else {}
    for key in ("zero_router_aiq", "oracle_quality", "n_prompts"):
        if _is_number(metrics.get(key)):
            summary[key] = float(metrics[key])
    ranked = list(metrics.get("leaderboard") or [])
    if len(ranked) > 1:
        summary.update({metric_key(f"aiq.{r['label']}"): float(r["aiq"]) for r in ranked if _is_number(r.get("aiq"))})
    settings = dict(params)
    for key, value in (hyperparameters or {}).items():
        clash = key in settings and str(settings[key]) != str(value)
        settings[f"router.{key}" if clash else key] = value
    tags = {"routecast.kind": kind, **({"routecast.policy": row["label"]} if row is not None else {})}
    with Tracker(tracking_uri, experiment=experiment, run_name=run_name or kind, tags=tags,
                 start_time=start_time) as tracker:
        tracker.log_params(settings)
        tracker.log_metrics(summary)
        for name in ("leaderboard", "unranked"):
            tracker.log_table(f"tables/{name}.json",
                              [{c: r.get(c) for c in TABLE_COLUMNS if c in r} for r in metrics.get(name) or []])
        tracker.log_table("tables/per_benchmark.json",
                          [{"benchmark": b["benchmark"], "n_prompts": b["n_prompts"], "policy": label, **figures}
                           for b in metrics.get("per_benchmark") or [] for label, figures in b["policies"].items()])
        if artifacts_dir is not None and Path(artifacts_dir).is_dir():
            tracker.log_artifacts(artifacts_dir)
        return tracker.run_id


def track_run(kind: str, params: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None,
              artifacts_dir: str | os.PathLike | None = None, *, metrics_path: str | os.PathLike | None = None,
              tracking_uri: str | None = None,
              enabled: bool = True, run_name: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
              tags: Mapping[str, Any] | None = None, start_time: float | None = None) -> str | None:
    """Log one finished run in one call; returns the MLflow run id (None when disabled).

    ``kind`` ("train", "evaluate", "tune", "calibrate") becomes tag ``routecast.kind``. ``params``
    and ``metrics`` may be nested (see :func:`numeric_metrics`); ``metrics_path`` is a JSON file
    (metrics.json) logged the same way; ``artifacts_dir`` is uploaded whole and, when neither
    params nor metrics are given, its run.json/metrics.json are logged. Call :func:`check_tracking` before the work so an unreachable
    server fails before, not after, an hour of training. ``start_time`` (``time.time()`` when the
    work began) gives the run its real duration. :func:`track_evaluation` logs an evaluation the
    way runs are compared (headline metrics, per-policy tables as artifacts).
    """
    if not enabled:
        return None
    all_tags = {"routecast.kind": kind, **{k: str(v) for k, v in (tags or {}).items()}}
    with Tracker(tracking_uri, experiment=experiment, run_name=run_name or kind, tags=all_tags,
                 start_time=start_time) as tracker:
        if artifacts_dir is not None and params is None and metrics is None and metrics_path is None:
            tracker.log_run_dir(artifacts_dir)
        else:
            if params:
                tracker.log_params(params)
            if metrics:
                tracker.log_metrics(metrics)
            if metrics_path is not None:
                data = _read_json(Path(metrics_path))
                if data:
                    tracker.log_metrics(data)
            if artifacts_dir is not None and Path(artifacts_dir).is_dir():
                tracker.log_artifacts(artifacts_dir)
        return tracker.run_id
