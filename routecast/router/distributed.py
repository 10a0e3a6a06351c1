"""Lightning distribution options of the torch routers, and which process may write.

The estimators trained by Lightning (``mlp``, ``mf``, ``finetuned-encoder``, the static-encoder
trainer) take four trainer options that go straight to ``pytorch_lightning.Trainer``:
``accelerator``, ``devices``, ``num_nodes`` and ``strategy`` (``auto`` = one process;
``ddp_spawn`` = Lightning spawns the ranks and returns the rank-0 weights to the calling process;
``ddp`` = Lightning re-runs the command once per extra rank, or each node's command is started by
the user with ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). They say where a fit runs, not what
is learned (beyond float summation order: ``batch_size`` stays the *global* batch, each of N ranks
takes ``batch_size / N``), so they are NOT hyperparameters: a checkpoint served on one CPU must not
carry the GPU count it was trained with. They are set before ``fit`` with
:meth:`LightningFit.set_trainer_options` (the training commands do it from ``--devices`` etc.), are
not in ``get_params()`` and are not saved. Checkpoints and configs written when they were
hyperparameters still load: the four keys are ``retired_params``, ignored with a warning.

This module imports neither torch nor Lightning: the rank is read from the environment variables
Lightning and torchrun set, so the training layer can decide before and after fitting whether the
current process writes the run folder, the checkpoint and the MLflow run (only global rank 0 does).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from routecast.errors import ConfigError, RoutecastError

#: the trainer options of every Lightning-trained estimator, with their single-process defaults
TRAINER_DEFAULTS: dict[str, Any] = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"}
STRATEGIES = ("auto", "ddp", "ddp_spawn")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")


def check_trainer_options(accelerator: str, devices: int, num_nodes: int, strategy: str) -> None:
    """Refuse a distribution setting Lightning would reject only after the data is embedded."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"accelerator must be one of {', '.join(ACCELERATORS)}, got {accelerator!r}")
    for name, value in (("devices", devices), ("num_nodes", num_nodes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if strategy == "auto" and (devices > 1 or num_nodes > 1):
        raise ConfigError(f"devices={devices}, num_nodes={num_nodes} need strategy 'ddp' or 'ddp_spawn'")


def merge_trainer_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` (None values: the default) over :data:`TRAINER_DEFAULTS`, checked; unknown keys refused."""
    merged = {**TRAINER_DEFAULTS, **{k: v for k, v in (options or {}).items() if v is not None}}
    unknown = sorted(set(merged) - set(TRAINER_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown distribution option(s) {', '.join(unknown)}; "
                          f"known: {', '.join(TRAINER_DEFAULTS)}")
    check_trainer_options(**merged)
    return merged


class LightningFit:
    """Mixin of the estimators trained by Lightning: where ``fit`` runs is set per estimator
    instance before fitting (:meth:`set_trainer_options`), never as a hyperparameter."""

    #: the trainer options were hyperparameters before; old checkpoints and configs that still
    #: name them load, the values ignored with a warning (routecast.core.registry)
    retired_params = frozenset(TRAINER_DEFAULTS)

    def set_trainer_options(self, **options: Any):
        """Where the next ``fit`` trains (accelerator, devices, num_nodes, strategy), checked now.
        Not a hyperparameter: not in ``get_params()``, not copied by ``clone``, not saved."""
        self._trainer_options = merge_trainer_options(options)
        return self

    def trainer_options(self) -> dict[str, Any]:
        """The trainer options the next ``fit`` uses (default: one CPU process)."""
        return dict(getattr(self, "_trainer_options", None) or TRAINER_DEFAULTS)


def world_size(options: Mapping[str, Any]) -> int:
    return int(options["devices"]) * int(options["num_nodes"])


def _env_int(*names: str) -> int:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"environment variable {name} must be an integer, got {value!r}") from None
    return 0


def global_rank() -> int:
    """This process's rank as Lightning will number it: ``RANK`` when a launcher (torchrun, Lightning's
    ``ddp`` children) set it, else ``NODE_RANK * devices + LOCAL_RANK`` is only known at fit time, so a
    process with a non-zero ``NODE_RANK`` or ``LOCAL_RANK`` counts as non-zero before that."""
    if os.environ.get("RANK") not in (None, ""):
        return _env_int("RANK")
    return _env_int("NODE_RANK", "GROUP_RANK") + _env_int("LOCAL_RANK")


def is_rank_zero() -> bool:
    """True in the one process that writes run folders, checkpoints and MLflow runs."""
    return global_rank() == 0


class DistributedTrainingError(RoutecastError):
    """A DDP rank raised, died or stopped answering: training ended, nothing was written."""


def distribution_params(router: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The trainer options to set on ``router`` before fitting (:meth:`LightningFit.set_trainer_options`):
    only those that differ from one CPU process, checked; a router that does not train with
    Lightning is refused by name."""
    from routecast.core.registry import get_router_class

    merged = merge_trainer_options(options)
    changed = {k: v for k, v in merged.items() if v != TRAINER_DEFAULTS[k]}
    if changed and not issubclass(get_router_class(router), LightningFit):
        raise ConfigError(f"router {router!r} does not train with Lightning, so "
                          f"{', '.join(sorted(changed))} cannot apply to it; routers that take them: "
                          f"{', '.join(lightning_routers())}")
    return changed


def lightning_routers() -> list[str]:
    """Registered routers trained by Lightning (those that take trainer options)."""
    from routecast.core.registry import get_router_class, router_names

    return [name for name in router_names() if issubclass(get_router_class(name), LightningFit)]
