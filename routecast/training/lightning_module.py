"""Lightning training of the plain quality networks (routecast.router.quality_net).

Only this module imports pytorch_lightning, and routers import it only inside ``fit``: a
trained router predicts, loads and serves with torch alone. The LightningModule here owns the
optimisation (masked loss, AdamW, logging); the network it trains stays a plain ``nn.Module``.

``train_module`` wraps the Trainer set-up every router shares: CPU, no logger, no checkpoint
files, deterministic, early stopping on the validation loss with the best weights restored, a
progress bar only when a human is watching, and optional extra callbacks (e.g.
:class:`OptunaPruningCallback` from the tuner).
"""

from __future__ import annotations

import copy
import logging
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from routecast.router.quality_net import masked_quality_loss


class QualityNetModule(pl.LightningModule):
    """Trains ``net`` (batch inputs -> (b, n_models) logits) against masked quality targets.

    A batch is ``(*inputs, target)``; ``target`` is (b, n_models) with NaN for unlogged cells,
    which the loss ignores (see :func:`masked_quality_loss`). ``lr_overrides`` maps a submodule
    name of ``net`` (e.g. ``"head"``) to its own learning rate: a freshly initialised head next
    to a pre-trained encoder needs a much larger step than the encoder.
    """

    def __init__(self, net: nn.Module, *, lr: float = 1e-3, weight_decay: float = 0.0,
                 loss: str = "bce", lr_overrides: dict[str, float] | None = None):
        super().__init__()
        self.net = net
        self.lr = lr
        self.weight_decay = weight_decay
        self.loss_kind = loss
        self.lr_overrides = dict(lr_overrides or {})

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.net(*inputs)

    def _loss(self, batch) -> torch.Tensor:
        *inputs, target = batch
        return masked_quality_loss(self.net(*inputs), target, self.loss_kind)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[-1]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch[-1]))
        return loss

    def configure_optimizers(self):
        groups, taken = [], set()
        for prefix, lr in self.lr_overrides.items():
            params = [p for name, p in self.net.named_parameters()
                      if name == prefix or name.startswith(prefix + ".")]
            taken.update(id(p) for p in params)
            groups.append({"params": params, "lr": lr})
        rest = [p for p in self.net.parameters() if id(p) not in taken]
        return torch.optim.AdamW([{"params": rest, "lr": self.lr}, *groups], lr=self.lr,
                                 weight_decay=self.weight_decay)


class _RestoreBest(pl.Callback):
    """Keep a copy of the weights at the best validation loss and put them back at the end:
    early stopping alone would return the weights of the last, already-worse epochs."""

    def __init__(self, monitor: str = "val_loss"):
        self.monitor = monitor
        self.best = float("inf")
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or trainer.sanity_checking:
            return
        value = float(value)
        if value < self.best:
            self.best, self.best_epoch = value, trainer.current_epoch
            self.state = copy.deepcopy(pl_module.state_dict())

    def on_fit_end(self, trainer, pl_module):
        if self.state is not None:
            pl_module.load_state_dict(self.state)


class OptunaPruningCallback(pl.Callback):
    """Report the validation loss of every epoch to an optuna trial and prune bad trials.

    optuna_integration's ``PyTorchLightningPruningCallback`` is written against the
    ``lightning`` package, not the ``pytorch_lightning`` package routecast trains with, so the
    tuner passes this equivalent instead (to ``MlpRouter.fit_with_callbacks``).
    """

    def __init__(self, trial, monitor: str = "val_loss"):
        self.trial = trial
        self.monitor = monitor

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"trial pruned at epoch {epoch} ({self.monitor}={float(value):.5f})")


@dataclass
class TrainReport:
    epochs: int  # epochs actually run
    best_epoch: int  # epoch whose weights were kept (-1: no validation, last weights kept)
    best_val_loss: float  # nan without validation


def train_module(module: QualityNetModule, train_loader, val_loader=None, *, max_epochs: int = 50,
                 patience: int = 5, callbacks: Sequence[Any] | None = None,
                 progress: bool | None = None) -> TrainReport:
    """Fit ``module`` on CPU; with a ``val_loader``, stop early on ``val_loss`` (``patience``
    epochs without improvement) and keep the best epoch's weights.

    Process-wide switches the Trainer flips (deterministic algorithms, Lightning's info logging)
    are restored on return, so training leaves no global state behind. Seeding is the caller's
    job (the routers fork the torch RNG and seed it from their ``seed`` hyperparameter).
    """
    from pytorch_lightning.callbacks import EarlyStopping

    if progress is None:
        progress = sys.stderr.isatty()
    extra: list[Any] = []
    best = None
    if val_loader is not None:
        best = _RestoreBest("val_loss")
        extra = [EarlyStopping(monitor="val_loss", patience=patience, mode="min"), best]
    trainer_kwargs = dict(
        accelerator="cpu", devices=1, max_epochs=max_epochs, logger=False,
        enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
        deterministic=True, num_sanity_val_steps=0, callbacks=[*extra, *(callbacks or [])],
        limit_val_batches=1.0 if val_loader is not None else 0,
    )
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch",
                                                     "lightning_fabric", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            warnings.filterwarnings("ignore", category=UserWarning, module="pytorch_lightning")
            trainer = pl.Trainer(**trainer_kwargs)
            trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    module.net.eval()
    return TrainReport(epochs=int(trainer.current_epoch),
                       best_epoch=best.best_epoch if best is not None else -1,
                       best_val_loss=best.best if best is not None and best.state is not None
                       else float("nan"))
