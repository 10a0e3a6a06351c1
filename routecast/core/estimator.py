"""The estimator contract every policy shares: routers, cascades, the answer scorer, trainers.

Why one base: a checkpoint stores a policy as (registry name, hyperparameters, learned state), the
CLI and configs build one from a name and a dict, tuning clones it, and the contract test checks
all of that on every registered class. Those only work when every class reads its hyperparameters
the same way, so that way is written once, here, after scikit-learn's ``BaseEstimator``:

* hyperparameters are exactly the keyword arguments of ``__init__`` (:meth:`param_names`), stored
  unchanged under the same names; ``get_params``/``set_params`` read and write them, so
  ``sklearn.base.clone`` works without routecast importing scikit-learn;
* learned attributes end in ``_`` and are set by ``fit``, which returns ``self``;
* a name that stopped being a hyperparameter is listed in ``retired_params``, so what was saved
  with it still loads (the registry drops it with a warning);
* a method that needs a fitted estimator calls :meth:`_check_fitted`, which looks for the class's
  ``fitted_attribute`` and raises :class:`~routecast.errors.NotFittedError` naming how to fit;
* what a class declares about itself for the contract test is its ``tags``
  (:class:`routecast.core.tags.PolicyTags`), and ``name``/``kind`` are set by the registry
  (:mod:`routecast.core.registry`).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from routecast.core.tags import DEFAULT_TAGS, PolicyTags
from routecast.errors import ConfigError, NotFittedError


class Estimator:
    """Base of every routecast policy (scikit-learn conventions; see the module docstring)."""

    #: registry name, set by the registry's decorator (``routecast.core.registry``); "" when unregistered
    name: ClassVar[str] = ""
    #: what the registry files the class under ("router", "cascade", "scorer"), set by its decorator
    kind: ClassVar[str] = ""
    #: what the contract test may not check on this class, and why (routecast.core.tags)
    tags: ClassVar[PolicyTags] = DEFAULT_TAGS
    #: the learned attribute ``fit`` always sets: its presence means "fitted"
    fitted_attribute: ClassVar[str] = "models_"
    #: how to fit, for the not-fitted error ("fit()", "fit(train_log, val_log)")
    fit_hint: ClassVar[str] = "fit()"
    #: names that were hyperparameters in earlier versions: a checkpoint or config that still
    #: gives them is accepted, the values ignored with a warning (:mod:`routecast.core.registry`)
    retired_params: ClassVar[frozenset[str]] = frozenset()

    # ----------------------------------------------------------- parameters
    @classmethod
    def param_names(cls) -> list[str]:
        """The hyperparameters: ``__init__``'s named arguments, in signature order."""
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as given to ``__init__``. ``deep`` is accepted so ``sklearn.base.clone``
        works; a policy's sub-estimators are named by hyperparameters (registry names), so it
        changes nothing."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params: Any) -> "Estimator":
        """Set hyperparameters by name; an unknown name is refused naming the class."""
        known = set(self.param_names())
        for key, value in params.items():
            if key not in known:
                raise ConfigError(f"{self._describe()} has no hyperparameter {key!r}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ---------------------------------------------------------------- fitted
    def is_fitted(self) -> bool:
        return hasattr(self, self.fitted_attribute)

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"{self._describe()} is not fitted; call {self.fit_hint} first")

    def _describe(self) -> str:
        """How errors name this object: its kind and registry name, else its class name."""
        if self.name:
            return f"{self.kind or 'policy'} {self.name!r}"
        return type(self).__name__
