"""`Skipped`: what a dispatcher returns for a step that was skipped (the flow leaves its `out` as it was).

A worker asks for a skip with the `__mse_skip` marker in its Final (see `core.fold`); the engine
turns that into a skip outcome and the dispatcher hands the flow this sentinel, never the marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Skipped:
    """A skipped step, with the value its worker gave for the skip."""

    value: Any = None


__all__ = ["Skipped"]
