"""Column mappings: read a table whose columns are named the user's way.

Most people's outcome logs are spreadsheets with their own headers (``Question``, ``LLM``,
``Accuracy``, ``Cost ($)``). Rather than asking them to rename columns, routecast takes a mapping
``routecast name -> the file's column``, given either

* as text, ``prompt=Question,model=LLM,score=Accuracy,cost="Cost ($)"`` (quote a name holding a
  comma, an ``=`` or spaces at its ends; this is what ``--map`` passes), or a dict; or
* in a small YAML **dataset card** beside the file, found in this order: ``<file>.card.yaml``
  (e.g. ``team_sheet.csv.card.yaml``), then ``dataset.yaml`` in the same folder::

      columns:
        prompt: Question
        model: LLM
        score: Accuracy
        cost: Cost ($)
      answer_format: json   # optional: how responses state their final answer (routecast.data.answers)
      do_not_resend: true   # optional: no prompt of this file may be sent to a model again (collect --fill)

An explicit mapping wins over the card, key by key. A mapped column the file does not have, a
file column mapped twice, or a target that would collide with a column the file already has, is
one :class:`DataError` naming the file and the column.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Mapping

import pandas as pd

from routecast.errors import DataError

CARD_SUFFIX = ".card.yaml"
FOLDER_CARD = "dataset.yaml"
_CARD_KEYS = {"columns", "description", "licence", "license", "source", "format", "answer_format", "do_not_resend"}


def parse_mapping(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"prompt=Question,cost=\\"Cost ($)\\""`` (or a dict) -> ``{"prompt": "Question", ...}``."""
    if text is None:
        return {}
    if isinstance(text, Mapping):
        items = list(text.items())
    else:
        lexer = shlex.shlex(str(text), posix=True)
        lexer.whitespace, lexer.whitespace_split, lexer.commenters = ",", True, ""
        try:
            tokens = list(lexer)
        except ValueError as exc:  # "No closing quotation"
            raise DataError(f"columns mapping {text!r}: {exc}") from None
        items = []
        for token in tokens:
            target, sep, column = token.partition("=")
            if not sep:
                raise DataError(f"columns mapping: {token!r} is not of the form name=Column")
            items.append((target, column))
    out: dict[str, str] = {}
    for target, column in items:
        target = str(target).strip()
        if not target or not isinstance(column, str) or column == "":
            raise DataError(f"columns mapping: {target or '?'}={column!r} needs a name on both sides")
        if target in out:
            raise DataError(f"columns mapping names {target!r} twice")
        out[target] = column
    return out


def find_card(path: str | Path) -> Path | None:
    """The dataset card of data file ``path`` (see the module docstring), or None."""
    path = Path(path)
    for card in (path.with_name(path.name + CARD_SUFFIX), path.parent / FOLDER_CARD):
        if card.is_file():
            return card
    return None


def read_card(card: str | Path) -> dict:
    """Parse a dataset card; returns its ``columns`` mapping (and whatever else it declares)."""
    import yaml

    card = Path(card)
    try:
        data = yaml.safe_load(card.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"dataset card is not valid YAML ({str(exc).splitlines()[0]})", path=str(card)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DataError("dataset card must be a YAML mapping with a 'columns' mapping", path=str(card))
    unknown = sorted(set(map(str, data)) - _CARD_KEYS)
    if unknown:
        raise DataError(f"dataset card has unknown key(s) {unknown}; allowed: {sorted(_CARD_KEYS)}", path=str(card))
    columns = data.get("columns", {})
    if not isinstance(columns, dict):
        raise DataError("dataset card: 'columns' must map routecast names to the file's columns",
                        path=str(card), column="columns")
    try:
        data["columns"] = parse_mapping({str(k): v for k, v in columns.items()})
    except DataError as exc:
        raise DataError(exc.reason, path=str(card), column="columns") from None
    if "answer_format" in data:  # how the responses state their final answer (routecast.data.answers)
        from routecast.data.answers import DECLARED_FORMATS

        if str(data["answer_format"]).strip().lower() not in DECLARED_FORMATS:
            raise DataError(f"dataset card: answer_format {data['answer_format']!r} is not one of "
                            f"{', '.join(DECLARED_FORMATS)}", path=str(card), column="answer_format")
    return data


def mapping_for(path: str | Path, columns=None) -> dict[str, str]:
    """The card's mapping (if any) updated with the explicit ``columns`` mapping."""
    card = find_card(path)
    merged = read_card(card)["columns"] if card is not None else {}
    merged.update(parse_mapping(columns))
    return merged


def apply_mapping(frame: pd.DataFrame, mapping: Mapping[str, str], *, source: str) -> pd.DataFrame:
    """Rename the file's columns to routecast names, checking every mapped column exists."""
    if not mapping:
        return frame
    present = [str(c) for c in frame.columns]
    seen: dict[str, str] = {}
    for target, column in mapping.items():
        if column not in present:
            raise DataError(f"mapped column {column!r} (for {target!r}) is not in the file; columns present: "
                            f"{[c for c in present if not c.startswith('__')][:20]}", path=source, column=column)
        if column in seen:
            raise DataError(f"column {column!r} is mapped twice (to {seen[column]!r} and {target!r})",
                            path=source, column=column)
        seen[column] = target
        if target != column and target in present and target not in mapping.values():
            raise DataError(f"cannot map {column!r} to {target!r}: the file already has a column {target!r}",
                            path=source, column=target)
    return frame.rename(columns={column: target for target, column in mapping.items()})
