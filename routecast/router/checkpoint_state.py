"""What a router stores in a checkpoint, and the checks of its meaning when it is loaded.

The checkpoint format (manifest, hashes, signature, folder swap, safetensors) is the kernel's
(:mod:`routecast.core.checkpoint`); this module is a router's part of it, reached through the
hooks :meth:`Router.checkpoint_state` and :meth:`Router.from_checkpoint`. A router writes::

    config.json          family, hyperparameters, learned JSON state (``Router.get_state()[0]``),
                         the dtype and shape of every array, candidate models with expected costs,
                         encoder entry, ONNX head entry
    model.safetensors    the router's learned arrays (``Router.get_state()[1]``)
    encoder.safetensors  only when the encoder carries weights (routecast.router.encoders.shipping)
    encoder_model/       ``st:`` encoders read from a folder: a copy of it; ``onnx`` encoders: the ONNX
                         graph they run (float or int8) + tokenizer.json + routecast_onnx.json
    head.onnx            routers with a torch network (mlp, mf, irt): routecast.router.onnx_head

At load (:func:`build_router`) it checks the meaning of a verified folder: finite arrays of the
declared shape and dtype, unique printable model names, costs that agree, encoder files inside the
folder, heads that fit the encoder (one probe prompt is routed), a finite calibration curve, and
that the router takes its state exactly as saved. Every refusal names the file and the field.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from routecast.core.checkpoint import CONFIG_FILE, CheckpointFolder, array_index, save_arrays
from routecast.errors import CheckpointError, ConfigError, RoutingError
from routecast.router.encoders.shipping import load_encoder, ship_encoder
from routecast.router.onnx_head import ONNX_HEAD_FILE, write_onnx_head

WEIGHTS_FILE = "model.safetensors"
MAX_MODEL_NAME = 256
#: routed once at load: a head whose shapes disagree with the encoder fails here, not in production
PROBE_PROMPT = "routecast load check: what is 2 + 2?"
#: arrays in which NaN means "not logged" / "unknown"; a router class may add its own
#: (``nan_ok_arrays``, e.g. knn's logged score matrix). Infinities are never allowed.
NAN_OK_ARRAYS = frozenset({"costs_"})


# --------------------------------------------------------------------------- save
def router_state(router: Any, folder: Path, *, onnx: bool = False) -> dict[str, Any]:
    """Write ``router``'s arrays, encoder and ONNX head into ``folder``; return its config entries.

    Routers whose head is a torch network on embeddings (``net_``: mlp, mf, irt) always get
    ``head.onnx``; ``onnx=True`` demands it (an error for other routers).
    """
    name = type(router).name or ""
    if getattr(router, "evaluation_only", False):
        raise CheckpointError(f"router {name!r} is evaluation-only (it reads the answers it is scored on) "
                              "and cannot be exported or served")
    try:
        meta, arrays = router.get_state()
    except TypeError as exc:
        raise CheckpointError(f"router {name!r} state is not serialisable: {exc}") from None
    models = list(router.models_)
    costs = np.asarray(getattr(router, "costs_", np.full(len(models), np.nan)), dtype=np.float64)
    if costs.ndim != 1 or len(costs) != len(models):
        costs = np.full(len(models), np.nan)
    encoder = router.get_encoder() if getattr(router, "uses_embeddings", True) else None
    save_arrays(folder / WEIGHTS_FILE, arrays, what="router")
    return {
        "family": getattr(router, "family", None),
        "hyperparameters": router.get_params(),
        "state": meta,
        "arrays": array_index(arrays),
        "weights": WEIGHTS_FILE,
        "models": [{"name": m, "expected_cost": float(c)} for m, c in zip(models, costs)],
        "encoder": None if encoder is None else ship_encoder(encoder, folder),
        "onnx_head": write_onnx_head(router, folder / ONNX_HEAD_FILE, required=onnx),
    }


# --------------------------------------------------------------------------- meaning
def check_models(config: dict, cfg_path: Path) -> tuple[list[str], np.ndarray]:
    """Model names unique, stripped, printable; expected costs non-negative, finite or unknown (NaN/null)."""
    models = config["models"]
    if not isinstance(models, list) or len(models) < 2:
        raise CheckpointError(f"{cfg_path}: field 'models' must list at least two candidate models")
    names, costs = [], []
    for i, entry in enumerate(models):
        where = f"models[{i}]"
        if not isinstance(entry, dict):
            raise CheckpointError(f"{cfg_path}: field {where!r} must be an object with name and expected_cost")
        name = entry.get("name")
        check_model_name(name, names, cfg_path, field="models", index=i, suffix=".name")
        cost = entry.get("expected_cost")
        if cost is None:
            cost = math.nan  # declared unknown
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or math.isinf(cost) or cost < 0:
            raise CheckpointError(f"{cfg_path}: field '{where}.expected_cost' must be a non-negative finite number "
                                  f"or unknown (NaN/null), got {cost!r}")
        names.append(name)
        costs.append(float(cost))
    return names, np.asarray(costs, dtype=np.float64)


def check_model_name(name: Any, seen: list[str], cfg_path: Path, *, field: str, index: int, suffix: str = "") -> None:
    """``field[index]`` of config.json names a model: a non-empty stripped printable string of at most
    MAX_MODEL_NAME characters, not in ``seen`` (the names before it)."""
    where = f"{field}[{index}]{suffix}"
    if not isinstance(name, str) or not name or len(name) > MAX_MODEL_NAME:
        raise CheckpointError(f"{cfg_path}: field '{where}' must be a non-empty string of at most "
                              f"{MAX_MODEL_NAME} characters, got {name!r}")
    if name != name.strip() or not name.isprintable():
        raise CheckpointError(f"{cfg_path}: field '{where}' {name!r} has surrounding spaces or control "
                              "characters (CR, LF, tabs...); model names must be stripped and printable")
    if name in seen:
        raise CheckpointError(f"{cfg_path}: field '{where}': model {name!r} is listed twice "
                              f"(first as {field}[{seen.index(name)}])")


def _check_costs(router: Any, config_costs: np.ndarray, cfg_path: Path, weights: Path) -> None:
    costs = np.asarray(getattr(router, "costs_", config_costs), dtype=np.float64)
    if costs.shape != config_costs.shape:
        raise CheckpointError(f"{weights}: array 'costs_' has shape {list(costs.shape)}, {CONFIG_FILE} lists "
                              f"{len(config_costs)} models")
    if (costs < 0).any() or np.isinf(costs).any():
        raise CheckpointError(f"{weights}: array 'costs_' holds a negative or infinite cost")
    same = (np.isnan(costs) == np.isnan(config_costs)) & (np.isnan(costs) | np.isclose(costs, config_costs, rtol=1e-9,
                                                                                      atol=0.0))
    if not same.all():
        i = int(np.flatnonzero(~same)[0])
        raise CheckpointError(f"{cfg_path}: field 'models[{i}].expected_cost' is {float(config_costs[i])!r} but "
                              f"array 'costs_' in {weights.name} says {float(costs[i])!r}; the costs disagree")


def _check_calibration(router: Any, n_models: int, cfg_path: Path) -> None:
    calibration = getattr(router, "calibration_", None)
    if calibration is None:
        return
    from routecast.core.curve import Curve

    if not isinstance(calibration, dict):
        raise CheckpointError(f"{cfg_path}: field 'state.calibration_' must be an object or null")
    try:
        curve = Curve.from_dict(calibration)
    except (RoutingError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path}: field 'state.calibration_' is not a valid operating curve: {exc}") from None
    if not -1 <= curve.strong < n_models:
        raise CheckpointError(f"{cfg_path}: field 'state.calibration_.strong' = {curve.strong} is not a model index")


def _probe(router: Any, n_models: int, weights: Path, dim: Any) -> None:
    """Route one prompt: a head that does not fit the encoder, or that overflows, fails at load."""
    try:
        # encoded here, as the runtime does: never through the on-disk embedding cache at load time
        X = router.get_encoder().encode([PROBE_PROMPT]) if getattr(router, "uses_embeddings", True) else None
        quality = np.asarray(router.predict_quality([PROBE_PROMPT], embeddings=X), dtype=np.float64)
    except (ValueError, TypeError, IndexError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{weights}: the router's arrays do not fit its encoder ({CONFIG_FILE} field "
                              f"'encoder.dim' = {dim}): {exc}") from None
    if quality.shape != (1, n_models):
        raise CheckpointError(f"{weights}: the router predicts shape {list(quality.shape)} for one prompt, "
                              f"expected [1, {n_models}] ({CONFIG_FILE} field 'models')")
    if not np.isfinite(quality).all():
        raise CheckpointError(f"{weights}: the router predicts a non-finite quality for a plain prompt "
                              "(overflowing or NaN weights)")


def _attach_onnx_head(router: Any, folder: CheckpointFolder, router_type: str) -> None:
    """``head.onnx`` must stay inside the folder; routed with, torch or not (routecast.router.net_state)."""
    cfg_path = folder.config_path
    onnx_entry = folder.config.get("onnx_head")
    if onnx_entry is not None:
        if not isinstance(onnx_entry, dict):
            raise CheckpointError(f"{cfg_path}: field 'onnx_head' must be an object")
        head_rel, head_path = folder.referenced(onnx_entry.get("file"), what="ONNX head file")
        from routecast.router.net_state import has_torch_net

        if has_torch_net(router):
            router.attach_onnx_head(folder.blobs[head_rel], onnx_entry, source=str(head_path))
    if getattr(router, "needs_onnx_head", False):
        raise CheckpointError(f"{cfg_path}: router {router_type!r} has a torch network, torch is not installed "
                              "here and the checkpoint has no head.onnx (field 'onnx_head' is null); re-save it "
                              "where torch is installed (routecast export --onnx), or install the training "
                              "extra: pip install 'routecast[train]'")


def build_router(folder: CheckpointFolder) -> Any:
    """Semantic validation of a verified folder, then the router (and its encoder) built from its bytes
    (its class through the registry, by the name in ``router_type``)."""
    from routecast.core.registry import make_router

    config, cfg_path = folder.config, folder.config_path
    for key in ("router_type", "hyperparameters", "state", "arrays", "weights", "models"):
        if key not in config:
            raise CheckpointError(f"{cfg_path}: field {key!r} is missing")
    router_type = config["router_type"]
    hyper = config["hyperparameters"]
    if not isinstance(hyper, dict) or not isinstance(config["state"], dict):
        raise CheckpointError(f"{cfg_path}: fields 'hyperparameters' and 'state' must be JSON objects")
    model_names, config_costs = check_models(config, cfg_path)
    try:
        router = make_router(router_type, **hyper)
    except ConfigError as exc:
        raise CheckpointError(f"{cfg_path}: router_type {router_type!r} cannot be built: {exc}") from None
    if getattr(router, "evaluation_only", False):
        raise CheckpointError(f"{cfg_path}: router {router_type!r} is evaluation-only and cannot be served")

    nan_ok = NAN_OK_ARRAYS | frozenset(getattr(router, "nan_ok_arrays", ()))
    arrays, weights = folder.arrays(config, what="weights file", nan_ok=nan_ok)
    try:
        router.set_state(config["state"], arrays)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{weights}: router {router_type!r} rejected the state: {exc}") from None
    if not hasattr(router, "models_"):
        raise CheckpointError(f"{cfg_path}: field 'state.models_' is missing (not a fitted router)")
    if model_names != list(router.models_):
        raise CheckpointError(f"{cfg_path}: field 'models' {model_names} disagrees with 'state.models_' "
                              f"{list(router.models_)}")
    _check_costs(router, config_costs, cfg_path, weights)
    _check_calibration(router, len(model_names), cfg_path)
    # strict: what the router would save now must be exactly what was loaded
    try:
        meta_now, arrays_now = router.get_state()
    except TypeError as exc:
        raise CheckpointError(f"{cfg_path}: router {router_type!r} state is inconsistent: {exc}") from None
    if set(arrays_now) != set(arrays) or set(meta_now) != set(config["state"]):
        raise CheckpointError(
            f"{cfg_path}: router {router_type!r} did not take the state as saved "
            f"(arrays now {sorted(arrays_now)}, saved {sorted(arrays)}; "
            f"meta now {sorted(meta_now)}, saved {sorted(config['state'])})")
    _attach_onnx_head(router, folder, router_type)
    dim = None
    if getattr(router, "uses_embeddings", True):
        router.encoder_ = load_encoder(folder)
        dim = router.encoder_.dim
    _probe(router, len(model_names), weights, dim)
    return router
