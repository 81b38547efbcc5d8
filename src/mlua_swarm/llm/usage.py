"""Token usage of LLM calls, and the per-run totals summed from step stats.

`Usage` is what one step reports under `stats.usage`; `input_tokens` counts every prompt token,
cached ones included, and `cached_input_tokens` says how many of them were served from a cache.
This module imports no provider SDK, so `mse runs show` can sum usage on a core install.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_input_tokens += other.cached_input_tokens

    def to_json(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cached_input_tokens": self.cached_input_tokens,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Usage | None:
        """A usage object as reported (partial reports allowed: only a total counts as output-free input)."""
        if not isinstance(raw, Mapping):
            return None

        def count(key: str) -> int | None:
            value = raw.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

        inp, out, total = count("input_tokens"), count("output_tokens"), count("total_tokens")
        if inp is None and out is None and total is None:
            return None
        if inp is None and out is None:
            inp = total
        elif inp is None:
            inp = max(0, (total or 0) - (out or 0)) if total is not None else 0
        elif out is None:
            out = max(0, total - inp) if total is not None else 0
        return cls(inp or 0, out or 0, count("cached_input_tokens") or 0)


def run_totals(stats: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Sum the LLM usage and cost over a run's step stats (every attempt counts: each one was paid for).

    `cost_usd` sums the steps whose cost is known; `cost_unknown_steps` counts those whose model has
    no price (their tokens are still in `usage`). `llm_steps` is 0 for a run without LLM steps.
    """
    usage = Usage()
    cost = 0.0
    steps = unknown = turns = 0
    for entry in stats:
        if not entry:
            continue
        step_usage = Usage.from_json(entry.get("usage"))
        if step_usage is None:
            continue
        steps += 1
        usage.add(step_usage)
        num_turns = entry.get("num_turns")
        if isinstance(num_turns, int):
            turns += num_turns
        step_cost = entry.get("cost_usd")
        if isinstance(step_cost, int | float) and not isinstance(step_cost, bool):
            cost += float(step_cost)
        else:
            unknown += 1
    return {
        "llm_steps": steps,
        "num_turns": turns,
        "usage": usage.to_json(),
        "cost_usd": round(cost, 8) if steps > unknown else None,
        "cost_unknown_steps": unknown,
    }


def describe_totals(totals: Mapping[str, Any]) -> str:
    """One line for `mse runs show`: steps, turns, tokens (cached share) and cost."""
    usage = totals["usage"]
    cost = totals["cost_usd"]
    money = "cost unknown" if cost is None else f"${cost:.4f}"
    if cost is not None and totals["cost_unknown_steps"]:
        money += f" (+{totals['cost_unknown_steps']} step(s) of unknown price)"
    return (
        f"{totals['llm_steps']} step(s), {totals['num_turns']} turn(s), "
        f"{usage['input_tokens']} in ({usage['cached_input_tokens']} cached) + {usage['output_tokens']} out "
        f"= {usage['total_tokens']} tokens, {money}"
    )


__all__ = ["Usage", "describe_totals", "run_totals"]
