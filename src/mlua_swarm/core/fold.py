"""Turning an attempt's output tail into the step value.

The value is the last `Final`. Artifacts the worker itself staged become named parts: with any,
the value is `{"out": final, "parts": {name: value}}` (same name: last wins). Values are parsed
leniently: a string holding a JSON object or array (optionally inside a ``` fence) becomes that
structure; scalars stay strings. `submit_format: text` turns parsing off.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .output import Artifact, Final, OutputEvent

SKIP_KEY = "__mse_skip"


def wrap_skip_marker(value: Any) -> dict[str, Any]:
    """The marker a skipped step returns instead of a value."""
    return {SKIP_KEY: True, "value": value}


def is_skip_marker(value: Any) -> bool:
    """True for an object whose `__mse_skip` is `true` and which carries `value`."""
    return type(value) is dict and value.get(SKIP_KEY) is True and "value" in value


def unwrap_skip_marker(marker: Any) -> Any:
    """The value a skip marker carries; raises ValueError for anything that is not a marker."""
    if not is_skip_marker(marker):
        raise ValueError('not a skip marker: expected an object with "__mse_skip": true and "value"')
    return marker["value"]


def lenient_parse(value: Any) -> Any:
    if type(value) is not str:
        return value
    text = value.lstrip()
    if not text:
        return value
    first = text[0]
    if first == "`" and text.startswith("```"):
        body = text[3:]
        newline = body.find("\n")
        body = body[newline + 1 :] if newline >= 0 else ""
        end = body.rfind("```")
        text = (body[:end] if end >= 0 else body).strip()
        if not text:
            return value
        first = text[0]
    if first not in "{[":
        return value
    try:
        return json.loads(text)
    except ValueError:
        return value


MISSING: Any = object()
"""What `last_staged` returns when the worker staged no such part."""


def fold_tail(tail: list[OutputEvent], staged: Iterable[str] | None, *, raw: bool = False) -> tuple[Any, bool] | None:
    """`(value, ok)` from the tail, or None when it holds no Final."""
    final: Final | None = None
    for event in reversed(tail):
        if type(event) is Final:
            final = event
            break
    if final is None:
        return None
    value = final.content.as_value()
    if not raw and type(value) is str:
        value = lenient_parse(value)
    if staged:
        names = set(staged)
        parts: dict[str, Any] = {}
        for event in tail:
            if type(event) is Artifact and event.name in names:
                part = event.content.as_value()
                parts[event.name] = part if raw else lenient_parse(part)
        if parts:
            value = {"out": value, "parts": parts}
    return value, final.ok


def last_staged(tail: list[OutputEvent], staged: Iterable[str] | None, name: str) -> Any:
    """The value of the last artifact `name` the worker staged, or `MISSING`."""
    if not staged or name not in staged:
        return MISSING
    for event in reversed(tail):
        if type(event) is Artifact and event.name == name:
            return event.content.as_value()
    return MISSING


def comparable(value: Any) -> str:
    """The text a verdict contract compares: a string's own text, else its JSON (which never matches)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


__all__ = [
    "MISSING",
    "SKIP_KEY",
    "comparable",
    "fold_tail",
    "is_skip_marker",
    "last_staged",
    "lenient_parse",
    "unwrap_skip_marker",
    "wrap_skip_marker",
]
