"""The serving runtime: a verified checkpoint, an encoder and a decision rule; nothing else.

``routecast.load(path)`` returns a :class:`Runtime`. It imports numpy, safetensors, the router's
own module and its encoder only: never Lightning, optuna or mlflow (a test checks this in a fresh
interpreter), so a router ships as a small, fast dependency of an inference service.

Small batches run with BLAS limited to one thread: a (1, d) x (d, n) product takes ~0.2 ms on one
thread but ~12 ms with OpenBLAS's worker threads spinning on a busy 2-core machine (measured in
benchmarks/serving.py), and a server routes one prompt per request. Large batches keep every thread.

Encoding and the router head are timed separately (:attr:`Runtime.last_timing`) because they
have very different costs (a MiniLM forward pass versus a matrix product) and benchmarks report
both.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from routecast.core.curve import Curve
from routecast.errors import RoutingError

#: batches up to this many prompts are routed with single-threaded BLAS (see module docstring)
SMALL_BATCH = 64


def prompt_list(texts: Sequence[str] | str) -> list[str]:
    """One prompt or a sequence of prompts as a list, every item checked to be a string (the error
    names the first bad one: a JSON body with a number in ``input`` must not reach the encoder)."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise RoutingError(f"prompt #{bad[0] + 1} is {type(texts[bad[0]]).__name__}, expected a string")
    return texts


@dataclass
class Timing:
    """Seconds spent in the last ``route`` call: embedding the prompts, then the router head."""

    n_prompts: int = 0
    encode_seconds: float = 0.0
    head_seconds: float = 0.0

    @property
    def total_seconds(self) -> float:
        return self.encode_seconds + self.head_seconds


class Runtime:
    """A loaded router ready to route prompts; serves through
    :class:`routecast.serving.runtime_protocol.ServingRuntime`.

    ``route`` returns one dict per prompt, exactly :meth:`routecast.router.base.RouteResult.records`:
    ``model`` (chosen), ``rank`` (its rank by predicted quality), ``predicted_quality`` (model ->
    quality), ``expected_cost`` (of the chosen model), ``lam`` (willingness to pay used),
    ``operating_point`` and ``ranking`` (every model, best utility ``quality - lam * cost`` first:
    the fallback order).
    """

    def __init__(self, router, *, path: str | os.PathLike | None = None, config: dict | None = None,
                 manifest_sha256: str | None = None):
        self.router = router
        self.path = None if path is None else Path(path)
        self.config = config or {}
        #: sha256 of the checkpoint's manifest.json as loaded (what --expect-sha256 pins); None in memory
        self.manifest_sha256 = manifest_sha256
        self.models: tuple[str, ...] = tuple(router.models_)
        self.router_type: str = type(router).name
        self.encoder = router.get_encoder() if router.uses_embeddings else None
        self.last_timing = Timing()
        # a torch encoder is not guaranteed re-entrant; routing is CPU-bound, so serialising it costs nothing
        self._lock = threading.Lock()
        self._blas = _blas_controller()
        calibration = getattr(router, "calibration_", None)
        self._budget_curve = None if calibration is None else Curve.from_dict(calibration)

    @property
    def max_calls_per_chat(self) -> int:
        return 1  # one call, with fallbacks only when it fails

    @property
    def expected_costs(self) -> dict[str, float | None]:
        costs = np.asarray(self.router.costs_, dtype=np.float64)
        return {m: (None if np.isnan(c) else float(c)) for m, c in zip(self.models, costs)}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(list(texts))

    def route(self, texts: Sequence[str] | str, *, lam: float | None = None, budget: float | None = None,
              strong_share: float | None = None, target_quality: float | None = None,
              operating_point: str | None = None) -> list[dict[str, Any]]:
        """Choose a model for each prompt (see :meth:`routecast.router.base.Router.route`)."""
        texts = prompt_list(texts)
        if not texts:
            return []
        small = self._blas is not None and len(texts) <= SMALL_BATCH
        with self._lock, (self._blas.limit(limits=1) if small else contextlib.nullcontext()):
            t0 = time.perf_counter()
            embeddings = self.encode(texts) if self.encoder is not None else None
            t1 = time.perf_counter()
            quality = self.router.predict_quality(texts, embeddings=embeddings)
            result = self.router.route_from_quality(quality, lam=lam, budget=budget, strong_share=strong_share,
                                                    target_quality=target_quality, operating_point=operating_point)
            records = result.records()  # the one result shape (RouteResult.records), ranking included
            t2 = time.perf_counter()
            self.last_timing = Timing(len(texts), t1 - t0, t2 - t1)
        return records

    def route_batch(self, texts: Sequence[str], *, batch_size: int = 256, **kwargs) -> list[dict[str, Any]]:
        """``route`` in chunks of ``batch_size`` (bounded memory for the encoder)."""
        if batch_size < 1:
            raise RoutingError("batch_size must be >= 1")
        texts = list(texts)
        out: list[dict[str, Any]] = []
        for start in range(0, len(texts), batch_size):
            out.extend(self.route(texts[start:start + batch_size], **kwargs))
        return out

    def operating_point(self, name: str) -> dict[str, Any]:
        """The router's stored operating point ``name`` (unknown: a RoutecastError naming the known ones)."""
        return self.router.operating_point(name)

    def budget_curve(self) -> Curve | None:
        """The calibration curve (None: an uncalibrated router meets budgets on each batch's predictions)."""
        return self._budget_curve

    async def answer_chat(self, server, chat):
        """A router's call plan: decide, then one call with fallback down the ranking (routecast.serving.chat_plan)."""
        from routecast.serving.chat_plan import answer_with_plan, routed_plan

        return await answer_with_plan(server, chat, await routed_plan(server, chat))

    def describe(self) -> dict[str, Any]:
        return {"router_type": self.router_type, "models": list(self.models),
                "expected_costs": self.expected_costs,
                "encoder": None if self.encoder is None else self.encoder.spec,
                "calibrated": getattr(self.router, "calibration_", None) is not None,
                "operating_points": {name: point["lam"] for name, point in self.router.operating_points().items()},
                "default_operating_point": self.router.default_operating_point(),
                "checkpoint": None if self.path is None else str(self.path)}


def _blas_controller():
    """threadpoolctl's controller of the BLAS libraries only, if present; None disables the small-batch
    limit. Selected once here: a limit reads the state of every library its controller holds, and with
    torch loaded (libgomp) limiting a controller of BLAS alone is ~25% cheaper per ``route`` call."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover
        return None
    try:
        return ThreadpoolController().select(user_api="blas")
    except Exception:  # pragma: no cover - exotic BLAS builds
        return None


def load(path: str | os.PathLike, *, trusted_key: str | os.PathLike | None = None,
         expect_sha256: str | None = None) -> Runtime:
    """Verify, validate and load an exported checkpoint folder (see :mod:`routecast.core.checkpoint`).

    ``expect_sha256`` (the manifest's sha256) or ``trusted_key`` (an ed25519 public key file the
    folder's signature must verify against) make the load authenticated, not only integrity-checked.
    """
    from routecast.core.checkpoint import open_checkpoint

    loaded = open_checkpoint(path, trusted_key=trusted_key, expect_sha256=expect_sha256)
    return Runtime(loaded.router, path=path, config=loaded.config, manifest_sha256=loaded.manifest_sha256)
