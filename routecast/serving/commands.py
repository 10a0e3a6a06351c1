"""Commands of the serving area: ``routecast route``, ``routecast export``, ``routecast serve``.

Each command parses its options, calls one library function and prints. Only typer is imported at
module level; the runtime, FastAPI and uvicorn load inside the commands so ``routecast --help``
stays fast. ``routecast/cli.py`` registers :data:`COMMANDS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from routecast.cli_options import Encoder, Out
from routecast.router.encoders.default import DEFAULT_ENCODER

Checkpoint = Annotated[Path, typer.Argument(help="Exported checkpoint folder.")]
TrustedKey = Annotated[Optional[Path], typer.Option(
    "--trusted-key", help="Ed25519 public key (PEM, from `routecast keygen`): the checkpoint's manifest.sig "
    "must verify against it. Without it or --expect-sha256 a checkpoint is integrity-checked, not authenticated.")]
Engine = Annotated[str, typer.Option("--engine", help="local (this machine) or ray (Ray Data actors on the "
                                      "cluster of --ray-address; needs routecast[ray]).")]
RayAddress = Annotated[Optional[str], typer.Option("--ray-address", metavar="ADDR", help="Ray cluster to use "
                                                   "(host:port, ray://host:port or auto; default: $RAY_ADDRESS, "
                                                   "else a new local cluster).")]
Workers = Annotated[Optional[int], typer.Option("--workers", min=1, help="Worker processes (local) or actors "
                                                "(ray) [local: 1; ray: up to the cluster's CPUs].")]
ExpectSha256 = Annotated[Optional[str], typer.Option(
    "--expect-sha256", metavar="HEX", help="Pinned sha256 of the checkpoint's manifest.json (printed by "
    "`routecast export`); any other checkpoint is refused.")]


def route(
    checkpoint: Checkpoint,
    input: Annotated[Path, typer.Option("--input", "-i", help="Prompts file: JSONL lines of {\"prompt\": ...} "
                                        "or {\"id\": ..., \"prompt\": ...}; with --format text, one prompt per line.")],
    output: Annotated[Path, typer.Option("--output", "--out", "-o",
                                         help="Decisions file (JSONL), written atomically.")],
    lam: Annotated[Optional[float], typer.Option(help="Willingness to pay: quality points per USD.")] = None,
    budget: Annotated[Optional[float], typer.Option(help="Average USD per query.")] = None,
    strong_share: Annotated[Optional[float], typer.Option(help="Share of calls to the strong model.")] = None,
    target_quality: Annotated[Optional[float], typer.Option(help="Mean quality to reach at the lowest cost.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts routed per chunk (bounds memory).")] = 256,
    format: Annotated[str, typer.Option("--format", help="Input format: jsonl or text.")] = "jsonl",
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress",
                                                     help="Progress bar (default: big files).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from OUTPUT.partial "
                                         "(same input, checkpoint and settings; nothing is routed twice).")] = False,
    allow_duplicates: Annotated[bool, typer.Option("--allow-duplicates", help="Accept an id used on several "
                                                   "lines (refused by default).")] = False,
    trusted_key: TrustedKey = None,
    expect_sha256: ExpectSha256 = None,
    engine: Engine = "local",
    ray_address: RayAddress = None,
    workers: Workers = None,
) -> None:
    """Route every prompt of a file with an exported router, streaming in chunks.

    With --engine ray, --input is a .parquet/.jsonl file or folder of shards whose rows all have an
    id, and --output a folder of Parquet decisions (id + decision fields), complete or absent.
    """
    if engine not in ("local", "ray"):
        from routecast.errors import ConfigError

        raise ConfigError(f"engine must be local or ray, got {engine!r}")
    if engine == "ray":
        from routecast.serving.ray_route import route_with_ray

        summary = route_with_ray(checkpoint, input, output, workers=workers, ray_address=ray_address,
                                 trusted_key=trusted_key, expect_sha256=expect_sha256, lam=lam, budget=budget,
                                 strong_share=strong_share, target_quality=target_quality)
        shares = ", ".join(f"{m}: {c}" for m, c in summary["decisions"].items() if c)
        typer.echo(f"routed {summary['n_prompts']} prompts on ray -> {output} ({shares or 'none'})")
        return
    from routecast.serving.batch import route_file
    from routecast.serving.cascade_runtime import is_cascade_checkpoint, load_cascade
    from routecast.serving.runtime import load

    cascade = is_cascade_checkpoint(checkpoint)  # routed by its first call (what /v1/route answers)
    runtime = (load_cascade if cascade else load)(checkpoint, trusted_key=trusted_key, expect_sha256=expect_sha256)
    summary = route_file(runtime, input, output, batch_size=batch_size, fmt=format, show_progress=progress,
                         resume=resume, allow_duplicates=allow_duplicates,
                         lam=lam, budget=budget, strong_share=strong_share, target_quality=target_quality)
    shares = ", ".join(f"{m}: {c}" for m, c in summary["decisions"].items() if c)
    extra = "".join(f", {summary[k]} {label}" for k, label in (("resumed", "resumed"), ("duplicates", "repeated ids"))
                    if summary[k])
    typer.echo(f"routed {summary['n_prompts']} prompts -> {output} ({shares or 'none'}{extra})")
    if cascade:
        typer.echo("a cascade checkpoint: each decision is its first call; whether it calls again depends on the "
                   "answer, which `routecast serve` gets from the backends")


def embed(
    input: Annotated[Path, typer.Argument(help="Prompts: a .parquet/.jsonl file or a folder of them, with "
                                          "an id and a prompt on every row.")],
    out: Out,
    encoder: Encoder = DEFAULT_ENCODER,
    engine: Engine = "local",
    ray_address: RayAddress = None,
    workers: Workers = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per encoder call.")] = 256,
    fill_cache: Annotated[bool, typer.Option("--fill-cache/--no-fill-cache", help="Store the vectors in the "
                                             "embedding cache, so training on these prompts encodes nothing.")] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar (local engine).")] = True,
) -> None:
    """Embed a prompts file into sharded Parquet (id, key, embedding) and fill the embedding cache."""
    from routecast.router.embed_files import embed_file

    summary = embed_file(input, out, encoder=encoder, engine=engine, workers=workers, ray_address=ray_address,
                         batch_size=batch_size, fill_cache=fill_cache, progress=progress)
    cached = f", {summary['cached']} vectors cached" if "cached" in summary else ""
    typer.echo(f"embedded {summary['rows']} prompts with {encoder} on {engine} in {summary['embed_seconds']:.1f} s "
               f"-> {out} ({summary['files']} files{cached})")


def export(
    source: Annotated[Path, typer.Argument(help="A run folder written by `routecast train --out DIR` "
                                           "(its router/ checkpoint is exported) or a checkpoint folder.")],
    out: Out,
    onnx: Annotated[bool, typer.Option("--onnx", help="Re-save with head.onnx (torch-head routers: mlp, mf, irt), "
                                       "verified against torch with onnxruntime: new checkpoints carry it already; "
                                       "older ones need it for the lean install and serving outside Python.")] = False,
    sign: Annotated[Optional[Path], typer.Option("--sign", metavar="KEYFILE", help="Ed25519 private key (PEM, "
                                                 "from `routecast keygen`): writes manifest.sig.")] = None,
) -> None:
    """Verify a trained router and copy it into a standalone checkpoint folder (files 0644, folders 0755)."""
    from routecast.core.checkpoint import export_checkpoint, manifest_sha256
    from routecast.serving.cascade_runtime import is_cascade_checkpoint

    if is_cascade_checkpoint(source):  # verified, loaded and re-saved whole (router/ and scorer encoder inside)
        from routecast.cascade.cascade_router import CascadeRouter

        cascade = CascadeRouter.load(source)
        cascade.save(out, sign_key=sign)
        typer.echo(f"exported cascade router ({len(cascade.pool_)} models) -> {out}"
                   + (", signed" if sign else ""))
        typer.echo(f"manifest sha256: {manifest_sha256(out)}  (pin it: --expect-sha256)")
        return
    router = export_checkpoint(source, out, onnx=onnx, sign_key=sign)
    typer.echo(f"exported {type(router).name} router ({len(router.models_)} models) -> {out}"
               + (" with head.onnx" if onnx else "") + (", signed" if sign else ""))
    typer.echo(f"manifest sha256: {manifest_sha256(out)}  (pin it: --expect-sha256)")


def keygen(
    private_key: Annotated[Path, typer.Argument(help="Private key file to create (PEM, mode 0600); never "
                                                "overwritten.")],
    public_key: Annotated[Optional[Path], typer.Option("--public", help="Public key file [PRIVATE_KEY.pub].")] = None,
) -> None:
    """Make an ed25519 key pair for signing checkpoints (export --sign / --trusted-key)."""
    from routecast.core.signing import generate_keypair

    public_key = public_key or private_key.with_name(private_key.name + ".pub")
    key_id = generate_keypair(private_key, public_key)
    typer.echo(f"key {key_id}: private {private_key} (keep it secret), public {public_key} (give it to servers)")


def serve(
    checkpoint: Checkpoint,
    config: Annotated[Optional[Path], typer.Option("--config", help="Server config file (YAML/JSON): any option "
                                                   "below and every limit of ServerSettings; flags win.")] = None,
    port: Annotated[Optional[int], typer.Option(help="TCP port [default: 8000].")] = None,
    host: Annotated[Optional[str], typer.Option(help="Interface to bind [default: 127.0.0.1]; a non-loopback "
                                                "address needs --api-keys (or --insecure-no-auth).")] = None,
    backends: Annotated[Optional[Path], typer.Option("--backends", help="YAML/JSON file: model -> base_url, "
                                                     "api_key_env, timeout (needed for /v1/chat/completions).")] = None,
    api_keys: Annotated[Optional[Path], typer.Option("--api-keys", help="Client keys file: one key or "
                                                     "sha256:<hex> per line (also $ROUTECAST_API_KEYS).")] = None,
    admin_keys: Annotated[Optional[Path], typer.Option("--admin-keys", help="Admin keys file (as --api-keys): "
                                                       "also accepted as client keys, and may give feedback on "
                                                       "any key's requests.")] = None,
    insecure_no_auth: Annotated[Optional[bool], typer.Option("--insecure-no-auth", help="Serve a non-loopback "
                                                             "address without client keys.")] = None,
    docs: Annotated[Optional[bool], typer.Option("--docs/--no-docs", help="Publish /docs and /openapi.json.")] = None,
    public_metrics: Annotated[Optional[bool], typer.Option("--public-metrics", help="/metrics without a key.")] = None,
    max_body_bytes: Annotated[Optional[int], typer.Option(help="Largest request body (413 above) [1000000].")] = None,
    max_prompts: Annotated[Optional[int], typer.Option(help="Most prompts per /v1/route request [256].")] = None,
    rate_limit_rps: Annotated[Optional[float], typer.Option(help="Requests/s per key (429 above).")] = None,
    prompt_rate_limit: Annotated[Optional[float], typer.Option(help="Prompts/s per key (429 above).")] = None,
    spend_budget_usd: Annotated[Optional[float], typer.Option(help="USD per key on proxied chats, from the "
                                                              "router's cost model (429 when used up).")] = None,
    budget_mode: Annotated[Optional[str], typer.Option("--budget-mode", help="settle: charge each chat when it "
                                                       "ends; reserve: also hold its expected cost while it runs, "
                                                       "so a budget is exceeded by at most one chat [settle].")] = None,
    max_concurrent_per_key: Annotated[Optional[int], typer.Option(help="Requests in progress per key [8].")] = None,
    header_timeout_s: Annotated[Optional[float], typer.Option("--header-timeout", help="Seconds to send a "
                                                              "request head [10].")] = None,
    body_timeout_s: Annotated[Optional[float], typer.Option("--body-timeout", help="Seconds to send a body "
                                                            "(408 after) [30].")] = None,
    max_response_bytes: Annotated[Optional[int], typer.Option(help="Largest backend answer relayed "
                                                              "[10000000].")] = None,
    lam: Annotated[Optional[float], typer.Option(help="Default willingness to pay for requests that give none.")] = None,
    micro_batch: Annotated[Optional[bool], typer.Option("--micro-batch/--no-micro-batch",
                                                        help="Merge concurrent routing requests into one router "
                                                        "call [on].")] = None,
    max_batch: Annotated[Optional[int], typer.Option(help="Most prompts in one merged router call [64].")] = None,
    batch_wait_ms: Annotated[Optional[float], typer.Option(help="Wait this long for more requests before routing "
                                                           "a batch (0: no added latency) [0].")] = None,
    access_log: Annotated[Optional[bool], typer.Option("--access-log/--no-access-log", help="Log every request "
                                                       "(costs ~10% throughput; /metrics counts them anyway).")] = None,
    decision_log: Annotated[Optional[Path], typer.Option("--decision-log", help="SQLite file: one record per "
                                                         "routed request (enables POST /v1/feedback).")] = None,
    log_text: Annotated[Optional[bool], typer.Option("--log-text", help="Keep the routing text in the decision "
                                                     "log (default: only its SHA-256; needed to train on it).")] = None,
    explore: Annotated[Optional[float], typer.Option("--explore", help="Epsilon-greedy exploration of chat "
                                                     "routing: share of chats sent to a uniformly drawn model.")] = None,
    explore_temperature: Annotated[Optional[float], typer.Option("--explore-temperature", help="Softmax "
                                                                 "exploration over utility / T instead.")] = None,
    operating_point: Annotated[Optional[str], typer.Option("--operating-point", help="Default operating point "
                                                           "[the checkpoint's default].")] = None,
    sticky_margin: Annotated[Optional[float], typer.Option("--sticky-margin", help="A conversation switches "
                                                           "models only for a larger predicted gain [0.05].")] = None,
    price_table: Annotated[Optional[Path], typer.Option("--price-table", help="JSON {model: [usd_per_mtok_in, "
                                                        "usd_per_mtok_out]}: realised cost from token usage.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Worker processes on one port; they "
                                                   "share limits, budgets, the decision log and /metrics [1].")] = None,
    store: Annotated[Optional[str], typer.Option("--store", metavar="URL", help="Where per-key limits and budgets "
                                                 "live: memory, sqlite:///PATH or redis://HOST:PORT/DB [memory; "
                                                 "with --workers > 1 a SQLite file of this server].")] = None,
    trusted_key: TrustedKey = None,
    expect_sha256: ExpectSha256 = None,
) -> None:
    """Serve the router over HTTP: /v1/route, OpenAI-compatible /v1/chat/completions, /v1/feedback, /metrics.

    A cascade router checkpoint (CascadeRouter.save) is recognised from its config.json: routed
    chats then call, score and maybe call again, returning the best answer (see the README).
    """
    from routecast.serving.serve import run_server

    options = dict(port=port, host=host, backends=None if backends is None else str(backends),
                   api_keys=None if api_keys is None else str(api_keys), insecure_no_auth=insecure_no_auth,
                   admin_keys=None if admin_keys is None else str(admin_keys),
                   docs=docs, public_metrics=public_metrics, max_body_bytes=max_body_bytes, max_prompts=max_prompts,
                   rate_limit_rps=rate_limit_rps, prompt_rate_limit=prompt_rate_limit,
                   spend_budget_usd=spend_budget_usd, budget_mode=budget_mode, max_concurrent_per_key=max_concurrent_per_key,
                   header_timeout_s=header_timeout_s, body_timeout_s=body_timeout_s,
                   max_response_bytes=max_response_bytes, default_lam=lam, micro_batch=micro_batch,
                   max_batch=max_batch, batch_wait_ms=batch_wait_ms, access_log=access_log,
                   trusted_key=None if trusted_key is None else str(trusted_key), expect_sha256=expect_sha256,
                   decision_log=None if decision_log is None else str(decision_log), log_text=log_text,
                   explore=explore, explore_temperature=explore_temperature,
                   default_operating_point=operating_point, sticky_margin=sticky_margin,
                   price_table=None if price_table is None else str(price_table), workers=workers, store=store)
    run_server(checkpoint, options, config)  # every check (keys, host, checkpoint) before binding the port


def feedback_import(
    file: Annotated[Path, typer.Argument(help="JSONL or CSV with request_id and score (in [0, 1]) columns.")],
    decision_log: Annotated[Path, typer.Option("--decision-log", help="The server's decision log.")],
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite scores already recorded.")] = False,
) -> None:
    """Join scores that arrived later (a judge, thumbs up/down, a test run) to logged decisions;
    a bad row (named by file and row) leaves the log unchanged."""
    from routecast.data.decision_log import DecisionLog

    with DecisionLog(decision_log) as log:
        n = log.import_feedback(file, replace=replace)
    typer.echo(f"recorded {n} feedback scores -> {decision_log}")


GROUPS = {"feedback": "Attach outcomes to the server's logged decisions."}
#: command name -> function; registered by routecast/cli.py
COMMANDS = {"route": route, "embed": embed, "export": export, "serve": serve, "keygen": keygen, "feedback import": feedback_import}
