"""The skip marker `{"__mse_skip": true, "value": v}`: what a dispatcher returns for a skipped step."""

from __future__ import annotations

from typing import Any

SKIP_KEY = "__mse_skip"


def wrap_skip_marker(value: Any) -> dict[str, Any]:
    """The marker for a step skipped with `value`."""
    return {SKIP_KEY: True, "value": value}


def is_skip_marker(value: Any) -> bool:
    """True for a skip marker: an object whose `__mse_skip` is `true` and which carries `value`."""
    return isinstance(value, dict) and value.get(SKIP_KEY) is True and "value" in value


def unwrap_skip_marker(marker: Any) -> Any:
    """The value a skip marker carries; raises ValueError for anything that is not a marker."""
    if not is_skip_marker(marker):
        raise ValueError('not a skip marker: expected an object with "__mse_skip": true and "value"')
    return marker["value"]
