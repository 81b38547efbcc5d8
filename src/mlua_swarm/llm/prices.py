"""What a model costs, in US dollars per million tokens, and the cost of a step's usage.

The built-in table covers a few common hosted models at their list prices when this table was
written; prices change, so treat it as a default and extend or correct it: `register_price` from
Python, or `MSE_LLM_PRICES` naming a JSON file `{"model": {"input": 2.5, "output": 10,
"cached_input": 1.25}}` (read on each lookup, so a long-running server picks up edits). A model
matches its own entry or, failing that, the longest entry it starts with (`gpt-4o-mini-2024-07-18`
uses `gpt-4o-mini`). Models with no entry (local servers) have an unknown cost: `None`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .usage import Usage

PRICES_ENV = "MSE_LLM_PRICES"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens; cached input defaults to the input price."""

    input: float
    output: float
    cached_input: float | None = None

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        total = (usage.input_tokens - cached) * self.input + cached * cached_rate + usage.output_tokens * self.output
        return round(total / 1_000_000, 8)


_TABLE: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "o3": Price(2.00, 8.00, 0.50),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "claude-opus-4": Price(15.00, 75.00, 1.50),
    "claude-sonnet-4": Price(3.00, 15.00, 0.30),
    "claude-3-7-sonnet": Price(3.00, 15.00, 0.30),
    "claude-3-5-haiku": Price(0.80, 4.00, 0.08),
    "claude-haiku-4": Price(1.00, 5.00, 0.10),
}


def register_price(model: str, input: float, output: float, cached_input: float | None = None) -> None:
    """Add or replace the price of `model` (or of every model starting with it)."""
    _TABLE[model] = Price(input, output, cached_input)


class PriceFileError(ValueError):
    """`MSE_LLM_PRICES` names a file that is not a valid price table."""


def _file_table() -> dict[str, Price]:
    path = os.environ.get(PRICES_ENV)
    if not path:
        return {}
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PriceFileError(f"{PRICES_ENV}={path}: cannot read the price table: {exc}") from exc
    if not isinstance(raw, dict):
        raise PriceFileError(f"{PRICES_ENV}={path}: expected an object mapping model names to prices")
    table: dict[str, Price] = {}
    for model, entry in raw.items():
        try:
            table[model] = Price(
                float(entry["input"]),
                float(entry["output"]),
                None if entry.get("cached_input") is None else float(entry["cached_input"]),
            )
        except (TypeError, KeyError, ValueError) as exc:
            raise PriceFileError(
                f"{PRICES_ENV}={path}: model {model!r} needs numeric 'input' and 'output' (USD per million tokens)"
            ) from exc
    return table


def price_of(model: str) -> Price | None:
    """The price of `model` (a `provider:` prefix, as in a declared `profile.model`, is ignored)."""
    table = {**_TABLE, **_file_table()}
    prefix, sep, rest = model.partition(":")
    if sep and prefix in ("openai", "anthropic") and model not in table:
        model = rest
    if model in table:
        return table[model]
    matches = [name for name in table if model.startswith(name)]
    return table[max(matches, key=len)] if matches else None


def cost_usd(model: str | None, usage: Usage) -> float | None:
    """The cost of `usage` on `model`, or None when the model has no known price."""
    if model is None:
        return None
    price = price_of(model)
    return None if price is None else price.cost(usage)


__all__ = ["PRICES_ENV", "Price", "PriceFileError", "cost_usd", "price_of", "register_price"]
