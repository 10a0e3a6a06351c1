"""Datasets shipped inside the package (``routecast/data/builtin/*.parquet``).

They let a newcomer run ``routecast data inspect llmrouter_9models`` or train a router with no
download. Each parquet has a ``<name>.md`` beside it (source repository and commit, licence, what
was changed) and an entry in ``catalog.json`` (prompts, models, licence) so listing the datasets
does not have to open the parquet files. They are produced by :mod:`routecast.data.build_builtin`.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from routecast.errors import DataError

_PACKAGE = "routecast.data"
_FOLDER = "builtin"


def _folder():
    return resources.files(_PACKAGE) / _FOLDER


def builtin_catalog() -> dict[str, dict]:
    """``{name: {"prompts", "models", "licence", "description", ...}}`` from ``catalog.json``."""
    entry = _folder() / "catalog.json"
    try:
        return json.loads(entry.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {name: {} for name in _names_on_disk()}


def _names_on_disk() -> list[str]:
    return sorted(p.name[: -len(".parquet")] for p in _folder().iterdir() if p.name.endswith(".parquet"))


def builtin_names() -> list[str]:
    """Names accepted by ``load_log(name)``, sorted."""
    return _names_on_disk()


def builtin_table() -> dict:
    """The catalogue as a plain table (``title``, ``columns``, ``rows``, ``right``) for ``routecast datasets``."""
    catalog = builtin_catalog()
    rows = []
    for name in builtin_names():
        info = catalog.get(name, {})
        prompts = info.get("prompts")
        rows.append((name, f"{prompts:,}" if isinstance(prompts, int) else "?", str(info.get("models", "?")),
                     str(info.get("licence", "?")), str(info.get("description", ""))))
    return {"title": "built-in datasets (load_log(name) / routecast data inspect NAME)",
            "columns": ("name", "prompts", "models", "licence", "description"), "right": ("prompts", "models"),
            "rows": rows}


def is_builtin(name: str) -> bool:
    return "/" not in name and "\\" not in name and not name.endswith(".parquet") and name in builtin_names()


def builtin_path(name: str) -> Path:
    """Filesystem path of a built-in parquet (editable and wheel installs both unpack package data)."""
    if name not in builtin_names():
        raise DataError(f"unknown built-in dataset {name!r}; choose from {builtin_names()}")
    return Path(str(_folder() / f"{name}.parquet"))


def builtin_card(name: str) -> str:
    """The ``<name>.md`` data card (source, licence, changes)."""
    builtin_path(name)
    return (_folder() / f"{name}.md").read_text(encoding="utf-8")
