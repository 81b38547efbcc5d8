"""The records every store backend keeps: tasks, runs, step entries, replay rows, trace events, outputs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from ..core.state import StepOutcome
from ..ids import RunId, TaskId
from ..jsontext import canonical, compact


class Durability(StrEnum):
    """When a step's outcome reaches disk: at once with fsync, at the end of the loop tick, or at the end."""

    SYNC = "sync"
    BATCH = "batch"
    EXIT = "exit"


class RunStatus(StrEnum):
    """The status of a run, and of the task it executes (a task takes its latest run's status)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"


R = RunStatus
RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    R.PENDING: frozenset({R.RUNNING, R.FAILED, R.INTERRUPTED, R.CANCELLED}),
    R.RUNNING: frozenset({R.DONE, R.FAILED, R.INTERRUPTED, R.CANCELLED}),
    R.INTERRUPTED: frozenset({R.RUNNING, R.FAILED, R.CANCELLED}),
    R.DONE: frozenset({R.RUNNING}),
    R.FAILED: frozenset({R.RUNNING}),
    R.CANCELLED: frozenset({R.RUNNING}),
}
"""Legal run moves. Terminal runs only go back to `running` (rerun-from); a cancelled run never ends done/failed."""

TERMINAL = frozenset({R.DONE, R.FAILED, R.INTERRUPTED, R.CANCELLED})
"""Statuses a run can be re-run from."""
PRUNABLE = frozenset({R.DONE, R.FAILED, R.CANCELLED})
"""Statuses `prune` deletes by default; `interrupted` runs are resumable and go only when asked."""


# One encoder each, built once: `json.dumps` with options builds a new encoder per call.
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(value: Any) -> str:
    """Compact JSON, the one encoding every backend stores.

    orjson does the common case; the stdlib encoder takes over for what orjson would treat differently:
    values it refuses (integers past 64 bits, types the stdlib refuses too) and any output holding `null`,
    since orjson also writes NaN and infinities as `null` where the stdlib keeps them.
    """
    try:
        text = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError:
        return compact(value)
    if b"null" in text:
        return compact(value)
    return text.decode()


canonical_json = canonical


@dataclass(frozen=True, slots=True)
class RunOwner:
    """The process driving a run; `started_at` is that process's start time, to tell a reused pid apart."""

    host: str
    pid: int
    started_at: float

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "started_at": self.started_at}


@dataclass(slots=True)
class TaskRecord:
    """A persisted work item; each run executes it once."""

    task_id: TaskId
    goal: str = ""
    blueprint_ref: Any = None
    input_ctx: Any = None
    status: RunStatus = RunStatus.PENDING
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "goal": self.goal,
            "blueprint_ref": self.blueprint_ref,
            "input_ctx": self.input_ctx,
            "status": self.status.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(slots=True)
class RunRecord:
    """One execution of a task: status, result, launch snapshot and owning process."""

    run_id: RunId
    task_id: TaskId
    status: RunStatus = RunStatus.PENDING
    created_at: float = 0.0
    updated_at: float = 0.0
    result: Any = None
    input_json: str | None = None
    """The launch snapshot (see `LaunchSnapshot`), needed to resume or re-run."""
    owner: RunOwner | None = None
    heartbeat_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "task_id": self.task_id,
            "status": self.status.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "result": self.result,
            "owner": None if self.owner is None else self.owner.to_json(),
            "heartbeat_at": self.heartbeat_at,
            "resumable": self.status is RunStatus.INTERRUPTED and self.input_json is not None,
        }


@dataclass(frozen=True, slots=True)
class LaunchSnapshot:
    """Everything needed to start a run again: the Blueprint JSON, the initial ctx, launch options."""

    blueprint: Any
    init: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The snapshot's JSON text, each part encoded on its own: a `null` in the Blueprint or the options
        sends only that part through the standard library (see `dumps`), not a large init ctx with it."""
        blueprint, init, options = dumps(self.blueprint), dumps(self.init), dumps(dict(self.options))
        return f'{{"blueprint":{blueprint},"init":{init},"options":{options}}}'

    @classmethod
    def from_json(cls, text: str) -> LaunchSnapshot:
        data = json.loads(text)
        return cls(data["blueprint"], data.get("init"), data.get("options") or {})


@dataclass(slots=True)
class StepEntry:
    """One finished step (its last attempt): what the dispatcher records, the journal writes and every
    store returns. Recording encodes it at once (`step_row`), so changing it afterwards reaches no store.

    Not frozen: a frozen dataclass sets each field through `object.__setattr__`, which costs more than
    the rest of a step's bookkeeping together.
    """

    step_ref: str
    step_id: str
    status: StepOutcome
    attempt: int = 1
    started_at: float | None = None
    finished_at: float | None = None
    stats: Mapping[str, Any] | None = None
    stderr_tail: str | None = None
    error: Any = None
    node_index: int | None = None
    """The flow node that ran the step (`flow.Step.index`); None in a store written before it was kept."""

    def to_json(self) -> dict[str, Any]:
        duration = None
        if self.started_at is not None and self.finished_at is not None:
            duration = round((self.finished_at - self.started_at) * 1000.0, 3)
        return {
            "step_ref": self.step_ref,
            "step_id": self.step_id,
            "status": self.status.value,
            "attempt": self.attempt,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_ms": duration,
            "stats": None if self.stats is None else dict(self.stats),
            "stderr_tail": self.stderr_tail,
            "error": self.error,
            "node_index": self.node_index,
        }


@dataclass(slots=True)
class ReplayRow:
    """A finished step's value keyed by (step_ref, input_hash, occurrence); `skip` marks a skip outcome.

    `occurrence` may be left `None` when handed to `RunJournal.record_step`, which assigns it.
    """

    step_ref: str
    input_hash: str
    value: Any
    skip: bool = False
    occurrence: int | None = None
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "step_ref": self.step_ref,
            "input_hash": self.input_hash,
            "occurrence": self.occurrence,
            "skip": self.skip,
            "value": self.value,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One observational event of a run; `seq` is per run, 1-based, never reused."""

    run_id: RunId
    seq: int
    ts: float
    kind: str
    step_ref: str | None = None
    attempt: int | None = None
    payload: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "step_ref": self.step_ref,
            "attempt": self.attempt,
            "payload": self.payload,
        }


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One output event (`OutputEvent.to_json()`) of one attempt, kept for inspection."""

    run_id: RunId
    step_id: str
    attempt: int
    producer: str
    event: Any
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "step_id": self.step_id,
            "attempt": self.attempt,
            "producer": self.producer,
            "event": self.event,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class BlueprintVersion:
    """One stored version of a named Blueprint, identified by the hash of its canonical JSON."""

    name: str
    version: int
    content_hash: str
    document: Any
    semver: str | None = None
    created_at: float = 0.0
    archived: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "content_hash": self.content_hash,
            "semver": self.semver,
            "created_at": self.created_at,
            "archived": self.archived,
        }
