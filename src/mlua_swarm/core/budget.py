"""What a worker's output weighs while the engine holds it, and the per-attempt limit on that weight.

An attempt's tail keeps every Final and Artifact its worker emits (and the newest Progress and
Partial events) until the step is recorded, so without a limit one worker holding a capability
token could make the engine, and `mse serve` behind it, hold as much as it cares to send. The
engine adds up each event's weight as it arrives and refuses the event that would pass
`EngineConfig.max_attempt_output_bytes`; the attempt then fails with `output_budget_exceeded`.

The weight is what the caller already knows (the size of the HTTP body the event arrived in, the
size `check_value` found for an in-process worker's result) or else an estimate of the JSON text
taken without encoding it (`value_bytes`): a string by its length, so the common cases cost one
`len()`, and a container by a walk through it.
"""

from __future__ import annotations

import sys
from typing import Any

from .output import Artifact, Inline, OutputEvent, Partial, Progress

DEFAULT_MAX_ATTEMPT_OUTPUT_BYTES = 64 * 1024 * 1024
"""What one attempt's Finals, Artifacts and kept Progress/Partial events may weigh together."""

_SCALAR = 8
"""A number, `true`, `false` or `null` as JSON text, about."""

_EVENT = 16
"""The envelope of an event (`type`, `kind` and their punctuation), about."""


def value_bytes(value: Any, cap: int = sys.maxsize) -> int:
    """About the length of `value`'s JSON text, found without encoding it; a walk through nested
    containers stops once past `cap` (the caller only needs to know it is over)."""
    kind = type(value)
    if kind is str:
        return len(value) + 2
    if kind is not dict and kind is not list and kind is not tuple:
        return len(value) if kind is bytes or kind is bytearray else _SCALAR
    total = 0
    stack: list[Any] = [value]
    while stack and total <= cap:
        item = stack.pop()
        if isinstance(item, dict):
            total += 2 + 2 * len(item)
            for key, val in item.items():
                total += len(key) + 2 if isinstance(key, str) else _SCALAR
                if isinstance(val, str):
                    total += len(val) + 3
                elif isinstance(val, dict | list | tuple):
                    stack.append(val)
                else:
                    total += _SCALAR
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            for val in item:
                if isinstance(val, str):
                    total += len(val) + 2
                elif isinstance(val, dict | list | tuple):
                    stack.append(val)
                else:
                    total += _SCALAR
        elif isinstance(item, str):
            total += len(item) + 2
        else:
            total += _SCALAR
    return total


def event_bytes(event: OutputEvent) -> int:
    """The weight of one output event: its payload (`value_bytes`) plus a small envelope."""
    if isinstance(event, Progress):
        return _EVENT + len(event.stage) + (len(event.note) if event.note else 0)
    if isinstance(event, Partial):
        content, extra = event.chunk, 0
    else:
        content, extra = event.content, (len(event.name) if isinstance(event, Artifact) else 0)
    if isinstance(content, Inline):
        return _EVENT + extra + value_bytes(content.value)
    return _EVENT + extra + len(content.path) + (len(content.mime) if content.mime else 0)


def over_budget_message(agent: str, attempt: int, limit: int, held: int, weight: int, kept: int) -> str:
    """The failure of an attempt whose output passed the limit: the limit, the bytes, what became of
    the events already kept, and how to raise the limit."""
    return (
        f"output_budget_exceeded: attempt {attempt} of @{agent} emitted an event of {weight} bytes on top of "
        f"the {held} bytes its output already held, past the limit of {limit} bytes per attempt "
        f"(max_attempt_output_bytes); the event was refused, the worker stopped, and the {kept} events "
        "it had kept are dropped with the failed attempt (a server run's trace lists each as output.*). "
        "Hint: emit less (a file_ref instead of inline content), or raise max_attempt_output_bytes "
        "(EngineConfig, or max_attempt_output_bytes in $MSE_HOME/config.toml for `mse serve`)"
    )


__all__ = ["DEFAULT_MAX_ATTEMPT_OUTPUT_BYTES", "event_bytes", "over_budget_message", "value_bytes"]
