"""``mlp``: a small neural network on the prompt embedding predicts every model's quality.

One shared trunk and one sigmoid head per model (:class:`~routecast.router.quality_net.QualityMLP`),
trained with PyTorch Lightning on the logged outcomes; cells that were not logged (NaN) are
masked out of the loss, and on a traffic log each logged cell is weighed by its inverse logging
propensity (:meth:`OutcomeLog.propensity_weights`). A seeded share of the training prompts is held
out inside ``fit`` for early stopping, and the weights of the best validation epoch are kept.

Prediction needs only torch: Lightning is imported inside ``fit`` and nowhere else. Torch itself
is imported inside ``fit``/``_build_net`` only, so the lean runtime (no torch) loads a checkpoint
and routes through its ``head.onnx`` (routecast.router.net_state).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import numpy as np

from routecast.errors import ConfigError
from routecast.router.base import Router
from routecast.router.distributed import LightningFit
from routecast.router.net_state import TorchNetState, require_torch
from routecast.router.inner_split import split_validation  # noqa: F401 - re-exported
from routecast.core.registry import register_router
from routecast.router.search_space import Categorical, Float, Int
from routecast.core.tags import PolicyTags
from routecast.router.encoders.default import DEFAULT_ENCODER


def check_loss(loss: str) -> None:
    if loss not in ("bce", "mse"):
        raise ConfigError(f"loss must be 'bce' or 'mse', got {loss!r}")


@register_router("mlp")
class MlpRouter(LightningFit, TorchNetState, Router):
    """Multi-head MLP on sentence embeddings; predicted quality = sigmoid(head) per model."""

    tags = PolicyTags(needs_torch=True, quick_params={"max_epochs": 5, "hidden_dim": 32})
    search_space = {
        "hidden_dim": Int(64, 1024, log=True),
        "n_layers": Int(1, 3),
        "dropout": Float(0.0, 0.5),
        "lr": Float(1e-4, 1e-2, log=True),
        "weight_decay": Float(1e-6, 1e-1, log=True),
        "batch_size": Categorical([64, 128, 256, 512]),
    }

    def __init__(self, *, hidden_dim: int = 256, n_layers: int = 2, dropout: float = 0.1,
                 lr: float = 1e-3, weight_decay: float = 1e-4, max_epochs: int = 100,
                 batch_size: int = 256, patience: int = 5, val_fraction: float = 0.1,
                 loss: str = "bce", encoder: str = DEFAULT_ENCODER, seed: int = 0):
        # where it trains (accelerator, devices, ...) is set_trainer_options (routecast.router.distributed)
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.loss = loss
        self.encoder = encoder
        self.seed = seed

    # ----------------------------------------------------------------- fit
    def fit_with_callbacks(self, log, embeddings: np.ndarray | None = None,
                           callbacks: Sequence[Any] | None = None) -> "MlpRouter":
        """``fit``, with extra Lightning callbacks handed to the Trainer (e.g. the tuner's
        :class:`routecast.router.lightning_module.OptunaPruningCallback`, which watches
        ``val_loss``). Callbacks are not hyperparameters, so they are not in ``__init__`` and
        are not kept after training."""
        self._trainer_callbacks = list(callbacks or [])
        try:
            return self.fit(log, embeddings)
        finally:
            del self._trainer_callbacks

    def _build_net(self, config: dict[str, Any]):
        from routecast.router.quality_net import QualityMLP

        return QualityMLP(**config)

    def _fit(self, log, X: np.ndarray) -> None:
        check_loss(self.loss)
        options = self.trainer_options()
        torch = require_torch(f"training router {self.name!r}")
        from torch.utils.data import TensorDataset

        from routecast.router.lightning_module import QualityNetModule, train_module
        from routecast.router.quality_net import weighted_batch_loss

        scores = log.scores.astype(np.float32)
        # a traffic log: each logged cell weighed by its inverse propensity (None: every cell weighs 1)
        weights = log.propensity_weights()
        columns = (scores,) if weights is None else (np.nan_to_num(weights, nan=0.0).astype(np.float32), scores)
        train_idx, val_idx = split_validation(log.n_prompts, self.val_fraction, self.seed)
        self.net_config_ = {"in_dim": int(X.shape[1]), "n_models": int(log.n_models),
                            "hidden_dim": int(self.hidden_dim), "n_layers": int(self.n_layers),
                            "dropout": float(self.dropout)}
        with torch.random.fork_rng(devices=[]):  # seed locally, leave the global RNG alone
            torch.manual_seed(self.seed)
            net = self._build_net(self.net_config_)
            train = TensorDataset(torch.from_numpy(np.ascontiguousarray(X[train_idx], dtype=np.float32)),
                                  *(torch.from_numpy(c[train_idx]) for c in columns))
            val = None
            if len(val_idx):
                val = TensorDataset(torch.from_numpy(np.ascontiguousarray(X[val_idx], dtype=np.float32)),
                                    *(torch.from_numpy(c[val_idx]) for c in columns))
            loss = self.loss if weights is None else partial(weighted_batch_loss, kind=self.loss)
            module = QualityNetModule(net, lr=self.lr, weight_decay=self.weight_decay, loss=loss)
            report = train_module(module, train, val, batch_size=int(self.batch_size),
                                  val_batch_size=max(len(val_idx), 1), seed=int(self.seed),
                                  max_epochs=int(self.max_epochs), patience=int(self.patience),
                                  callbacks=getattr(self, "_trainer_callbacks", None),
                                  trainer_options=options)
        self.net_ = net.eval()
        self.epochs_ = report.epochs
        self.best_epoch_ = report.best_epoch
        self.best_val_loss_ = report.best_val_loss

    # ------------------------------------------------------------- predict
    def _predict_quality(self, X: np.ndarray, texts) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self._net_logits(X)))
