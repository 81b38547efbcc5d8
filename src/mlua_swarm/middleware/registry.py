"""`LayerRegistry`: the layer factories `link` may use, always-on base layers and Blueprint hint keys.

A factory takes the engine because some layers need engine handles when they are built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .layer import SpawnerLayer
from .long_hold import LongHoldLayer
from .main_ai import MainAILayer
from .senior import SeniorEscalationLayer

if TYPE_CHECKING:
    from ..core.engine import Engine

LayerFactory = Callable[["Engine"], SpawnerLayer]

REMOVED_HINTS = frozenset({"operator_delegate"})


class LayerRegistry:
    """Base factories (wrapped around every router, in registration order) and hint factories by key."""

    def __init__(self) -> None:
        self.base: list[LayerFactory] = []
        self.hints: dict[str, LayerFactory] = {}

    def add_base(self, factory: LayerFactory) -> LayerRegistry:
        """Wrap every linked router in this layer (later registrations sit further out); chainable."""
        self.base.append(factory)
        return self

    def add_hint(self, key: str, factory: LayerFactory) -> LayerRegistry:
        """Make `spawner_hints.layers: [key]` add this layer; chainable."""
        if key in REMOVED_HINTS:
            raise ValueError(f"spawner hint {key!r} was removed and cannot be registered")
        self.hints[key] = factory
        return self

    @classmethod
    def default(cls, *, long_hold_warn_ms: float | None = None) -> LayerRegistry:
        """Hints `main_ai` and `senior_escalation`; the long-hold warning when a threshold is given."""
        registry = cls()
        registry.add_hint("main_ai", lambda _engine: MainAILayer())
        registry.add_hint("senior_escalation", lambda _engine: SeniorEscalationLayer())
        if long_hold_warn_ms is not None:
            hold = long_hold_warn_ms
            registry.add_base(lambda _engine: LongHoldLayer(hold))
        return registry


__all__ = ["REMOVED_HINTS", "LayerFactory", "LayerRegistry"]
