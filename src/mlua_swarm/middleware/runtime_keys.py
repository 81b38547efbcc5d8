"""Launch layers that put known keys into `ctx.meta.runtime`: the task input and the project alias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .around import AroundLayer

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken
    from ..worker import Worker
    from ..worker.adapter import SpawnerAdapter


@dataclass(frozen=True, slots=True)
class TaskInput:
    """The task-level canonical fields a launch may carry."""

    project_root: str | None = None
    work_dir: str | None = None
    task_metadata: Any = None

    def present(self) -> dict[str, Any]:
        """Only the fields that are set."""
        fields = {"project_root": self.project_root, "work_dir": self.work_dir, "task_metadata": self.task_metadata}
        return {key: value for key, value in fields.items() if value is not None}


class RuntimeKeysLayer(AroundLayer):
    """Spawns through a cloned ctx whose runtime has `keys` set (replacing what was there)."""

    def __init__(self, name: str, keys: dict[str, Any]) -> None:
        self.name = name
        self.keys = dict(keys)

    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        ctx = ctx.clone()
        ctx.meta.runtime.update(self.keys)
        return await inner.spawn(engine, ctx, task_id, attempt, token)


def task_input_layer(task_input: TaskInput) -> RuntimeKeysLayer | None:
    """Sets `project_root`, `work_dir` and `task_metadata`, whichever are present; None if none is."""
    keys = task_input.present()
    return RuntimeKeysLayer("task_input", keys) if keys else None


def project_name_alias_layer(alias: str) -> RuntimeKeysLayer:
    """Sets `project_name_alias`."""
    return RuntimeKeysLayer("project_name_alias", {"project_name_alias": alias})


__all__ = ["RuntimeKeysLayer", "TaskInput", "project_name_alias_layer", "task_input_layer"]
