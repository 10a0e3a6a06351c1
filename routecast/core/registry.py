"""Policies by short name: the names drive CLI choices, configs and checkpoints.

Every policy class registers itself once, with a decorator on its class: :func:`register_router`
(a router: predicts quality, then the decision rule picks), :func:`register_cascade` (calls models
in turn and stops) or :func:`register_scorer` (rates answers for cascades). There is no name table
beside the decorators: the built-in names are found by reading the decorator lines of the modules
of :data:`POLICY_PACKAGES` (text only, nothing imported), and a module is imported only when its
class is asked for, so ``routecast --help`` never imports torch. A user's own policy registers the
same way after its import. Loading a checkpoint resolves its type only through this registry: a
name that is not registered is refused, and nothing named in a file is ever imported by path.

The registry types against :class:`routecast.core.estimator.Estimator` and knows no router or
cascade type (core sits below both).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import numbers
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Callable, TypeVar

from routecast.core.estimator import Estimator
from routecast.errors import ConfigError, missing_extra

#: the packages whose modules may define built-in policies (read, never imported, to list names)
POLICY_PACKAGES = ("routecast.router", "routecast.cascade")
#: the kinds of registered classes, by the decorator that registers them
KINDS = ("router", "cascade", "scorer")
#: a registering decorator line: ``@register_router("knn")`` -> ("router", "knn")
_DECORATOR = re.compile(r'^@register_(router|cascade|scorer)\(\s*"([A-Za-z0-9_.-]+)"\s*\)', re.MULTILINE)

E = TypeVar("E", bound=type[Estimator])

_registered: dict[str, type[Estimator]] = {}


def _register(kind: str) -> Callable[[str], Callable[[E], E]]:
    def register(name: str) -> Callable[[E], E]:
        def decorate(cls: E) -> E:
            existing = _registered.get(name)
            if existing is not None and existing.__qualname__ != cls.__qualname__:
                raise ConfigError(f"{kind} name {name!r} is already taken by {existing.__qualname__}")
            cls.name = name
            cls.kind = kind
            _registered[name] = cls
            return cls

        return decorate

    register.__doc__ = f"Class decorator: make ``cls`` available as the {kind} ``name``."
    return register


register_router = _register("router")
register_cascade = _register("cascade")
register_scorer = _register("scorer")


@lru_cache(maxsize=None)
def builtin_policies() -> dict[str, tuple[str, str]]:
    """Built-in name -> (kind, module), from the decorator lines of :data:`POLICY_PACKAGES`'s modules.

    Read once per process from the source files (the registry's single source of truth is the
    decorator on the class); nothing is imported, so listing names stays free of torch.
    """
    found: dict[str, tuple[str, str]] = {}
    for package in POLICY_PACKAGES:
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            for path in sorted(Path(folder).glob("*.py")):
                for kind, name in _DECORATOR.findall(path.read_text(encoding="utf-8")):
                    found[name] = (kind, f"{package}.{path.stem}")
    return found


def policy_names(kind: str | None = None) -> list[str]:
    """Every known name of ``kind`` (None: all kinds): built-in ones and those registered at run time."""
    names = {name for name, (k, _) in builtin_policies().items() if kind in (None, k)}
    names |= {name for name, cls in _registered.items() if kind in (None, cls.kind)}
    return sorted(names)


def get_policy_class(name: str, kind: str | None = None) -> type[Estimator]:
    """The class registered as ``name`` (importing its built-in module on first use).

    ``kind`` refuses a name of another kind with the same "unknown" error as a name never
    registered (a cascade name is not a router, whatever the command asked for).
    """
    noun = kind or "policy"
    builtin = builtin_policies().get(name)
    if name not in _registered and builtin is not None and kind in (None, builtin[0]):
        try:
            importlib.import_module(builtin[1])
        except ModuleNotFoundError as exc:  # e.g. mlp's torch on the lean runtime install
            error = missing_extra(exc, f"{noun} {name!r}")
            if error is None:
                raise
            raise error from None
        if name not in _registered:  # pragma: no cover - a broken built-in module
            raise ConfigError(f"module {builtin[1]} did not register {noun} {name!r}")
    cls = _registered.get(name)
    if cls is None or kind not in (None, cls.kind):
        plural = "policies" if kind is None else f"{kind}s"
        raise ConfigError(f"unknown {noun} {name!r}; known {plural}: {', '.join(policy_names(kind))}")
    return cls


#: annotation -> (accepted types, word for the message); other annotations are not checked
_SIMPLE_TYPES = {"bool": ((bool,), "true or false"), "int": ((numbers.Integral,), "an integer"),
                 "float": ((numbers.Real,), "a number"), "str": ((str,), "a string")}


def drop_retired(cls: type[Estimator], params: dict) -> dict:
    """``params`` without the class's ``retired_params``, with one warning naming what was ignored.

    Why: a checkpoint or config written when those were hyperparameters (e.g. the trainer options
    of the Lightning routers) must still load; refusing it would strand every old checkpoint.
    """
    retired = sorted(set(params) & set(cls.retired_params))
    if not retired:
        return params
    from routecast.core.policy import RoutecastWarning

    warnings.warn(f"{cls.kind or 'policy'} {cls.name or cls.__name__!r}: ignored {', '.join(retired)}, "
                  "no longer hyperparameters (written by an older routecast; see the class's docstring)",
                  RoutecastWarning, stacklevel=3)
    return {k: v for k, v in params.items() if k not in retired}


def check_params(name: str, params: dict, kind: str | None = None) -> None:
    """Refuse unknown hyperparameters and values of the wrong type before any work is done.

    A hyperparameter annotated ``int``, ``float``, ``bool`` or ``str`` must get such a value
    (an int is a valid float; a bool is neither); anything else is left to the class's ``fit``.
    Why here: ``k="abc"`` used to fail with a TypeError only after the data was loaded and embedded.
    """
    cls = get_policy_class(name, kind)
    noun = cls.kind
    params = {k: v for k, v in params.items() if k not in cls.retired_params}
    known = cls.param_names()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"{noun} {name!r} has no hyperparameter {', '.join(map(repr, unknown))}; "
                          f"it takes: {', '.join(known) or '(none)'}")
    signature = inspect.signature(cls.__init__)
    for key, value in params.items():
        annotation = signature.parameters[key].annotation
        annotation = getattr(annotation, "__name__", annotation)
        accepted, word = _SIMPLE_TYPES.get(annotation, ((object,), ""))
        if not isinstance(value, accepted) or (annotation != "bool" and isinstance(value, bool)):
            raise ConfigError(f"{noun} {name!r}, hyperparameter {key!r}: expects {word}, got {value!r}")


def make_policy(name: str, params: dict | None = None, kind: str | None = None) -> Estimator:
    """Instantiate a policy by name, refusing unknown hyperparameters and mistyped values clearly."""
    cls = get_policy_class(name, kind)
    params = drop_retired(cls, dict(params or {}))
    check_params(name, params, kind)
    return cls(**params)


# ------------------------------------------------------------ the router view (most callers)
def router_names() -> list[str]:
    """Every known router name: built-in ones and those registered at run time."""
    return policy_names("router")


def get_router_class(name: str) -> type[Estimator]:
    return get_policy_class(name, "router")


def check_router_params(name: str, params: dict) -> None:
    check_params(name, params, "router")


def make_router(name: str, **params) -> Estimator:
    """Instantiate a router by name, refusing unknown hyperparameters and mistyped values clearly."""
    return make_policy(name, params, "router")
