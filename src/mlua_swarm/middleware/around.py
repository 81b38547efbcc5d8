"""`AroundLayer`: the common shape of a layer, one coroutine around `inner.spawn`.

Most layers do something before the inner spawn (edit a cloned ctx, wait, refuse) and hang an
"after" part on the returned worker. Subclasses write that once as `around`; `wrap` binds it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..worker.adapter import SpawnerAdapter
from .layer import SpawnerLayer

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken
    from ..worker import Worker


class AroundLayer(SpawnerLayer):
    """A layer defined by one `around(inner, ...)` coroutine."""

    @abstractmethod
    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        """Spawn through `inner`, adding this layer's before and after parts."""

    def wrap(self, inner: SpawnerAdapter) -> SpawnerAdapter:
        return _Around(self, inner)


class _Around(SpawnerAdapter):
    __slots__ = ("inner", "layer")

    def __init__(self, layer: AroundLayer, inner: SpawnerAdapter) -> None:
        self.layer = layer
        self.inner = inner

    def spawn(
        self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Coroutine[Any, Any, Worker]:
        # The layer's own coroutine is the spawn: binding `inner` costs no coroutine of its own.
        return self.layer.around(self.inner, engine, ctx, task_id, attempt, token)

    def __repr__(self) -> str:
        return f"{self.layer.name}({self.inner!r})"


__all__ = ["AroundLayer"]
