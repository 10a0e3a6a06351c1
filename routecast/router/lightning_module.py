"""Lightning training of the plain quality networks (routecast.router.quality_net).

Only this module imports pytorch_lightning, and routers import it only inside ``fit``: a
trained router predicts, loads and serves with torch alone. The LightningModule here owns the
optimisation (masked loss, AdamW, logging); the network it trains stays a plain ``nn.Module``.

``train_module`` wraps the Trainer set-up every router shares: CPU by default, no logger, no
checkpoint files, deterministic, early stopping on the validation loss with the best weights
restored, a progress bar only when a human is watching, and optional extra callbacks (e.g.
:class:`OptunaPruningCallback` from the tuner).

Distribution is Lightning's own (``trainer_options``: accelerator, devices, num_nodes, strategy
``ddp`` / ``ddp_spawn``, see :mod:`routecast.router.distributed`): :class:`PromptDataModule` shards
the prompts over the ranks with a seeded ``DistributedSampler`` (each rank takes
``batch_size / world_size`` per step, so the global batch is the one the hyperparameter names),
the validation loss is averaged across ranks (``sync_dist``) so early stopping and the kept epoch
agree everywhere, and nothing here writes a file: the weights end in the calling process (rank 0,
or the parent of ``ddp_spawn``), which alone writes run folders and checkpoints.
"""

from __future__ import annotations

import copy
import logging
import sys
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from routecast.router.distributed import DistributedTrainingError, TRAINER_DEFAULTS, check_trainer_options, world_size
from routecast.router.quality_net import masked_quality_loss

#: how long a rank waits in a collective for a peer before giving up (a dead peer usually fails at once)
DDP_TIMEOUT = timedelta(minutes=5)


class QualityNetModule(pl.LightningModule):
    """Trains ``net`` (batch inputs -> (b, n_models) logits) against masked quality targets.

    A batch is ``(*inputs, target)``; ``target`` is (b, n_models) with NaN for unlogged cells,
    which the loss ignores (see :func:`masked_quality_loss`). ``lr_overrides`` maps a submodule
    name of ``net`` (e.g. ``"head"``) to its own learning rate: a freshly initialised head next
    to a pre-trained encoder needs a much larger step than the encoder. ``loss`` is a masked loss
    kind, or a callable ``(net, batch) -> loss`` for an objective of the router's own.
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
        if callable(self.loss_kind):  # a router's own objective, (net, batch) -> loss (e.g. RouterDC's)
            return self.loss_kind(self.net, batch)
        *inputs, target = batch
        return masked_quality_loss(self.net(*inputs), target, self.loss_kind)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[-1]), sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch[-1]),
                 sync_dist=True)
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
        # callback_metrics travel back from ddp_spawn's rank 0 to the parent; this callback does not
        trainer.callback_metrics["best_epoch"] = torch.tensor(float(self.best_epoch))
        trainer.callback_metrics["best_val_loss"] = torch.tensor(
            self.best if self.state is not None else float("nan"))


class _EpochsRun(pl.Callback):
    """Put the epoch count in ``callback_metrics``, which ddp_spawn sends back to the parent process
    (the parent's own Trainer never ran an epoch)."""

    def on_fit_end(self, trainer, pl_module):
        trainer.callback_metrics["epochs_run"] = torch.tensor(float(trainer.current_epoch))


class _EndSpawnedProcessGroup(pl.Callback):
    """With ``ddp_spawn``, end the gloo process group on every rank together, once fit is over.

    Lightning destroys the group at exit only for NCCL; a gloo group left alive is destroyed
    during interpreter shutdown, where rank 1 aborted in about 1 of 6 runs ("terminate called
    without an active exception", exit -6) and the whole fit failed. A spawned rank exits right
    after ``fit``, so nothing needs the group later; with ``ddp`` rank 0 is the caller's own
    process, whose group Lightning keeps, so this callback is only used for ``ddp_spawn``."""

    def teardown(self, trainer, pl_module, stage):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


class LossHistory(pl.Callback):
    """The epoch-mean training loss of every epoch, in order (``history``). Filled in the process
    that trains: with ``ddp_spawn`` the parent's copy stays empty."""

    def __init__(self):
        self.history: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get("train_loss")
        if value is not None:
            self.history.append(float(value))


class PromptDataModule(pl.LightningDataModule):
    """Training and validation rows (one row = one prompt), sharded by prompt across DDP ranks.

    One process: a seeded shuffled loader of ``batch_size`` rows, exactly the loader the routers
    always used. ``world_size`` ranks: a seeded ``DistributedSampler`` gives each rank a disjoint
    1/world_size of the prompts (a new order each epoch: Lightning calls ``set_epoch``) and each
    rank steps on ``batch_size // world_size`` rows, so DDP's averaged gradient is over the same
    global batch size. Validation is sharded the same way, without shuffling.
    """

    def __init__(self, train, val=None, *, batch_size: int, val_batch_size: int | None = None, seed: int = 0):
        super().__init__()
        self.train_rows = train
        self.val_rows = val
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size or batch_size)
        self.seed = int(seed)

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _loader(self, rows, batch_size: int, shuffle: bool):
        from torch.utils.data import DataLoader
        from torch.utils.data.distributed import DistributedSampler

        world, rank = self._world()
        if world == 1:
            generator = torch.Generator().manual_seed(self.seed) if shuffle else None
            return DataLoader(rows, batch_size=batch_size, shuffle=shuffle, generator=generator)
        sampler = DistributedSampler(rows, num_replicas=world, rank=rank, shuffle=shuffle, seed=self.seed,
                                     drop_last=False)
        return DataLoader(rows, batch_size=max(1, batch_size // world), sampler=sampler)

    def train_dataloader(self):
        return self._loader(self.train_rows, self.batch_size, shuffle=True)

    def val_dataloader(self):
        if self.val_rows is None:
            return []
        return self._loader(self.val_rows, self.val_batch_size, shuffle=False)


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


def _strategy(options: dict[str, Any]):
    """Lightning's strategy for ``options``: a DDP strategy with a bounded collective timeout and
    the gloo backend on CPU, or ``"auto"`` for one process."""
    if options["strategy"] == "auto":
        return "auto"
    from pytorch_lightning.strategies import DDPStrategy

    start_method = "spawn" if options["strategy"] == "ddp_spawn" else "popen"
    backend = "gloo" if options["accelerator"] == "cpu" else None
    return DDPStrategy(start_method=start_method, timeout=DDP_TIMEOUT, process_group_backend=backend)


def _rank_failure(exc: BaseException) -> DistributedTrainingError | None:
    """A DDP failure as one line naming the rank, or None when ``exc`` is not one."""
    from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

    if isinstance(exc, ProcessRaisedException):
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return DistributedTrainingError(f"DDP training failed: rank {exc.error_index} raised {last}")
    if isinstance(exc, ProcessExitedException):
        return DistributedTrainingError(f"DDP training failed: rank {exc.error_index} died "
                                        f"(exit code {exc.exit_code}, signal {exc.signal_name or '-'})")
    text = str(exc)
    if isinstance(exc, RuntimeError) and any(marker in text for marker in (
            "Connection closed by peer", "Connection reset by peer", "Timed out", "timed out",
            "ProcessGroup", "gloo")):
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return DistributedTrainingError(f"DDP training failed: a peer rank stopped answering ({first})")
    return None


def train_module(module: QualityNetModule, train_rows, val_rows=None, *, batch_size: int,
                 val_batch_size: int | None = None, seed: int = 0, max_epochs: int = 50,
                 patience: int = 5, callbacks: Sequence[Any] | None = None,
                 progress: bool | None = None, trainer_options: dict[str, Any] | None = None) -> TrainReport:
    """Fit ``module`` on ``train_rows`` (a map-style dataset of ``(*inputs, target)`` rows, one per
    prompt); with ``val_rows``, stop early on ``val_loss`` (``patience`` epochs without
    improvement) and keep the best epoch's weights.

    ``trainer_options`` (accelerator, devices, num_nodes, strategy; default one CPU process) go to
    the Trainer. A rank that raises or dies ends training with one
    :class:`~routecast.router.distributed.DistributedTrainingError` naming it.

    Process-wide switches the Trainer flips (deterministic algorithms, Lightning's info logging)
    are restored on return, so training leaves no global state behind. Seeding is the caller's
    job (the routers fork the torch RNG and seed it from their ``seed`` hyperparameter).
    """
    from pytorch_lightning.callbacks import EarlyStopping

    options = {**TRAINER_DEFAULTS, **(trainer_options or {})}
    check_trainer_options(**options)
    distributed = world_size(options) > 1 or options["strategy"] != "auto"
    if progress is None:
        progress = sys.stderr.isatty()
    extra: list[Any] = [_EpochsRun()]
    best = None
    if val_rows is not None:
        best = _RestoreBest("val_loss")
        extra += [EarlyStopping(monitor="val_loss", patience=patience, mode="min"), best]
    if options["strategy"] == "ddp_spawn":
        extra.append(_EndSpawnedProcessGroup())
    data = PromptDataModule(train_rows, val_rows, batch_size=batch_size, val_batch_size=val_batch_size, seed=seed)
    trainer_kwargs = dict(
        accelerator=options["accelerator"], devices=options["devices"], num_nodes=options["num_nodes"],
        strategy=_strategy(options), use_distributed_sampler=False,  # PromptDataModule shards itself
        max_epochs=max_epochs, logger=False,
        enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
        deterministic=True, num_sanity_val_steps=0, callbacks=[*extra, *(callbacks or [])],
        limit_val_batches=1.0 if val_rows is not None else 0,
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
            try:
                trainer.fit(module, datamodule=data)
            except Exception as exc:
                failure = _rank_failure(exc) if distributed else None
                if failure is None:
                    raise
                raise failure from None
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    module.net.eval()
    metrics = trainer.callback_metrics
    kept = best is not None and "best_epoch" in metrics
    return TrainReport(epochs=int(metrics.get("epochs_run", trainer.current_epoch)),
                       best_epoch=int(metrics["best_epoch"]) if kept else -1,
                       best_val_loss=float(metrics["best_val_loss"]) if kept else float("nan"))
