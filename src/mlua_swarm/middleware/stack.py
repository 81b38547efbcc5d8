"""`SpawnerStack`: builds a layered spawner, each added layer becoming the new outermost one."""

from __future__ import annotations

from ..worker.adapter import SpawnerAdapter
from .layer import SpawnerLayer


class SpawnerStack:
    """`SpawnerStack(base).layer(a).layer(b).build()` spawns through b, then a, then base.

    Spawning runs from the outermost layer inwards; join post-processors run innermost first.
    """

    def __init__(self, base: SpawnerAdapter) -> None:
        self._base = base
        self._layers: list[SpawnerLayer] = []

    def layer(self, layer: SpawnerLayer) -> SpawnerStack:
        """Add `layer` outside everything added so far; chainable."""
        self._layers.append(layer)
        return self

    @property
    def layers(self) -> list[SpawnerLayer]:
        """The layers from innermost to outermost."""
        return list(self._layers)

    def build(self) -> SpawnerAdapter:
        adapter = self._base
        for layer in self._layers:
            adapter = layer.wrap(adapter)
        return adapter


__all__ = ["SpawnerStack"]
