"""CLI commands of the serving area: ``routecast route``, ``routecast export``, ``routecast serve``.

Only typer is imported at module level; the runtime, FastAPI and uvicorn are imported inside the
commands so ``routecast --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("route")(route)
    app.command("export")(export)
    app.command("serve")(serve)


def route(
    checkpoint: Path = typer.Argument(..., help="Exported checkpoint folder."),
    input: Path = typer.Option(..., "--input", "-i", help="Prompts file: JSONL lines of {\"prompt\": ...} "
                               "or {\"id\": ..., \"prompt\": ...}; with --format text, one prompt per line."),
    output: Path = typer.Option(..., "--output", "-o", help="Decisions file (JSONL), written atomically."),
    lam: Optional[float] = typer.Option(None, help="Willingness to pay: quality points per USD."),
    budget: Optional[float] = typer.Option(None, help="Average USD per query."),
    strong_share: Optional[float] = typer.Option(None, help="Share of calls to the most expensive model."),
    target_quality: Optional[float] = typer.Option(None, help="Mean quality to reach at the lowest cost."),
    batch_size: int = typer.Option(256, min=1, help="Prompts routed per chunk (bounds memory)."),
    format: str = typer.Option("jsonl", "--format", help="Input format: jsonl or text."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: big files)."),
) -> None:
    """Route every prompt of a file with an exported router, streaming in chunks."""
    from routecast.serving.batch import route_file
    from routecast.serving.runtime import load

    runtime = load(checkpoint)
    summary = route_file(runtime, input, output, batch_size=batch_size, fmt=format, show_progress=progress,
                         lam=lam, budget=budget, strong_share=strong_share, target_quality=target_quality)
    shares = ", ".join(f"{m}: {c}" for m, c in summary["decisions"].items() if c)
    typer.echo(f"routed {summary['n_prompts']} prompts -> {output} ({shares or 'none'})")


def export(
    source: Path = typer.Argument(..., help="A run folder written by `routecast train --out DIR` "
                                  "(its router/ checkpoint is exported) or a checkpoint folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint folder to write."),
    onnx: bool = typer.Option(False, "--onnx", help="Also write head.onnx (torch-head routers: mlp, mf) for "
                              "serving outside Python; verified against torch with onnxruntime."),
) -> None:
    """Verify a trained router and copy it into a standalone checkpoint folder."""
    from routecast.errors import CheckpointError
    from routecast.router.checkpoint import copy_checkpoint, is_checkpoint_dir, load_checkpoint

    if is_checkpoint_dir(source):
        ckpt = source
    elif is_checkpoint_dir(source / "router"):
        ckpt = source / "router"
    else:
        raise CheckpointError(f"{source}: neither a checkpoint folder (config.json + manifest.json) nor a run "
                              "folder with a router/ checkpoint")
    router = load_checkpoint(ckpt)  # full load: a checkpoint that cannot be served is not exported
    if onnx:
        from routecast.router.checkpoint import read_config, save_checkpoint

        save_checkpoint(router, out, extra=read_config(ckpt).get("extra") or {}, onnx=True)
    else:
        copy_checkpoint(ckpt, out)
    typer.echo(f"exported {type(router).name} router ({len(router.models_)} models) -> {out}"
               + (" with head.onnx" if onnx else ""))


def serve(
    checkpoint: Path = typer.Argument(..., help="Exported checkpoint folder."),
    port: int = typer.Option(8000, help="TCP port."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0 exposes the server)."),
    backends: Optional[Path] = typer.Option(None, "--backends", help="YAML/JSON file: model -> base_url, "
                                            "api_key_env, timeout (needed for /v1/chat/completions)."),
    max_body_bytes: int = typer.Option(1_000_000, help="Largest accepted request body (413 above)."),
    max_prompts: int = typer.Option(256, help="Most prompts per /v1/route request."),
    lam: Optional[float] = typer.Option(None, help="Default willingness to pay for requests that give none."),
    micro_batch: bool = typer.Option(True, "--micro-batch/--no-micro-batch",
                                     help="Merge concurrent routing requests into one router call."),
    max_batch: int = typer.Option(64, help="Most prompts in one merged router call."),
    batch_wait_ms: float = typer.Option(0.0, help="Wait this long for more requests before routing a batch "
                                        "(0: merge only what queued up meanwhile; no added latency)."),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log",
                                    help="Log every request (costs ~10% throughput; /metrics counts them anyway)."),
) -> None:
    """Serve the router over HTTP: /v1/route, OpenAI-compatible /v1/chat/completions, /metrics."""
    import uvicorn

    from routecast.router.checkpoint import verify_checkpoint
    from routecast.serving.app import UVICORN_OPTIONS, create_app

    verify_checkpoint(checkpoint)  # fail before binding the port
    app = create_app(checkpoint, backends_config=backends,
                     settings={"max_body_bytes": max_body_bytes, "max_prompts": max_prompts, "default_lam": lam,
                               "micro_batch": micro_batch, "max_batch": max_batch, "batch_wait_ms": batch_wait_ms})
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log, **UVICORN_OPTIONS)
