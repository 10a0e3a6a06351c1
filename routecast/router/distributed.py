"""Lightning distribution options of the torch routers, and which process may write.

The routers trained by Lightning (``mlp``, ``finetuned-encoder``) take four hyperparameters that
go straight to ``pytorch_lightning.Trainer``: ``accelerator``, ``devices``, ``num_nodes`` and
``strategy`` (``auto`` = one process; ``ddp_spawn`` = Lightning spawns the ranks and returns the
rank-0 weights to the calling process; ``ddp`` = Lightning re-runs the command once per extra
rank, or each node's command is started by the user with ``NODE_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``). They are hyperparameters in the scikit-learn sense of ``n_jobs``: stored by
``__init__``, read by ``fit``, and they do not change what is learned beyond float summation
order, because ``batch_size`` stays the *global* batch (each of N ranks takes ``batch_size / N``).

This module imports neither torch nor Lightning: the rank is read from the environment variables
Lightning and torchrun set, so the training layer can decide before and after fitting whether the
current process writes the run folder, the checkpoint and the MLflow run (only global rank 0 does).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from routecast.errors import ConfigError, RoutecastError

#: hyperparameter names shared by every Lightning-trained router, with their single-process defaults
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


def trainer_options(router: Any) -> dict[str, Any]:
    """The four distribution hyperparameters of ``router``, checked."""
    options = {name: getattr(router, name) for name in TRAINER_DEFAULTS}
    check_trainer_options(**options)
    return options


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
    """The distribution hyperparameters to add to ``router``'s parameters: only those that differ from
    one CPU process, checked; a router that does not train with Lightning is refused by name."""
    from routecast.core.registry import get_router_class

    merged = {**TRAINER_DEFAULTS, **{k: v for k, v in (options or {}).items() if v is not None}}
    unknown = sorted(set(merged) - set(TRAINER_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown distribution option(s) {', '.join(unknown)}; "
                          f"known: {', '.join(TRAINER_DEFAULTS)}")
    check_trainer_options(**merged)
    changed = {k: v for k, v in merged.items() if v != TRAINER_DEFAULTS[k]}
    if changed and not set(TRAINER_DEFAULTS) <= set(get_router_class(router).param_names()):
        raise ConfigError(f"router {router!r} does not train with Lightning, so "
                          f"{', '.join(sorted(changed))} cannot apply to it; routers that take them: "
                          f"{', '.join(lightning_routers())}")
    return changed


def lightning_routers() -> list[str]:
    """Registered routers whose hyperparameters include the distribution options."""
    from routecast.core.registry import get_router_class, router_names

    return [name for name in router_names()
            if set(TRAINER_DEFAULTS) <= set(get_router_class(name).param_names())]
