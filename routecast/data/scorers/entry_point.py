"""A user's own scoring function, found by entry point name -- imported, never exec'd.

Register it in your package's metadata and install the package::

    [project.entry-points."routecast.scorers"]
    my_rubric = "my_package.scoring:rubric"

``rubric(prompt, response, reference, record)`` returns a number in [0, 1] (or a bool);
``record`` is the whole row as a dict.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from routecast.data.scorers.base import Scorer, ScoringRow
from routecast.errors import ConfigError

GROUP = "routecast.scorers"


class EntryPointScorer(Scorer):
    needs_reference = False

    def __init__(self, entry: str):
        found = [ep for ep in entry_points(group=GROUP) if ep.name == entry]
        if not found:
            known = sorted(ep.name for ep in entry_points(group=GROUP))
            raise ConfigError(f"no scorer {entry!r} in entry point group {GROUP!r}; installed: {known or 'none'}")
        try:
            self.function_ = found[0].load()
        except Exception as exc:  # the user's module failed to import
            raise ConfigError(f"scorer entry point {entry!r} ({found[0].value}) cannot be loaded: "
                              f"{type(exc).__name__}: {exc}") from None
        if not callable(self.function_):
            raise ConfigError(f"scorer entry point {entry!r} ({found[0].value}) is not callable")
        self.entry = entry
        self.name = f"entry:{entry}"

    def score(self, row: ScoringRow) -> float:
        return self.function_(row.prompt, row.response, row.reference, row.record)
