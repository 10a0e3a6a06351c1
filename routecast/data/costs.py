"""Per-call cost from list prices when a log does not record what each call cost.

Most public outcome logs carry a score per (prompt, model) but no bill. Routing trades quality for
cost, so routecast needs *some* cost per call; it derives one from a :class:`PriceTable` (USD per
million input / output tokens per model) and token counts:

    cost = tokens_in * price_in / 1e6 + tokens_out * price_out / 1e6

Token counts come from the log when it has ``tokens_in`` / ``tokens_out`` columns. Otherwise they
are estimated with a documented, deliberately simple rule (no tokenizer download, same answer
everywhere):

* ``tokens_in  = ceil(len(prompt) / 4)`` characters-per-token of 4, the usual English average;
* ``tokens_out = ceil(len(response) / 4)`` when the log has that model's response text, else
  ``default_output_tokens`` (256 unless the table says otherwise; per-model override possible).

A logged ``cost`` always wins; derivation only fills cells whose cost is missing (NaN).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from routecast.data.names import model_name
from routecast.errors import DataError

CHARS_PER_TOKEN = 4
DEFAULT_OUTPUT_TOKENS = 256


def estimate_tokens(texts, *, chars_per_token: int = CHARS_PER_TOKEN) -> np.ndarray:
    """``ceil(len(text) / chars_per_token)`` per text; NaN where the text is missing (None/NaN)."""
    out = np.full(len(texts), np.nan)
    for i, text in enumerate(texts):
        if isinstance(text, str):
            out[i] = math.ceil(len(text) / chars_per_token)
    return out


@dataclass(frozen=True)
class PriceTable:
    """USD per million tokens, input and output, per model.

    ``prices`` maps model name -> (price_in_per_mtok, price_out_per_mtok).
    ``output_tokens`` optionally maps model name -> assumed output tokens when no response is logged
    (falls back to ``default_output_tokens``).
    """

    prices: Mapping[str, tuple[float, float]]
    default_output_tokens: int = DEFAULT_OUTPUT_TOKENS
    output_tokens: Mapping[str, int] = field(default_factory=dict)
    chars_per_token: int = CHARS_PER_TOKEN

    def __post_init__(self) -> None:
        clean = {}
        for model, pair in self.prices.items():
            try:
                p_in, p_out = (float(pair[0]), float(pair[1]))
            except (TypeError, ValueError, IndexError, KeyError):
                raise DataError(f"price of {model!r} must be a pair (in, out) of numbers, got {pair!r}") from None
            if not (math.isfinite(p_in) and math.isfinite(p_out)) or p_in < 0 or p_out < 0:
                raise DataError(f"price of {model!r} must be finite and >= 0, got ({p_in}, {p_out})")
            clean[model_name(model)] = (p_in, p_out)
        object.__setattr__(self, "prices", clean)
        if self.default_output_tokens < 0 or self.chars_per_token <= 0:
            raise DataError("default_output_tokens must be >= 0 and chars_per_token > 0")

    # ------------------------------------------------------------ builders
    @classmethod
    def from_dict(cls, data: Mapping, **kwargs) -> "PriceTable":
        """Accepts ``{model: [in, out]}`` or ``{model: {"in": .., "out": ..}}`` (also ``input``/``output``,
        ``price_in_per_mtok``/``price_out_per_mtok``). A top-level ``{"prices": {...},
        "default_output_tokens": N}`` wrapper is accepted too."""
        if "prices" in data and isinstance(data["prices"], Mapping):
            kwargs.setdefault("default_output_tokens", int(data.get("default_output_tokens", DEFAULT_OUTPUT_TOKENS)))
            kwargs.setdefault("output_tokens", dict(data.get("output_tokens", {})))
            data = data["prices"]
        prices = {}
        for model, value in data.items():
            if isinstance(value, Mapping):
                p_in = _first_key(value, ("in", "input", "price_in_per_mtok", "input_price"), model)
                p_out = _first_key(value, ("out", "output", "price_out_per_mtok", "output_price"), model)
                prices[model] = (p_in, p_out)
            else:
                prices[model] = value
        return cls(prices, **kwargs)

    @classmethod
    def from_json(cls, path: str | Path, **kwargs) -> "PriceTable":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix.lower() in (".yaml", ".yml"):  # the same mapping, written as YAML
                import yaml

                try:
                    data = yaml.safe_load(text)
                except yaml.YAMLError as exc:
                    raise DataError(f"price file is not valid YAML: {exc}", path=str(path)) from None
            else:
                data = json.loads(text)
        except FileNotFoundError:
            raise DataError("price file not found", path=str(path)) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"price file is not valid JSON: {exc}", path=str(path)) from None
        if not isinstance(data, Mapping):
            raise DataError("price file must hold a JSON object {model: [in, out]}", path=str(path))
        try:
            return cls.from_dict(data, **kwargs)
        except DataError as exc:
            raise DataError(exc.reason, path=str(path)) from None

    @classmethod
    def coerce(cls, prices) -> "PriceTable | None":
        """None, a PriceTable, a dict or a path to a JSON file -> PriceTable (or None)."""
        if prices is None or isinstance(prices, PriceTable):
            return prices
        if isinstance(prices, Mapping):
            return cls.from_dict(prices)
        if isinstance(prices, (str, Path)):
            return cls.from_json(prices)
        raise DataError(f"prices must be a PriceTable, a dict or a JSON path, got {type(prices).__name__}")

    def merged(self, other: "PriceTable | None") -> "PriceTable":
        """This table with ``other``'s entries overriding (explicit prices beat prices found in a log)."""
        if other is None:
            return self
        return PriceTable({**self.prices, **other.prices}, other.default_output_tokens,
                          {**self.output_tokens, **other.output_tokens}, other.chars_per_token)

    # -------------------------------------------------------------- costing
    def __contains__(self, model: str) -> bool:
        return model_name(model) in self.prices

    def price_of(self, model: str) -> tuple[float, float] | None:
        """(USD per million input tokens, per million output tokens), or None without a price."""
        return self.prices.get(model_name(model))

    def output_tokens_for(self, model: str) -> int:
        return int(self.output_tokens.get(model, self.default_output_tokens))

    def call_cost(self, model: str, tokens_in, tokens_out) -> np.ndarray:
        """USD per call for arrays of token counts (NaN where the model has no price)."""
        if model not in self.prices:
            return np.full(np.shape(tokens_in), np.nan)
        p_in, p_out = self.prices[model]
        return (np.asarray(tokens_in, dtype=float) * p_in + np.asarray(tokens_out, dtype=float) * p_out) / 1e6

    def to_dict(self) -> dict:
        return {"prices": {m: list(p) for m, p in self.prices.items()},
                "default_output_tokens": self.default_output_tokens,
                "output_tokens": dict(self.output_tokens)}


def _first_key(value: Mapping, keys, model):
    for key in keys:
        if key in value:
            return value[key]
    raise DataError(f"price of {model!r} needs one of the keys {list(keys)[:2]} for input/output")


def derive_costs(costs: np.ndarray, models, prompts, table: PriceTable, *, responses=None,
                 tokens_in: np.ndarray | None = None, tokens_out: np.ndarray | None = None) -> np.ndarray:
    """Fill NaN cells of ``costs`` (n, m) from ``table``; logged costs are kept as they are.

    ``tokens_in``/``tokens_out`` are optional (n, m) matrices of logged counts (NaN = not logged).
    """
    costs = np.array(costs, dtype=float, copy=True)
    n = len(prompts)
    est_in = estimate_tokens(prompts, chars_per_token=table.chars_per_token)
    for j, model in enumerate(models):
        missing = np.isnan(costs[:, j])
        if not missing.any() or model not in table:
            continue
        t_in = est_in.copy()
        if tokens_in is not None:
            t_in = np.where(np.isnan(tokens_in[:, j]), t_in, tokens_in[:, j])
        t_out = np.full(n, float(table.output_tokens_for(model)))
        if responses is not None:
            est_out = estimate_tokens(responses[:, j], chars_per_token=table.chars_per_token)
            t_out = np.where(np.isnan(est_out), t_out, est_out)
        if tokens_out is not None:
            t_out = np.where(np.isnan(tokens_out[:, j]), t_out, tokens_out[:, j])
        derived = table.call_cost(model, t_in, t_out)
        costs[:, j] = np.where(missing, derived, costs[:, j])
    return costs


def check_priced(log, prices, *, path: str | None = None) -> None:
    """Refuse a price table that leaves a model of ``log`` without any cost: every model whose
    logged costs are missing must have a price, else its costs stay unknown and the table was
    probably meant to cover it (a misspelt or forgotten entry). ``path`` names the table file."""
    table = PriceTable.coerce(prices)
    if table is None:
        return
    costs = np.asarray(log.costs, dtype=float)
    unpriced = [m for j, m in enumerate(log.models) if np.isnan(costs[:, j]).any() and m not in table]
    if unpriced:
        where = f"price table {path}" if path else "the price table"
        raise DataError(f"{where} has no price for model(s) {', '.join(unpriced)} (their costs are not logged); "
                        f"priced: {', '.join(sorted(table.prices)) or 'none'}", path=log.source, column="model")


def reprice(log, prices) -> "OutcomeLog":  # noqa: F821 - forward reference to routecast.data.OutcomeLog
    """``log`` with every cost recomputed from ``prices`` (logged costs discarded), e.g. to try your own
    price assumptions on a built-in dataset. Tokens are re-estimated by the rule in the module docstring
    (logged token counts are not kept in an OutcomeLog)."""
    table = PriceTable.coerce(prices)
    missing = [m for m in log.models if m not in table]
    if missing:
        raise DataError(f"no price for models {missing}", path=log.source, column="model")
    fresh = np.full(log.costs.shape, np.nan)
    return log.with_costs(derive_costs(fresh, log.models, log.prompts, table, responses=log.responses))
