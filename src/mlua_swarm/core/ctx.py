"""The per-attempt dispatch context handed to spawners, and the worker's view of its context."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Protocol

from ..ids import StepId


class OperatorKind(StrEnum):
    MAIN_AI = "main_ai"
    AUTOMATE = "automate"
    COMPOSITE = "composite"


class SeniorBridge(Protocol):
    """Answers escalations from a step that reported `ok=false`."""

    async def ask(self, step_id: StepId, question: Any) -> Any: ...


class SpawnHook(Protocol):
    """Main-AI hooks around every spawn: `before` may refuse, `after` observes."""

    async def before(self, ctx: Ctx) -> None: ...

    async def after(self, ctx: Ctx, value: Any) -> None: ...


@dataclass(slots=True)
class OperatorInfo:
    kind: OperatorKind = OperatorKind.AUTOMATE
    id: str = "default-automate"
    senior_bridge: SeniorBridge | None = None
    spawn_hook: SpawnHook | None = None


@dataclass(slots=True)
class CtxMeta:
    """Free-form metadata tiers; `runtime` carries well-known keys such as `run_id` and `worker_handle`."""

    runtime: dict[str, Any] = field(default_factory=dict)
    authz: dict[str, Any] = field(default_factory=dict)
    observer: dict[str, Any] = field(default_factory=dict)
    loop_ns: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "authz": self.authz,
            "observer": self.observer,
            "loop_ns": self.loop_ns,
        }


@dataclass(slots=True)
class Ctx:
    task_id: StepId
    attempt: int
    agent: str
    meta: CtxMeta = field(default_factory=CtxMeta)
    operator: OperatorInfo = field(default_factory=OperatorInfo)

    def clone(self, agent: str | None = None) -> Ctx:
        """A copy whose `meta` tiers can be edited without touching the original (middleware `before`),
        optionally routed to another agent."""
        meta = self.meta
        return Ctx(
            self.task_id,
            self.attempt,
            self.agent if agent is None else agent,
            CtxMeta(dict(meta.runtime), dict(meta.authz), dict(meta.observer), dict(meta.loop_ns)),
            self.operator,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "attempt": self.attempt,
            "agent": self.agent,
            "meta": self.meta.to_json(),
        }


@dataclass(slots=True)
class StepPointer:
    name: str
    size_bytes: int
    content_url: str
    sha256: str
    file_path: str | None = None


@dataclass(slots=True)
class AgentContextView:
    """What a worker may know about where it runs (after the context policy is applied)."""

    task_id: StepId
    agent: str
    attempt: int
    project_root: str | None = None
    work_dir: str | None = None
    task_metadata: Any = None
    run_id: str | None = None
    project_name_alias: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    steps: list[StepPointer] = field(default_factory=list)

    @classmethod
    def from_ctx(cls, ctx: Ctx) -> AgentContextView:
        """The view the agent-context middleware stored, else one derived from the raw runtime keys."""
        runtime = ctx.meta.runtime
        stored = runtime.get("agent_context")
        if isinstance(stored, AgentContextView):
            return stored
        if isinstance(stored, dict):
            return cls.from_json(stored)
        return cls.of_runtime(ctx)

    @classmethod
    def of_runtime(cls, ctx: Ctx) -> AgentContextView:
        """The unfiltered view: the named fields read from the runtime keys, nothing extra."""
        get = ctx.meta.runtime.get
        return cls(
            ctx.task_id,
            ctx.agent,
            ctx.attempt,
            get("project_root"),
            get("work_dir"),
            get("task_metadata"),
            get("run_id"),
            get("project_name_alias"),
        )

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> AgentContextView:
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in obj.items() if k in names and k != "steps"}
        steps = [StepPointer(**s) for s in obj.get("steps") or []]
        return cls(**known, steps=steps)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task_id": self.task_id, "agent": self.agent, "attempt": self.attempt}
        for key in ("project_root", "work_dir", "task_metadata", "run_id", "project_name_alias"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out["extra"] = self.extra
        out["steps"] = [
            {
                k: v
                for k, v in (
                    ("name", s.name),
                    ("size_bytes", s.size_bytes),
                    ("file_path", s.file_path),
                    ("content_url", s.content_url),
                    ("sha256", s.sha256),
                )
                if v is not None
            }
            for s in self.steps
        ]
        return out


__all__ = [
    "AgentContextView",
    "Ctx",
    "CtxMeta",
    "OperatorInfo",
    "OperatorKind",
    "SeniorBridge",
    "SpawnHook",
    "StepPointer",
]
