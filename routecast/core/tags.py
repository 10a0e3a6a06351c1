"""Policy tags: what a policy class declares about itself, like scikit-learn's estimator tags.

The contract test (``tests/router/test_contract.py``) runs the same checks on every registered
policy (routers, cascades, the answer scorer). A class that legitimately cannot pass one of them
says so HERE, on its class, with a ``tags`` class attribute - never in a list inside a test - so a
new policy is checked in full unless its author declares, next to the code, why not::

    from routecast.core.tags import PolicyTags

    @register_router("my-router")
    class MyRouter(Router):
        tags = PolicyTags(needs_torch=True, quick_params={"max_epochs": 2})

``PolicyTags`` was called ``RouterTags`` before cascades shared the contract; the old names
(``RouterTags``, ``router_tags``) stay importable from here for user code written against them.

A subclass inherits its parent's tags; change one with ``dataclasses.replace(Parent.tags, ...)``.
A class without a ``tags`` attribute has the defaults (every check applies).

Two facts a router already declares are deliberately NOT tags, so each exists once:
``Router.evaluation_only`` (never exported or served; the checkpoint writer reads it) and
``Router.uses_embeddings`` (``_fit``/``_predict_quality`` get sentence embeddings, else texts).
The contract test reads those class attributes directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Mapping


@dataclass(frozen=True)
class PolicyTags:
    """Declared properties of a policy class. Every field defaults to "the ordinary case"."""

    #: ``predict_quality`` needs the prompt TEXTS; it cannot route from precomputed embeddings
    #: (the oracle looks prompts up, ``finetuned-encoder`` tokenises them). Routing from
    #: embeddings alone must then raise ``RoutingError`` with a clear message; the contract test
    #: checks that instead of "embeddings give the same predictions as texts".
    requires_texts: bool = False

    #: fit or predict imports torch. Routers without it must keep torch out of the process
    #: (``routecast.load`` of their checkpoints stays light); the contract test checks this in a
    #: fresh interpreter.
    needs_torch: bool = False

    #: fit takes more than a few seconds on a few hundred prompts even with ``quick_params``
    #: (e.g. fine-tuning a transformer). The contract test fits it on fewer prompts and marks its
    #: tests ``slow``; they still run in CI.
    slow_fit: bool = False

    #: learns only from pairwise preferences (``fit_preferences(pairs, costs=...)``), not from a
    #: score matrix; the contract test fits it from ``routecast.data.pairs_from_log`` of its log.
    needs_preferences: bool = False

    #: fit learns from two or more models' scores on the SAME prompt (comparisons, contrasts),
    #: so a traffic log (one model per request, :meth:`OutcomeLog.is_traffic`) cannot train it and
    #: a propensity weight per logged cell has nothing to weigh. ``fit`` on a traffic log then
    #: raises one ``RoutingError`` saying what is missing and what fixes it
    #: (:func:`routecast.router.base.shared_prompts_error`); the contract test checks that.
    needs_shared_prompts: bool = False

    #: two fits with the same hyperparameters and seed may predict differently (e.g. threaded
    #: training without a fixed reduction order). Exempts the router from the determinism check;
    #: say in the router's docstring why it cannot be made deterministic.
    non_deterministic: bool = False

    #: hyperparameters that make ``fit`` take about a second on a few hundred prompts (fewer
    #: epochs, smaller layers), for contract tests and smoke runs. Behaviour, not quality: every
    #: key must be a hyperparameter of the class (the contract test checks). ``encoder`` is set
    #: by the test to the cheap ``hashing`` encoder and does not belong here.
    quick_params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # frozen means frozen: the shared default instance must not be mutable through a dict
        object.__setattr__(self, "quick_params", MappingProxyType(dict(self.quick_params)))
        for f in fields(self):
            if f.name != "quick_params" and not isinstance(getattr(self, f.name), bool):
                raise TypeError(f"PolicyTags.{f.name} must be a bool, got {getattr(self, f.name)!r}")


#: the tags of a policy class that declares none
DEFAULT_TAGS = PolicyTags()


def policy_tags(policy_or_class: Any) -> PolicyTags:
    """The tags of a policy class or instance (``DEFAULT_TAGS`` when it declares none).

    Refuses a ``tags`` attribute that is not a :class:`PolicyTags` (a plain dict would silently
    exempt nothing), so a mistyped declaration fails loudly instead of being ignored.
    """
    cls = policy_or_class if isinstance(policy_or_class, type) else type(policy_or_class)
    tags = getattr(cls, "tags", DEFAULT_TAGS)
    if not isinstance(tags, PolicyTags):
        raise TypeError(f"{cls.__qualname__}.tags must be a routecast.core.tags.PolicyTags, "
                        f"got {type(tags).__name__}")
    return tags


#: the names used before cascades shared the contract (kept for user code; routecast uses the new ones)
RouterTags = PolicyTags
router_tags = policy_tags
