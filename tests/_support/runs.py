"""A run folder as ``routecast train --out`` writes it, built directly (no CLI, no tracking)."""

from __future__ import annotations

from pathlib import Path


def make_run(out: Path, *, data: str, router: str, params: dict | None, encoder: str, settings: dict):
    """Fit ``router`` on ``data``'s train split and write ``out/router`` + ``out/run.json``.
    Returns ``(router, prepared)``."""
    from routecast.atomic import write_json
    from routecast.core.checkpoint import save_checkpoint
    from routecast.router.pipeline import fit_router, prepare, router_params

    prepared = prepare(data, encoder=encoder, **settings)
    fitted, seconds = fit_router(router, params, prepared)
    save_checkpoint(fitted, out / "router")
    write_json(out / "run.json", {"data": data, "router": router, "params": router_params(router, params, prepared),
                                  "encoder": encoder, "split": settings, "train_seconds": seconds})
    return fitted, prepared
