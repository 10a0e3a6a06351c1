"""Declared hyperparameter ranges, so any router is tunable (optuna) with no extra code.

A router lists its tunable hyperparameters next to their defaults::

    class KnnRouter(Router):
        search_space = {"k": Int(5, 200, log=True)}

The tuner turns each entry into the matching ``trial.suggest_*`` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    log: bool = False

    def suggest(self, trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Categorical:
    choices: Sequence[Any]

    def suggest(self, trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))
