"""What a cascade router stores in a checkpoint, and the checks of its meaning when it is loaded.

The format (manifest, hashes, signature, pinning, folder swap, safetensors, NaN tags) is the
kernel's (:mod:`routecast.core.checkpoint`), the same as a router's; this module is the cascade's
part of it, reached through :meth:`CascadeRouter.checkpoint_state` and
:meth:`CascadeRouter.from_checkpoint`. A cascade router writes::

    config.json          hyperparameters, pool, max_calls, kappa, look-ahead, lam, strong model,
                         posterior feature names, answer scorer state, operating curve and points,
                         the dtype and shape of every array
    weights.safetensors  posterior coefficients, spreads, draws, costs, mean quality, shifts, the
                         sampled training posteriors at every called set (``samples``; older
                         checkpoints without it load for the look-aheads that do not read it) and
                         the answer scorer's heads (``scorer.*``)
    router/              the ex-ante router, saved as a router component (its own config.json)
    scorer_encoder/      the answer scorer's encoder, shipped as a router ships its encoder

At load every field is checked against the others (pool names against the ex-ante router's
models, array shapes against the pool, indices, finite and non-negative numbers, known
hyperparameters of the right type), then one probe prompt is run through the policy: an
inconsistent checkpoint is refused with one :class:`~routecast.errors.CheckpointError` naming the
file and the field, never served.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np

from routecast.atomic import write_text
from routecast.cascade.evidence_gate import gate_state, set_gate_state
from routecast.cascade.posterior import PosteriorQuality, feature_names
from routecast.cascade.set_actions import CONDITIONAL_MODES
from routecast.core.checkpoint import CONFIG_FILE, CheckpointFolder, array_index, dump_json, is_int, \
    load_component, save_arrays, write_component
from routecast.core.curve import Curve
from routecast.data.answers import check_format
from routecast.errors import CheckpointError, ConfigError, RoutecastError, RoutingError

FORMAT = "routecast-cascade-router"
WEIGHTS_FILE, ROUTER_DIR = "weights.safetensors", "router"
#: the answer scorer's encoder, shipped like a router checkpoint's (config.json with its entry + files)
SCORER_ENCODER_DIR = "scorer_encoder"
#: most models in a cascade's pool (the policy enumerates every subset up to max_calls)
MAX_POOL = 16
#: run through the loaded policy once: arrays that do not fit each other fail at load, not in production
PROBE_PROMPT, PROBE_ANSWER = "routecast load check: what is 2 + 2?", "The answer is 4."
#: texts on which a sentence-transformers scorer encoder and its ONNX export must agree before shipping
_ONNX_PROBE = ("The answer is 42.", "I am not sure, it might perhaps be 17. [SEP] What is 6 times 7?",
               "\\boxed{3} [SEP] Solve x + 1 = 4.", "long " * 400)
_ONNX_MIN_COSINE = 0.9999


# --------------------------------------------------------------------------- save
def cascade_state(cascade: Any, folder: Path) -> dict[str, Any]:
    """Write ``cascade``'s arrays, ex-ante router and scorer encoder into ``folder``; return its
    config entries (see the module)."""
    from routecast.router.encoders.shipping import ship_encoder

    arrays = {"posterior.coef": cascade.posterior_.coef_, "posterior.intercept": cascade.posterior_.intercept_,
              "tau": cascade.tau_, "draws": cascade.draws_, "costs": cascade.costs_,
              "mean_quality": cascade.mean_quality_, "shifts": cascade.shifts_, "samples": cascade.samples_}
    gate_config, gate_arrays = gate_state(cascade)  # the evidence gate and its ex-ante twin
    arrays.update(gate_arrays)
    scorer_meta = None
    if cascade.scorer_ is not None:
        scorer_meta, scorer_arrays = cascade.scorer_.get_state()
        scorer_meta["hyperparameters"] = cascade.scorer_.get_params()
        arrays.update({f"scorer.{k}": v for k, v in scorer_arrays.items()})
        (folder / SCORER_ENCODER_DIR).mkdir()
        entry = ship_encoder(_servable_encoder(cascade.scorer_.encoder_), folder / SCORER_ENCODER_DIR)
        write_text(folder / SCORER_ENCODER_DIR / CONFIG_FILE, dump_json({"encoder": entry}))
    arrays = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}
    save_arrays(folder / WEIGHTS_FILE, arrays, what="cascade router")
    write_component(cascade.router_, folder / ROUTER_DIR)
    return {"format": FORMAT, "hyperparameters": cascade.get_params(), "pool": list(cascade.pool_),
            "max_calls": cascade.max_calls_, "kappa": cascade.kappa_, "lookahead": cascade.lookahead_,
            "lam": cascade.lam_, "strong": int(cascade.strong_), "features": feature_names(len(cascade.pool_)),
            "scorer": scorer_meta, "has_answers": bool(cascade.has_answers_),
            "operating_curve": cascade.curve_.to_dict(), "notes": list(cascade.notes_),
            "operating_points": cascade.operating_points(),
            "default_operating_point": cascade.default_operating_point(), "evidence_gate": gate_config,
            "answer_format": cascade.answer_format_,
            "weights": WEIGHTS_FILE, "arrays": array_index(arrays)}


def _servable_encoder(encoder):
    """What the checkpoint ships for the answer scorer's encoder. A sentence-transformers encoder
    (``minilm``, ``st:``) ships as its ONNX export (:class:`OnnxEncoder`, the same folder and
    ``max_chars``) so the lean runtime serves the cascade without torch; saving checks that both give
    the same embeddings (cosine >= ``_ONNX_MIN_COSINE`` on probe texts) and refuses otherwise. The
    loaded scorer then runs the ONNX graph (its encoder name is the ONNX one; the heads are unchanged).
    Every other encoder ships as it is (weights or folder, like a router's)."""
    from routecast.router.encoders.sentence_transformer import SentenceTransformerEncoder

    if not isinstance(encoder, SentenceTransformerEncoder):
        return encoder
    from routecast.router.encoders.onnx_encoder import OnnxEncoder

    onnx = OnnxEncoder(encoder.folder, max_chars=encoder.max_chars)
    a = np.asarray(encoder.encode(list(_ONNX_PROBE)), dtype=np.float64)
    b = np.asarray(onnx.encode(list(_ONNX_PROBE)), dtype=np.float64)
    cosine = (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    if float(cosine.min()) < _ONNX_MIN_COSINE:
        raise CheckpointError(f"answer scorer encoder {encoder.spec!r}: its ONNX export differs (min cosine "
                              f"{float(cosine.min()):.6f} < {_ONNX_MIN_COSINE}); cannot ship it for the lean runtime")
    return onnx


# --------------------------------------------------------------------------- meaning
_REQUIRED = ("format", "hyperparameters", "pool", "max_calls", "kappa", "lookahead", "lam", "strong", "features",
             "scorer", "has_answers", "operating_curve", "operating_points", "weights", "arrays")


def _refuse(folder: CheckpointFolder, field: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{folder.config_path}: field {field!r} {problem}")


def _number(folder: CheckpointFolder, field: str, value: Any, *, low: float = 0.0) -> float:
    """A finite JSON number >= ``low`` (a bool is not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < low:
        raise _refuse(folder, field, f"must be a finite number >= {low:g}, got {value!r}")
    return float(value)


def _check_hyperparameters(cls: type, folder: CheckpointFolder) -> dict[str, Any]:
    """Only the class's hyperparameters, each of the type of its default (a list for a tuple)."""
    hyper = folder.config["hyperparameters"]
    if not isinstance(hyper, dict):
        raise _refuse(folder, "hyperparameters", f"must be a JSON object, got {type(hyper).__name__}")
    defaults = {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self"}
    unknown = sorted(set(hyper) - set(defaults))
    if unknown:
        raise _refuse(folder, "hyperparameters", f"names unknown hyperparameter(s) {', '.join(map(repr, unknown))}; "
                      f"a {cls.__name__} takes: {', '.join(defaults)}")
    for key, value in hyper.items():
        default = defaults[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = is_int(value)
        elif isinstance(default, float):
            ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        elif isinstance(default, tuple):
            ok = isinstance(value, list)
        else:  # a string, or None for "the default of the component"
            ok = isinstance(value, str) or (default is None and value is None)
        if not ok:
            raise _refuse(folder, f"hyperparameters.{key}", f"has the wrong type: {value!r} (default {default!r})")
    return hyper


def _check_pool(folder: CheckpointFolder, router_models: list[str]) -> list[str]:
    from routecast.router.checkpoint_state import check_model_name

    pool = folder.config["pool"]
    if not isinstance(pool, list) or not 2 <= len(pool) <= MAX_POOL:
        raise _refuse(folder, "pool", f"must list 2 to {MAX_POOL} model names, got {pool!r}")
    seen: list[str] = []
    for i, name in enumerate(pool):
        check_model_name(name, seen, folder.config_path, field="pool", index=i)
        if name not in router_models:
            raise _refuse(folder, f"pool[{i}]", f"names model {name!r}, which the ex-ante router in {ROUTER_DIR}/ "
                          f"does not predict (it knows: {', '.join(router_models)})")
        seen.append(name)
    return seen


def _check_shapes(folder: CheckpointFolder, arrays: dict[str, np.ndarray], p: int, max_calls: int,
                  n_draws: int, path: Path) -> None:
    n_sets = sum(math.comb(p, size) for size in range(max_calls + 1))
    n_features = len(folder.config["features"])
    expected = {"posterior.coef": (p, n_features), "posterior.intercept": (p,), "tau": (p, p), "draws": (n_draws, p),
                "costs": (p,), "mean_quality": (p,), "shifts": (n_sets, p, n_draws, p),
                "samples": (n_draws, n_sets, p)}
    for key, shape in expected.items():
        if key == "samples" and key not in arrays and folder.config["lookahead"] not in CONDITIONAL_MODES:
            continue  # a checkpoint from before the conditional look-aheads, which never reads it
        if key not in arrays:
            raise CheckpointError(f"{path}: array {key!r} is missing")
        if arrays[key].shape != shape:
            raise CheckpointError(f"{path}: array {key!r} has shape {list(arrays[key].shape)}, expected "
                                  f"{list(shape)} for a pool of {p} models ({CONFIG_FILE} fields 'pool', "
                                  "'max_calls', 'features', 'hyperparameters.n_draws')")
    if (arrays["costs"] < 0).any():
        raise CheckpointError(f"{path}: array 'costs' holds a negative cost")


def _check_points(folder: CheckpointFolder) -> tuple[dict[str, Any], str | None]:
    points = folder.config["operating_points"]
    if not isinstance(points, dict):
        raise _refuse(folder, "operating_points", "must be a JSON object")
    for name, point in points.items():
        if not isinstance(point, dict) or not isinstance(point.get("request", {}), dict):
            raise _refuse(folder, f"operating_points.{name}", "must be an object with lam and request")
        _number(folder, f"operating_points.{name}.lam", point.get("lam"))
    default = folder.config.get("default_operating_point")
    if default is not None and default not in points:
        raise _refuse(folder, "default_operating_point", f"names {default!r}, which is not one of the operating "
                      f"points ({', '.join(points) or 'none'})")
    return points, default


def _load_scorer(folder: CheckpointFolder, arrays: dict[str, np.ndarray], pool: list[str]):
    from routecast.cascade.answer_scorer import AnswerScorer
    from routecast.router.encoders.shipping import load_encoder

    meta = folder.config["scorer"]
    if meta is None:
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("hyperparameters"), dict):
        raise _refuse(folder, "scorer", "must be null or an object with the scorer's hyperparameters and state")
    heads, logistic = meta.get("heads"), meta.get("logistic")
    if not isinstance(heads, list) or not isinstance(logistic, list) or len(heads) != len(logistic) \
            or not all(isinstance(h, str) for h in heads) or not all(isinstance(b, bool) for b in logistic):
        raise _refuse(folder, "scorer.heads", "and 'scorer.logistic' must be equally long lists of names and booleans")
    if meta.get("models") != pool:
        raise _refuse(folder, "scorer.models", f"must be the pool {pool}, got {meta.get('models')!r}")
    state = {k[len("scorer."):]: v for k, v in arrays.items() if k.startswith("scorer.")}
    want = {f"head{i}.{part}" for i in range(len(heads)) for part in ("coef", "intercept")}
    if set(state) != want or any(state[f"head{i}.intercept"].shape != (1,) or state[f"head{i}.coef"].ndim != 1
                                 for i in range(len(heads))):
        raise _refuse(folder, "scorer.heads", f"does not match the scorer arrays in {WEIGHTS_FILE} "
                      f"(want {sorted(want)} with one intercept each, have {sorted(state)})")
    encoder = load_encoder(folder.sub(SCORER_ENCODER_DIR))
    hyper = {k: v for k, v in meta["hyperparameters"].items()}
    try:
        return AnswerScorer(**hyper).set_state(meta, state, encoder=encoder)
    except (TypeError, ValueError, KeyError) as exc:
        raise _refuse(folder, "scorer", f"cannot rebuild the answer scorer: {exc}") from None


def build_cascade(cls: type, folder: CheckpointFolder) -> Any:
    """A cascade router from a verified folder, every field checked (see the module); the caller
    sets the mask index and runs :func:`probe_cascade`."""
    config = folder.config
    for key in _REQUIRED:
        if key not in config:
            raise _refuse(folder, key, "is missing")
    if config["format"] != FORMAT:
        raise _refuse(folder, "format", f"is {config['format']!r}, not {FORMAT!r}")
    self = cls(**_check_hyperparameters(cls, folder))
    try:
        self._check_params()
    except (ConfigError, TypeError, ValueError) as exc:
        raise _refuse(folder, "hyperparameters", f"are invalid: {exc}") from None
    self.router_ = load_component(folder.sub(ROUTER_DIR))
    pool = _check_pool(folder, list(self.router_.models_))
    p = len(pool)
    max_calls = config["max_calls"]
    if not is_int(max_calls) or not 1 <= max_calls <= p:
        raise _refuse(folder, "max_calls", f"must be an integer from 1 to the pool size {p}, got {max_calls!r}")
    if config["features"] != feature_names(p):
        raise _refuse(folder, "features", f"{config['features']!r} are not this routecast's posterior features "
                      f"{feature_names(p)}")
    if config["lookahead"] not in self.lookaheads:
        raise _refuse(folder, "lookahead", f"is {config['lookahead']!r}, not one of the hyperparameter "
                      f"'lookaheads' {list(self.lookaheads)}")
    strong = config["strong"]
    if not is_int(strong) or not 0 <= strong < p:
        raise _refuse(folder, "strong", f"must be a pool index from 0 to {p - 1}, got {strong!r}")
    if not isinstance(config["has_answers"], bool):
        raise _refuse(folder, "has_answers", f"must be true or false, got {config['has_answers']!r}")
    notes = config.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise _refuse(folder, "notes", "must be a list of strings")
    arrays, path = folder.arrays(config, what="weights file")
    _check_shapes(folder, arrays, p, max_calls, self.n_draws, path)
    self.pool_, self.max_calls_, self.strong_ = tuple(pool), int(max_calls), int(strong)
    self.kappa_ = _number(folder, "kappa", config["kappa"])
    self.lam_ = _number(folder, "lam", config["lam"])
    self.lookahead_, self.has_answers_, self.notes_ = config["lookahead"], config["has_answers"], list(notes)
    self.operating_points_, self.default_operating_point_ = _check_points(folder)
    self.posterior_ = PosteriorQuality(C=self.C)
    self.posterior_.coef_, self.posterior_.intercept_ = arrays["posterior.coef"], arrays["posterior.intercept"]
    self.tau_, self.draws_, self.costs_ = arrays["tau"], arrays["draws"], arrays["costs"]
    self.shifts_, self.mean_quality_, self.samples_ = arrays["shifts"], arrays["mean_quality"], arrays.get("samples")
    self.scorer_ = _load_scorer(folder, arrays, pool)
    try:
        self.answer_format_ = check_format(config.get("answer_format"))
        set_gate_state(self, config.get("evidence_gate"), arrays)
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise _refuse(folder, "evidence_gate", f"is not a valid evidence gate: {exc}") from None
    if not isinstance(config["operating_curve"], dict):
        raise _refuse(folder, "operating_curve", "must be a JSON object")
    try:
        self.curve_ = Curve.from_dict(config["operating_curve"])
    except (RoutingError, KeyError, TypeError, ValueError) as exc:
        raise _refuse(folder, "operating_curve", f"is not a valid operating curve: {exc}") from None
    if not 0 <= self.curve_.strong < p:
        raise _refuse(folder, "operating_curve.strong", f"= {self.curve_.strong} is not a pool index")
    self.lams_ = self.curve_.lams.copy()
    return self


def probe_cascade(cascade: Any, folder: CheckpointFolder) -> Any:
    """Run one prompt through the loaded policy (every call answered with a fixed text): arrays that
    do not fit each other, or that overflow, are refused here."""
    try:
        outcome = cascade.run(PROBE_PROMPT, lambda model, prompt: PROBE_ANSWER)
        finite = all(math.isfinite(q) for q in outcome.posterior.values())
    except (RoutecastError, ValueError, TypeError, IndexError, KeyError, FloatingPointError) as exc:
        raise CheckpointError(f"{folder.root / WEIGHTS_FILE}: the cascade's arrays do not fit each other "
                              f"({CONFIG_FILE} fields 'pool', 'features', 'scorer'): {exc}") from None
    if not finite:
        raise CheckpointError(f"{folder.root / WEIGHTS_FILE}: the cascade predicts a non-finite quality for a "
                              "plain prompt (overflowing weights)")
    return cascade
