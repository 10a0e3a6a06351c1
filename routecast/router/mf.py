"""``mf``: RouteLLM's matrix-factorisation router, generalised to many models.

``score(q, j) = w · (P e(q) ⊙ v_j/|v_j|) + b_j`` (:class:`~routecast.router.quality_net.MatrixFactorizationNet`):
the prompt embedding ``e(q)`` is projected into a small latent space and compared with a
learned embedding of each model. It learns from either kind of supervision:

* ``fit(log)`` — absolute outcomes: binary cross-entropy of ``sigmoid(score)`` against every
  logged cell (unlogged cells are masked; on a traffic log each weighed by its inverse logging
  propensity, :meth:`OutcomeLog.propensity_weights`). The predicted quality is then ``sigmoid(score)``,
  an estimate of the model's expected score on the prompt.
* ``fit_preferences(pairs)`` — pairwise preferences, as RouteLLM trains it: Bradley–Terry loss
  on ``sigmoid(score(q, a) - score(q, b))`` (a tie counts as 0.5). Only score *differences* are
  identified, so the predicted quality is ``sigmoid(score(q, j) - mean_k score(q, k))``: the
  Bradley–Terry probability that model ``j`` beats a model of average strength on this prompt.
  It orders models per prompt and is comparable across prompts, but it is a win rate, not an
  expected benchmark score; calibrate (``Router.calibrate``) before routing on budgets.

Two training paths, one objective. In one CPU process (the default trainer options,
:meth:`~routecast.router.distributed.LightningFit.set_trainer_options`: ``accelerator="cpu"``,
``devices=1``, ``num_nodes=1``, ``strategy="auto"``) a plain torch loop trains it: the network is
tiny, and Lightning's start-up and per-row data loader cost more than the training itself (see
:data:`LIGHTNING_STARTUP_NOTE`). Any other setting (``ddp``/``ddp_spawn``, several devices or
nodes, a GPU) trains with Lightning (:func:`routecast.router.lightning_module.train_module`), as
mlp does: prompts (or pairs) sharded over the ranks, ``batch_size`` the global batch, only rank 0
(or the parent of ``ddp_spawn``) keeps the weights and writes. Both paths start from the same
seeded network and minimise the same batch loss (:func:`score_batch_loss` /
:func:`preference_batch_loss`) with the same AdamW settings for ``epochs`` epochs of
``batch_size`` rows; they differ only in the shuffle order and in float summation order, so the
models are equivalent, not bit-identical (tests/scale/test_ddp.py bounds the held-out AIQ gap).

Torch is imported inside the training methods only: the lean runtime (no torch) routes a checkpoint
through its ``head.onnx`` (routecast.router.net_state), and sw-ranking imports the preference helpers here.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from routecast.errors import DataError, RoutingError
from routecast.router.base import Router
from routecast.router.distributed import LightningFit, world_size
from routecast.router.mlp import check_loss
from routecast.router.net_state import TorchNetState, require_torch
from routecast.core.registry import register_router
from routecast.router.search_space import Categorical, Float, Int
from routecast.core.tags import PolicyTags
from routecast.router.encoders.default import DEFAULT_ENCODER

_WINNER_TARGET = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}
#: why one process keeps the plain loop (measured on this 2-core machine, see the module docstring)
LIGHTNING_STARTUP_NOTE = ("benchmarks/results/mf_paths.md: default mf on llmrouter_9models (4,186 train prompts, "
                          "static embeddings) fits in 62.6 s on the plain loop and 135.1 s on Lightning in "
                          "one process, held-out AIQ 0.613 vs 0.611 (2 ddp_spawn ranks: 76.9 s, 0.611); "
                          "measured on 2 shared cores at load 17-22")


def score_batch_loss(net, batch, kind: str = "bce"):
    """Masked loss of a batch ``(embeddings, scores)`` (NaN = unlogged cell): the objective of
    ``fit`` on both training paths (module-level so ``ddp_spawn`` can pickle it)."""
    from routecast.router.quality_net import masked_quality_loss

    x, target = batch
    return masked_quality_loss(net(x), target, kind)


def preference_batch_loss(net, batch):
    """Bradley–Terry loss of a batch ``(embeddings, index of model_a, index of model_b, P(a beats b))``:
    the objective of ``fit_preferences`` on both training paths."""
    import torch
    from torch.nn import functional as F

    x, a, b, target = batch
    scores = net(x)
    rows = torch.arange(len(target), device=scores.device)
    return F.binary_cross_entropy_with_logits(scores[rows, a] - scores[rows, b], target)


def preference_arrays(pairs, models: tuple[str, ...] | None = None) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray]:
    """(models, index of model_a, index of model_b, target P(a beats b)) from a PairwiseLog.

    ``winner`` is ``"model_a"``, ``"model_b"`` or ``"tie"`` (also ``"tie (bothbad)"``, as in the
    Chatbot Arena dumps). A bad value is reported with its 1-based row.
    """
    source = getattr(pairs, "source", None)
    if models is None:
        models = tuple(getattr(pairs, "models", None) or
                       sorted(set(map(str, pairs.model_a)) | set(map(str, pairs.model_b))))
    index = {m: i for i, m in enumerate(models)}
    n = len(pairs.model_a)
    a = np.empty(n, dtype=np.int64)
    b = np.empty(n, dtype=np.int64)
    y = np.empty(n, dtype=np.float32)
    for row, (ma, mb, win) in enumerate(zip(pairs.model_a, pairs.model_b, pairs.winner)):
        for column, name, out in (("model_a", ma, a), ("model_b", mb, b)):
            if str(name) not in index:
                raise DataError(f"model {name!r} is not one of the candidate models {list(models)}",
                                path=source, row=row + 1, column=column)
            out[row] = index[str(name)]
        key = "tie" if str(win).startswith("tie") else str(win)
        if key not in _WINNER_TARGET:
            raise DataError(f"winner must be 'model_a', 'model_b' or 'tie', got {win!r}",
                            path=source, row=row + 1, column="winner")
        y[row] = _WINNER_TARGET[key]
    if len(models) < 2:
        raise RoutingError(f"routing needs at least two candidate models; the preferences name {list(models)}")
    return tuple(models), a, b, y


def pair_embeddings(router: Router, pairs, embeddings: np.ndarray | None) -> np.ndarray:
    """(n_pairs, dim) embeddings of the pairs' prompts; each distinct prompt is encoded once."""
    prompts = [str(p) for p in pairs.prompts]
    if embeddings is not None:
        X = np.asarray(embeddings, dtype=np.float32)
        if X.ndim != 2 or len(X) != len(prompts):
            raise RoutingError(f"embeddings must have one row per pair ({len(prompts)}), got shape {X.shape}")
        return X
    unique, inverse = np.unique(np.asarray(prompts, dtype=object), return_inverse=True)
    return router._embeddings_for(list(unique), None)[inverse]


def cost_vector(models: tuple[str, ...], costs: dict[str, float] | None) -> np.ndarray:
    out = np.full(len(models), np.nan)
    for j, m in enumerate(models):
        if costs and m in costs and costs[m] is not None:
            out[j] = float(costs[m])
    return out


@register_router("mf")
class MatrixFactorizationRouter(LightningFit, TorchNetState, Router):
    """Matrix factorisation of prompt x model quality (RouteLLM's MF router)."""

    tags = PolicyTags(needs_torch=True, quick_params={"epochs": 5, "dim": 16})
    search_space = {
        "dim": Int(16, 256, log=True),
        "lr": Float(1e-4, 3e-2, log=True),
        "weight_decay": Float(1e-6, 1e-1, log=True),
        "epochs": Int(5, 60, log=True),
        "batch_size": Categorical([64, 128, 256, 512]),
    }

    def __init__(self, *, dim: int = 128, lr: float = 3e-3, weight_decay: float = 1e-4,
                 epochs: int = 20, batch_size: int = 256, loss: str = "bce",
                 encoder: str = DEFAULT_ENCODER, seed: int = 0):
        # where it trains (set_trainer_options, routecast.router.distributed): anything but one CPU
        # process trains with Lightning (see the module docstring)
        self.dim = dim
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.loss = loss
        self.encoder = encoder
        self.seed = seed

    def _build_net(self, config: dict[str, Any]):
        from routecast.router.quality_net import MatrixFactorizationNet

        return MatrixFactorizationNet(**config)

    # ------------------------------------------------------ from outcomes
    def _fit(self, log, X: np.ndarray) -> None:
        check_loss(self.loss)
        torch = require_torch("training router 'mf'")
        from routecast.router.quality_net import weighted_batch_loss

        # a traffic log: each logged cell weighed by its inverse propensity (None: every cell weighs 1)
        weights = log.propensity_weights()
        x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        target = torch.from_numpy(log.scores.astype(np.float32))
        if weights is None:
            rows, objective = (x, target), score_batch_loss
        else:
            rows = (x, torch.from_numpy(np.nan_to_num(weights, nan=0.0).astype(np.float32)), target)
            objective = weighted_batch_loss
        self._train(int(X.shape[1]), len(log.models), rows, functools.partial(objective, kind=self.loss))
        self.trained_on_ = "scores"

    # --------------------------------------------------- from preferences
    def fit_preferences(self, pairs, embeddings: np.ndarray | None = None,
                        costs: dict[str, float] | None = None) -> "MatrixFactorizationRouter":
        """Learn from pairwise preferences (a ``routecast.data.PairwiseLog``: ``prompts``,
        ``model_a``, ``model_b``, ``winner``, ``models``) with the Bradley–Terry loss.
        ``embeddings``: one row per pair (of ``pairs.prompts``); computed when omitted.
        ``costs``: USD per call per model name, for cost-aware routing."""
        if len(pairs.model_a) == 0:
            raise RoutingError("cannot fit router 'mf' on an empty preference log")
        torch = require_torch("training router 'mf'")
        models, a, b, y = preference_arrays(pairs)
        X = pair_embeddings(self, pairs, embeddings)
        self.models_ = models
        self.costs_ = cost_vector(models, costs)
        self.calibration_ = None
        rows = (torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)), torch.from_numpy(a),
                torch.from_numpy(b), torch.from_numpy(y))
        self._train(int(X.shape[1]), len(models), rows, preference_batch_loss)
        self.trained_on_ = "preferences"
        return self

    # ------------------------------------------------------------ shared
    def uses_lightning(self) -> bool:
        """Whether ``fit`` trains with Lightning: any setting but one CPU process (see the module docstring)."""
        options = self.trainer_options()
        return world_size(options) > 1 or options["strategy"] != "auto" or options["accelerator"] != "cpu"

    def _train(self, in_dim: int, n_models: int, rows: tuple, batch_loss) -> None:
        """Train a fresh seeded network on ``rows`` (tensors, one row per prompt or pair) to minimise
        ``batch_loss(net, batch)``: the plain loop in one CPU process, else Lightning."""
        import torch

        lightning = self.uses_lightning()
        self.net_config_ = {"in_dim": in_dim, "n_models": n_models, "dim": int(self.dim)}
        batch = max(int(self.batch_size), 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = self._build_net(self.net_config_)
            if lightning:
                self._train_lightning(net, rows, batch_loss, batch)
            else:
                optimiser = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
                generator = torch.Generator().manual_seed(self.seed)
                n_rows = len(rows[0])
                net.train()
                for _ in range(int(self.epochs)):
                    order = torch.randperm(n_rows, generator=generator)
                    for start in range(0, n_rows, batch):
                        idx = order[start:start + batch]
                        loss = batch_loss(net, tuple(t[idx] for t in rows))
                        optimiser.zero_grad(set_to_none=True)
                        loss.backward()
                        optimiser.step()
        self.net_ = net.eval()

    def _train_lightning(self, net, rows: tuple, batch_loss, batch: int) -> None:
        """The same objective through Lightning's Trainer, distributed as the four options say."""
        from torch.utils.data import TensorDataset

        from routecast.router.lightning_module import QualityNetModule, train_module

        module = QualityNetModule(net, lr=self.lr, weight_decay=self.weight_decay, loss=batch_loss)
        # no validation split: mf trains for ``epochs`` epochs on both paths (no early stopping)
        train_module(module, TensorDataset(*rows), None, batch_size=batch, seed=int(self.seed),
                     max_epochs=int(self.epochs), trainer_options=self.trainer_options())

    # ----------------------------------------------------------- predict
    def _predict_quality(self, X: np.ndarray, texts) -> np.ndarray:
        scores = self._net_logits(X)
        if getattr(self, "trained_on_", "scores") == "preferences":
            scores = scores - scores.mean(axis=1, keepdims=True)
        return 1.0 / (1.0 + np.exp(-scores))
