"""CLI commands of the training area: ``train``, ``evaluate``, ``demo`` (+ ``tune``, ``calibrate``).

Only typer is imported at module level; everything heavy is imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from routecast.router.encoders.default import DEFAULT_ENCODER

DATA_HELP = "A built-in dataset name (see `routecast datasets`) or a path to a .parquet/.csv/.jsonl log."
ENCODER_HELP = ("Prompt encoder: minilm (bundled all-MiniLM-L6-v2), static (distilled from it, fast), "
                "onnx[:quantize=int8], hashing[:dim=N] (no weights), or st:/path/to/sentence-transformers-folder.")


def _parse_params(items: list[str] | None) -> dict:
    """``["k=10", "weighting=similarity"]`` -> {"k": 10, "weighting": "similarity"} (JSON values)."""
    from routecast.errors import ConfigError

    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--param expects key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def print_leaderboard(result, *, title: str = "Leaderboard (test split)") -> None:
    from rich.console import Console
    from rich.table import Table

    rows = result.leaderboard()
    two = result.strong_model is not None
    table = Table(title=title, title_justify="left")
    for col in ("router", "family", "AIQ [95% CI]", "max quality", "cost to match best (x)"):
        table.add_column(col, justify="left" if col in ("router", "family") else "right")
    if two:
        table.add_column("APGR", justify="right")
        table.add_column("CPT(50%)", justify="right")
    table.add_column("train s", justify="right")
    table.add_column("route µs/q", justify="right")

    def fmt(x, spec=".4f"):
        return "—" if x is None or (isinstance(x, float) and not np_isfinite(x)) else format(x, spec)

    for r in rows:
        lo, hi = r["aiq_ci"]
        ratio = r.get("cost_ratio_to_best")
        match = "—" if ratio is None or not np_isfinite(ratio) else f"{ratio:.2f}x"
        meta = r.get("meta") or {}
        cells = [r["label"], r["family"], f"{fmt(r['aiq'])} [{fmt(lo)}, {fmt(hi)}]",
                 fmt(r["max_quality"]), match]
        if two:
            cells += [fmt(r.get("apgr")), fmt(r.get("cpt50"), ".1%")]
        cells += [fmt(meta.get("train_seconds"), ".2f"), fmt(meta.get("route_us_per_query"), ".1f")]
        table.add_row(*cells)
    import sys

    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    console.print(f"best single model: {result.best_single_model}; zero-router AIQ "
                  f"{result.zero_router_aiq:.4f}; oracle quality {result.oracle_quality:.4f}; "
                  f"{result.n_prompts} test prompts; cost unit {result.cost_unit}")


def np_isfinite(x) -> bool:
    import math

    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _write_outputs(experiment, out: Path, *, title: str) -> Path:
    from routecast.training.report import write_report

    return write_report(experiment.result, out, title=title)


def _track(kind: str, *, enabled: bool, tracking_uri: Optional[str], params: dict, out: Path, metrics_path: Path):
    try:
        from routecast.training.tracking import track_run
    except ImportError:  # tracking not available in this build
        return None
    return track_run(kind, params=params, metrics_path=metrics_path, artifacts_dir=out,
                     enabled=enabled, tracking_uri=tracking_uri)


def _check_tracking(enabled: bool, tracking_uri: Optional[str]) -> None:
    """Fail before any work when the tracking server is unreachable (not after an hour of training)."""
    if not enabled:
        return
    from routecast.training.tracking import check_tracking

    check_tracking(tracking_uri)


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        data: str = typer.Option(..., "--data", "-d", help=DATA_HELP),
        routers: str = typer.Option("knn,linear,mlp,best-single,random,oracle", "--routers", "-r",
                                    help="Comma-separated router names (see `routecast routers`)."),
        encoder: str = typer.Option(DEFAULT_ENCODER, help=ENCODER_HELP),
        out: Path = typer.Option(Path("runs/evaluate"), "--out", "-o", help="Folder for metrics.json, report.md and plots."),
        val: float = typer.Option(0.1, help="Share of prompts for the validation (calibration) split."),
        test: float = typer.Option(0.2, help="Share of prompts for the test split."),
        seed: int = typer.Option(0, help="Seed of the split, the routers and the bootstrap."),
        use_logged_split: bool = typer.Option(False, help="Respect the log's own `split` column."),
        limit: Optional[int] = typer.Option(None, help="Use a seeded random subset of this many prompts."),
        n_boot: int = typer.Option(200, help="Bootstrap resamples for the 95% intervals."),
        cascades: str = typer.Option("", help="Also compare cascades with these deferral rules: "
                                     "ex-ante,ex-post,agreement (the last two need responses)."),
        ensembles: bool = typer.Option(False, "--ensembles/--no-ensembles",
                                       help="Also compare post-hoc ensembles (oracle, majority vote, best-of-n)."),
        track: bool = typer.Option(True, "--track/--no-track", help="Log the run to mlflow."),
        tracking_uri: Optional[str] = typer.Option(None, help="mlflow tracking URI (default: sqlite:///mlflow.db here)."),
    ) -> None:
        """Fit several routers (and cascades) on the train split and compare them on the test split.

        Writes metrics.json, report.md (leaderboard) and PNG cost-quality plots into --out.
        """
        from routecast.training.experiment import parse_router_list, run_experiment
        from routecast.training.pipeline import prepare

        from routecast.training.experiment import cascade_curves

        _check_tracking(track, tracking_uri)
        names = parse_router_list(routers)
        prepared = prepare(data, encoder=encoder, val=val, test=test, seed=seed,
                           use_logged_split=use_logged_split, limit=limit)
        kinds = [k.strip() for k in cascades.split(",") if k.strip()]
        extra = cascade_curves(prepared, kinds, ensembles=ensembles) if (kinds or ensembles) else None
        experiment = run_experiment(prepared, names, n_boot=n_boot, seed=seed, extra_curves=extra)
        report = _write_outputs(experiment, out, title=f"routecast evaluate: {data}")
        print_leaderboard(experiment.result)
        _track("evaluate", enabled=track, tracking_uri=tracking_uri,
               params={"data": data, "routers": routers, "encoder": encoder, "seed": seed},
               out=out, metrics_path=out / "metrics.json")
        typer.echo(f"report: {report}")
        typer.echo(f"plot:   {out / 'cost_quality.png'}")

    @app.command()
    def train(
        data: str = typer.Option(..., "--data", "-d", help=DATA_HELP),
        router: Optional[str] = typer.Option(None, "--router", "-r", help="Router name, e.g. mlp, knn, linear."),
        config: Optional[Path] = typer.Option(None, help="A JSON config {\"router\": ..., \"params\": {...}} (e.g. from `routecast tune`)."),
        param: Optional[list[str]] = typer.Option(None, "--param", "-p", help="Hyperparameter key=value (repeatable)."),
        encoder: str = typer.Option(DEFAULT_ENCODER, help=ENCODER_HELP),
        out: Path = typer.Option(..., "--out", "-o", help="Run folder: router/ checkpoint, run.json, metrics.json, report.md, plots."),
        val: float = typer.Option(0.1, help="Validation (calibration) share."),
        test: float = typer.Option(0.2, help="Test share."),
        seed: int = typer.Option(0, help="Seed of split and training."),
        use_logged_split: bool = typer.Option(False, help="Respect the log's own `split` column."),
        limit: Optional[int] = typer.Option(None, help="Use a seeded random subset of this many prompts."),
        track: bool = typer.Option(True, "--track/--no-track", help="Log the run to mlflow."),
        tracking_uri: Optional[str] = typer.Option(None, help="mlflow tracking URI."),
    ) -> None:
        """Train one router, calibrate it on validation, evaluate it on test, save a run folder.

        `routecast export RUN_DIR` then makes a servable checkpoint of it.
        """
        from routecast.atomic import write_json
        from routecast.errors import ConfigError
        from routecast.router.checkpoint import save_checkpoint
        from routecast.training.experiment import run_experiment
        from routecast.training.pipeline import prepare, router_params

        params = {}
        if config is not None:
            from routecast.training.tune import load_router_config

            name_from_config, params = load_router_config(config)
            if router is not None and router != name_from_config:
                raise ConfigError(f"--router {router} contradicts {config} (router {name_from_config})")
            router = name_from_config
        if router is None:
            raise ConfigError("give --router NAME or --config FILE")
        _check_tracking(track, tracking_uri)
        params.update(_parse_params(param))
        prepared = prepare(data, encoder=encoder, val=val, test=test, seed=seed,
                           use_logged_split=use_logged_split, limit=limit)
        experiment = run_experiment(prepared, [router], params={router: params}, seed=seed)
        run = experiment.runs[router]
        out.mkdir(parents=True, exist_ok=True)
        if not run.router.evaluation_only:
            save_checkpoint(run.router, out / "router")
        report = _write_outputs(experiment, out, title=f"routecast train: {router} on {data}")
        write_json(out / "run.json", {
            "data": data, "router": router, "params": router_params(router, params, prepared),
            "encoder": encoder, "split": {k: prepared.settings[k] for k in
                                          ("val", "test", "seed", "use_logged_split", "limit", "models")},
            "train_seconds": round(run.train_seconds, 3),
            "route_us_per_query": round(run.route_us_per_query, 2),
        })
        print_leaderboard(experiment.result)
        _track("train", enabled=track, tracking_uri=tracking_uri,
               params={"data": data, "router": router, "encoder": encoder, "seed": seed, **params},
               out=out, metrics_path=out / "metrics.json")
        typer.echo(f"run folder: {out}  (report: {report})")

    @app.command()
    def routers() -> None:
        """List the routers: a1 learn a quality model from outcomes, a2 are baselines."""
        from rich.console import Console
        from rich.table import Table

        from routecast.router.registry import get_router_class, router_names

        table = Table(title="routers")
        for col in ("name", "family", "hyperparameters", "what it does"):
            table.add_column(col)
        for name in router_names():
            cls = get_router_class(name)
            import inspect

            doc = (inspect.getdoc(inspect.getmodule(cls)) or "").split("\n\n")[0].replace("\n", " ")
            params = ", ".join(f"{k}={v!r}" for k, v in _defaults(cls).items())
            table.add_row(name, cls.family, params, doc)
        Console().print(table)

    @app.command()
    def demo(
        out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Folder for the demo's report and plots."),
        encoder: str = typer.Option(DEFAULT_ENCODER, help=ENCODER_HELP),
        track: bool = typer.Option(False, "--track/--no-track", help="Log the demo to mlflow."),
    ) -> None:
        """The main job on the built-in data: inspect it, train several routers, print the leaderboard."""
        from routecast.data import load_log
        from routecast.data.inspect import render_summary, summarize
        from routecast.training.experiment import run_experiment
        from routecast.training.pipeline import prepare

        from rich.console import Console

        data = "llmrouter_9models"
        console = Console()
        console.print(render_summary(summarize(load_log(data))))
        names = ["knn", "linear", "mlp", "mf", "best-single", "cheapest", "random", "oracle"]
        prepared = prepare(data, encoder=encoder)  # seeded split: the logged one shares 114 questions
        experiment = run_experiment(prepared, names)
        report = _write_outputs(experiment, out, title=f"routecast demo: {data}")
        print_leaderboard(experiment.result)
        _track("demo", enabled=track, tracking_uri=None, params={"data": data, "encoder": encoder},
               out=out, metrics_path=out / "metrics.json")
        typer.echo(f"report: {report}")
        typer.echo(f"plot:   {out / 'cost_quality.png'}")

    try:
        from routecast.training.cli_tuning import register as register_tuning
    except ModuleNotFoundError as exc:
        if exc.name != "routecast.training.cli_tuning":
            raise
    else:
        register_tuning(app)


def _defaults(cls) -> dict:
    import inspect

    return {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.default is not inspect.Parameter.empty}
