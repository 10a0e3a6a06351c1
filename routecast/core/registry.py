"""Routers by short name: the names drive CLI choices, configs and checkpoints.

Built-in routers are listed in a static table of module paths and imported only when asked for,
so ``routecast --help`` never imports torch. A router class registers itself with the
:func:`register_router` decorator; a user's own router does the same after import. Loading a
checkpoint resolves its router type only through this table: a name that is not registered is
refused, and nothing named in a file is ever imported by path.
"""

from __future__ import annotations

import importlib
import numbers
from typing import TYPE_CHECKING, Callable

from routecast.errors import ConfigError, missing_extra

if TYPE_CHECKING:  # pragma: no cover
    from routecast.router.base import Router

#: registry name -> module that defines it (imported lazily)
BUILTIN_ROUTERS: dict[str, str] = {
    # a1: learned from outcomes
    "knn": "routecast.router.knn",
    "linear": "routecast.router.linear",
    "mlp": "routecast.router.mlp",
    "mf": "routecast.router.mf",
    "sw-ranking": "routecast.router.sw_ranking",
    "finetuned-encoder": "routecast.router.finetuned_encoder",
    "irt": "routecast.router.irt",
    "prior-residual": "routecast.router.prior_residual",
    # a2: baselines that learn no quality model from the query
    "random": "routecast.router.random_router",
    "best-single": "routecast.router.best_single",
    "cheapest": "routecast.router.cheapest",
    "oracle": "routecast.router.oracle",
    "exemplar": "routecast.router.exemplar",
    "cluster-prior": "routecast.router.cluster_prior",
    "task-prior": "routecast.router.task_prior",
}

_registered: dict[str, type["Router"]] = {}


def register_router(name: str) -> Callable[[type["Router"]], type["Router"]]:
    """Class decorator: make ``cls`` available as ``name``."""

    def decorate(cls: type["Router"]) -> type["Router"]:
        existing = _registered.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ConfigError(f"router name {name!r} is already taken by {existing.__qualname__}")
        cls.name = name
        _registered[name] = cls
        return cls

    return decorate


def router_names() -> list[str]:
    """Every known router name: built-in ones and those registered at run time."""
    return sorted(set(BUILTIN_ROUTERS) | set(_registered))


def get_router_class(name: str) -> type["Router"]:
    if name not in _registered:
        module = BUILTIN_ROUTERS.get(name)
        if module is None:
            raise ConfigError(f"unknown router {name!r}; known routers: {', '.join(router_names())}")
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # e.g. mlp's torch on the lean runtime install
            error = missing_extra(exc, f"router {name!r}")
            if error is None:
                raise
            raise error from None
    if name not in _registered:  # pragma: no cover - a broken built-in module
        raise ConfigError(f"module {BUILTIN_ROUTERS[name]} did not register router {name!r}")
    return _registered[name]


#: annotation -> (accepted types, word for the message); other annotations are not checked
_SIMPLE_TYPES = {"bool": ((bool,), "true or false"), "int": ((numbers.Integral,), "an integer"),
                 "float": ((numbers.Real,), "a number"), "str": ((str,), "a string")}


def check_router_params(name: str, params: dict) -> None:
    """Refuse unknown hyperparameters and values of the wrong type before any work is done.

    A hyperparameter annotated ``int``, ``float``, ``bool`` or ``str`` must get such a value
    (an int is a valid float; a bool is neither); anything else is left to the router's ``fit``.
    Why here: ``k="abc"`` used to fail with a TypeError only after the data was loaded and embedded.
    """
    import inspect

    cls = get_router_class(name)
    known = cls.param_names()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"router {name!r} has no hyperparameter {', '.join(map(repr, unknown))}; "
                          f"it takes: {', '.join(known) or '(none)'}")
    signature = inspect.signature(cls.__init__)
    for key, value in params.items():
        annotation = signature.parameters[key].annotation
        annotation = getattr(annotation, "__name__", annotation)
        accepted, word = _SIMPLE_TYPES.get(annotation, ((object,), ""))
        if not isinstance(value, accepted) or (annotation != "bool" and isinstance(value, bool)):
            raise ConfigError(f"router {name!r}, hyperparameter {key!r}: expects {word}, got {value!r}")


def make_router(name: str, **params) -> "Router":
    """Instantiate a router by name, refusing unknown hyperparameters and mistyped values clearly."""
    check_router_params(name, params)
    return get_router_class(name)(**params)
