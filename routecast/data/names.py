"""Model names as users mean them.

A spreadsheet typed by hand says ``" gpt-4o"`` on one row and ``"gpt-4o "`` on the next, and text
copied from different tools can spell ``"é"`` as one code point or two. Those are one model to the
user, so every model name that enters routecast (log rows, wide-format column names, preference
pairs, price tables, ``models=`` selections) goes through :func:`model_name`: Unicode NFC, then
leading and trailing whitespace removed. Inner spaces and case are kept (``"GPT-4o"`` and
``"gpt-4o"`` may well be different deployments).
"""

from __future__ import annotations

import unicodedata

import numpy as np


def model_name(name: str) -> str:
    """``name`` NFC-normalised and stripped."""
    return unicodedata.normalize("NFC", str(name)).strip()


def model_names(names) -> np.ndarray:
    """:func:`model_name` over an array of names (object array out; repeated names done once)."""
    cache: dict[str, str] = {}
    out = np.empty(len(names), dtype=object)
    for i, name in enumerate(names):
        clean = cache.get(name)
        if clean is None:
            clean = cache[name] = model_name(name)
        out[i] = clean
    return out
