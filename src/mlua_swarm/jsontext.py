"""The two JSON text forms the package writes: compact (prompts, stored values) and canonical (hashing)."""

from __future__ import annotations

import json
from typing import Any

_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_LENIENT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=repr)
_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def compact(value: Any) -> str:
    """Compact JSON with UTF-8 kept as is."""
    return _COMPACT.encode(value)


def text_of(value: Any, *, lenient: bool = False) -> str:
    """A string as is; anything else as compact JSON (prompts). `lenient` (messages) writes what
    JSON cannot hold with `repr` instead of raising."""
    if isinstance(value, str):
        return value
    if not lenient:
        return _COMPACT.encode(value)
    try:
        return _LENIENT.encode(value)
    except ValueError:
        return repr(value)


def canonical(value: Any) -> str:
    """Key-sorted compact JSON: equal values give equal text, so it can be hashed."""
    return _CANONICAL.encode(value)


__all__ = ["canonical", "compact", "text_of"]
