"""One runtime protocol (issue 22, item 4): a router's and a cascade's runtime both implement
ServingRuntime, and the HTTP endpoints call only that protocol - no policy type, no reach into a
runtime's estimator."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from routecast.serving.cascade_runtime import CascadeRuntime
from routecast.serving.runtime import Runtime
from routecast.serving.runtime_protocol import ServingRuntime
from tests._support.serving import fitted_knn

ENDPOINTS = Path(__file__).resolve().parents[2] / "routecast" / "serving" / "endpoints"


def _members(cls) -> dict[str, inspect.Signature | None]:
    """Public methods and properties of ``cls`` -> their signature (None for a property)."""
    out = {}
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            out[name] = None
        elif callable(value):
            out[name] = inspect.signature(value)
    return out


def test_both_runtimes_implement_the_protocol_with_its_signatures():
    assert isinstance(Runtime(fitted_knn()), ServingRuntime)
    wanted = _members(ServingRuntime)
    assert {"route", "answer_chat", "operating_point", "describe", "budget_curve", "expected_costs"} <= set(wanted)
    for cls in (Runtime, CascadeRuntime):
        got = _members(cls)
        for name, signature in wanted.items():
            assert name in got, f"{cls.__name__} lacks {name}"
            if signature is not None:
                assert list(got[name].parameters) == list(signature.parameters), (cls.__name__, name)
            else:
                assert got[name] is None, (cls.__name__, name)


def test_the_endpoints_know_no_policy_type():
    for path in ENDPOINTS.glob("*.py"):
        code = re.sub(r'""".*?"""', "", path.read_text(encoding="utf-8"), flags=re.S)  # docstrings aside
        assert "cascade" not in code.lower(), path.name
        assert not re.search(r"runtime\.(router|cascade)\b", code), path.name
        assert "getattr(" not in code, path.name
