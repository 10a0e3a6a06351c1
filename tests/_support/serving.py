"""Shared pieces of the serving and reliability tests: a tiny registered router (``test-tiny``), a
synthetic log whose best model depends on the prompt, a fitted knn checkpoint, and a real uvicorn
server in a thread on a free loopback port.

Importing this module registers ``test-tiny``; a subprocess that loads a ``test-tiny`` checkpoint
imports it first (``import tests._support.serving``, with ``cwd=REPO``)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from routecast.data.outcome_log import OutcomeLog
from routecast.router.base import Router
from routecast.core.registry import register_router
from tests._support.fake_backend import free_port

ENCODER = "hashing:dim=128"
MODELS = ("small", "medium", "large")
COSTS = (0.0001, 0.001, 0.01)

MATH = ["Solve for x: {a}x + {b} = {c}", "What is the integral of x^{a} from 0 to {b}?",
        "Compute {a} * {b} - {c} and explain each step", "Prove that the sum of the first {a} odd numbers is a square"]
CHAT = ["Write a friendly greeting for my friend {name}", "Suggest a name for a cat that likes {thing}",
        "Say hello to {name} in a cheerful way", "Give me a short poem about {thing}"]
NAMES = ["Ana", "Bo", "Chen", "Dara", "Eli", "Femi"]
THINGS = ["boxes", "rain", "sunlight", "fish", "yarn", "music"]


@register_router("test-tiny")
class TinyRouter(Router):
    """Per-model least-squares head on embeddings: enough learned arrays to test checkpoints."""

    def __init__(self, alpha: float = 1.0, encoder: str = ENCODER):
        self.alpha = alpha
        self.encoder = encoder

    def _fit(self, log, X):
        y = np.nan_to_num(log.scores, nan=0.5)
        A = X.T @ X + self.alpha * np.eye(X.shape[1])
        self.coef_ = np.linalg.solve(A, X.T @ (y - y.mean(axis=0))).astype(np.float32)
        self.intercept_ = y.mean(axis=0).astype(np.float32)

    def _predict_quality(self, X, texts):
        return X @ self.coef_ + self.intercept_


def prompts_of(kind: str, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    templates = MATH if kind == "math" else CHAT
    out = []
    for i in range(n):
        t = templates[i % len(templates)]
        out.append(t.format(a=int(rng.integers(2, 99)), b=int(rng.integers(2, 99)), c=int(rng.integers(2, 99)),
                            name=NAMES[int(rng.integers(len(NAMES)))], thing=THINGS[int(rng.integers(len(THINGS)))]))
    return out


def synthetic_log(n: int = 120, seed: int = 0) -> OutcomeLog:
    """Math prompts: only 'large' is right; chat prompts: every model is right (so cost decides)."""
    math, chat = prompts_of("math", n // 2, seed), prompts_of("chat", n - n // 2, seed + 1)
    prompts = math + chat
    scores = np.zeros((n, 3))
    scores[: len(math)] = [0.0, 0.2, 1.0]
    scores[len(math):] = [1.0, 1.0, 1.0]
    costs = np.tile(COSTS, (n, 1))
    return OutcomeLog(prompt_ids=[f"p{i}" for i in range(n)], prompts=prompts, models=MODELS,
                      scores=scores, costs=costs, source="<synthetic>")


def fitted_knn():
    from routecast.core.registry import make_router

    return make_router("knn", k=5, encoder=ENCODER).fit(synthetic_log())


def make_checkpoint(path: Path, router=None) -> Path:
    from routecast.core.checkpoint import save_checkpoint

    return save_checkpoint(router if router is not None else fitted_knn(), path)


def quality_checkpoint(path: Path) -> Path:
    """A knn checkpoint with one operating point, ``quality`` (lam 0), its default."""
    router = fitted_knn()
    router.add_operating_point("quality", {"lam": 0.0})
    return make_checkpoint(path, router)


class ServerThread:
    """A real uvicorn server for ``app`` on 127.0.0.1 and a free port, in a daemon thread."""

    def __init__(self, app, port: int | None = None, options: dict | None = None):
        import uvicorn

        self.port = port or free_port()
        from routecast.serving.app import UVICORN_OPTIONS

        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=2, **(options or UVICORN_OPTIONS))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serving(checkpoint, backends=None, settings=None, api_keys=None):
    """A real server; ``settings``' connection limits (header deadline, keep-alive) apply too."""
    from routecast.serving.app import create_app, uvicorn_options

    app = create_app(checkpoint, settings, backends=backends, api_keys=api_keys)
    with ServerThread(app, options=uvicorn_options(settings)) as server:
        yield server


def backends_for(mapping: dict, timeout: float = 2.0) -> dict:
    """``{model: FakeBackend or url}`` -> a backends config mapping."""
    out = {}
    for model, backend in mapping.items():
        url = backend if isinstance(backend, str) else backend.base_url
        out[model] = {"base_url": url, "timeout": timeout}
    return {"backends": out}


# --------------------------------------------------------------------------- real data
#: small settings so torch routers train in about a second
FAST_PARAMS = {"max_epochs": 3, "epochs": 3, "hidden_dim": 32, "dim": 16, "n_auto": 5, "newton_steps": 5,
               "max_prompts": 200}


def real_small_log(n: int = 160):
    """A seeded ``n``-prompt slice of the built-in llmrouter_9models log (real outcomes)."""
    from routecast.data import load_log

    log = load_log("llmrouter_9models")
    idx = np.sort(np.random.default_rng(3).choice(log.n_prompts, size=n, replace=False))
    return log.subset(idx)

