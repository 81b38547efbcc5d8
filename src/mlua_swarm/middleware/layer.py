"""`SpawnerLayer`: a policy wrapped around a spawner.

A layer's `wrap(inner)` returns a new `SpawnerAdapter`. Its "before" part runs ahead of
`inner.spawn` (on a cloned ctx, or refusing with `RejectedByMiddleware`); its "after" part is a
`wrap_join` post-processor on the worker `inner` returns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..worker.adapter import SpawnerAdapter


class SpawnerLayer(ABC):
    name: str = "layer"

    @abstractmethod
    def wrap(self, inner: SpawnerAdapter) -> SpawnerAdapter:
        """The spawner that applies this layer around `inner`."""


__all__ = ["SpawnerLayer"]
