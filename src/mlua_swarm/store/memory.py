"""The in-process store: plain dicts, nothing survives the process. Writes are committed as they are made."""

from __future__ import annotations

import copy
import dataclasses
import json
import secrets
import time
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..ids import RunId, TaskId
from .base import (
    DEFAULT_TRACE_CAP,
    StepRow,
    Store,
    blueprint_hash,
    cap_trace_payload,
    check_run_transition,
    declared_semver,
)
from .errors import Duplicate, RunNotFound, TaskRecordNotFound
from .operators import OperatorSessionRecord, SeatRecord
from .records import (
    BlueprintVersion,
    Durability,
    OutputRecord,
    ReplayRow,
    RunOwner,
    RunRecord,
    RunStatus,
    StepEntry,
    TaskRecord,
    TraceEvent,
    dumps,
)

# History rows are kept as tuples holding JSON text, as the SQLite backend stores them: a later change
# to a caller's value cannot reach the store, and both backends accept and return the same values.
_ReplayRowT = tuple[str, str, str, bool, int, float]
_TraceRow = tuple[int, float, str, str | None, int | None, str | None]
_OutputRow = tuple[str, int, str, str, float]


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@dataclass(slots=True)
class _RunLog:
    steps: list[StepRow] = field(default_factory=list)
    replay: list[_ReplayRowT] = field(default_factory=list)
    replay_keys: set[tuple[str, str, int]] = field(default_factory=set)
    trace: deque[_TraceRow] = field(default_factory=deque)
    trace_seq: int = 0
    outputs: list[_OutputRow] = field(default_factory=list)


class MemoryStore(Store):
    """Every entity in dicts; records are copied in and out so callers cannot alias stored state."""

    def __init__(
        self, url: str = "memory://", *, durability: Durability = Durability.BATCH, trace_cap: int = DEFAULT_TRACE_CAP
    ) -> None:
        super().__init__(url, durability=durability, trace_cap=trace_cap)
        self._secret: bytes | None = None
        self._blueprints: dict[str, list[BlueprintVersion]] = {}
        self._archived: set[str] = set()
        self._tasks: dict[TaskId, TaskRecord] = {}
        self._runs: dict[RunId, RunRecord] = {}
        self._logs: dict[RunId, _RunLog] = {}
        self._operator_sessions: dict[str, OperatorSessionRecord] = {}
        self._seats: dict[tuple[str, str], SeatRecord] = {}

    async def flush(self, durability: Durability | None = None) -> None:
        return None

    async def close(self) -> None:
        return None

    async def token_secret(self) -> bytes:
        if self._secret is None:
            self._secret = secrets.token_bytes(32)
        return self._secret

    # -- operator sessions and seats --------------------------------------------------------------

    async def put_operator_session(self, record: OperatorSessionRecord) -> None:
        self._operator_sessions[record.sid] = copy.deepcopy(record)

    async def delete_operator_session(self, sid: str) -> None:
        self._operator_sessions.pop(sid, None)

    async def list_operator_sessions(self) -> list[OperatorSessionRecord]:
        return [copy.deepcopy(r) for r in self._operator_sessions.values()]

    async def put_seat(self, record: SeatRecord) -> None:
        self._seats[(record.run_id, record.slot)] = copy.deepcopy(record)

    async def list_seats(self, run_id: RunId | None = None) -> list[SeatRecord]:
        return [copy.deepcopy(r) for r in self._seats.values() if run_id is None or r.run_id == run_id]

    # -- blueprints -----------------------------------------------------------------------------

    async def put_blueprint(self, name: str, document: Any, *, semver: str | None = None) -> BlueprintVersion:
        digest = blueprint_hash(document)
        history = self._blueprints.setdefault(name, [])
        for existing in history:
            if existing.content_hash == digest:
                return existing
        version = BlueprintVersion(
            name,
            len(history) + 1,
            digest,
            copy.deepcopy(document),
            semver if semver is not None else declared_semver(document),
            time.time(),
            name in self._archived,
        )
        history.append(version)
        return version

    async def blueprint_history(self, name: str) -> list[BlueprintVersion]:
        archived = name in self._archived
        return [replace(v, archived=archived) for v in self._blueprints.get(name, [])]

    async def archive_blueprint(self, name: str, archived: bool = True) -> None:
        if archived:
            self._archived.add(name)
        else:
            self._archived.discard(name)

    async def list_blueprints(self, *, include_archived: bool = False) -> list[BlueprintVersion]:
        return [
            replace(history[-1], archived=name in self._archived)
            for name, history in sorted(self._blueprints.items())
            if history and (include_archived or name not in self._archived)
        ]

    # -- tasks ----------------------------------------------------------------------------------

    async def create_task(self, task: TaskRecord) -> None:
        if task.task_id in self._tasks:
            raise Duplicate(f"task {task.task_id} exists")
        self._tasks[task.task_id] = copy.deepcopy(task)

    async def get_task(self, task_id: TaskId) -> TaskRecord:
        task = self._tasks.get(task_id)
        if task is None:
            raise TaskRecordNotFound(task_id)
        return copy.deepcopy(task)

    async def list_tasks(self, *, limit: int | None = None) -> list[TaskRecord]:
        tasks = sorted(self._tasks.values(), key=lambda t: t.created_at, reverse=True)
        return [copy.deepcopy(t) for t in tasks[:limit]]

    def set_task_status(self, task_id: TaskId, status: RunStatus) -> None:
        task = self._tasks.get(task_id)
        if task is not None:
            task.status = status
            task.updated_at = time.time()

    # -- runs -----------------------------------------------------------------------------------

    def _run(self, run_id: RunId) -> RunRecord:
        run = self._runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return run

    async def create_run(self, run: RunRecord) -> None:
        if run.run_id in self._runs:
            raise Duplicate(f"run {run.run_id} exists")
        self._runs[run.run_id] = copy.deepcopy(run)
        self._logs[run.run_id] = _RunLog()

    async def get_run(self, run_id: RunId, *, with_result: bool = True) -> RunRecord:
        run = self._run(run_id)
        return copy.deepcopy(run if with_result else dataclasses.replace(run, result=None))

    async def list_runs(
        self,
        *,
        status: Collection[RunStatus] | None = None,
        task_id: TaskId | None = None,
        limit: int | None = None,
        with_result: bool = True,
    ) -> list[RunRecord]:
        # dicts keep insertion order, so reversing breaks created_at ties newest-first.
        runs = sorted(reversed(self._runs.values()), key=lambda r: r.created_at, reverse=True)
        picked = [
            r for r in runs if (status is None or r.status in status) and (task_id is None or r.task_id == task_id)
        ]
        return [copy.deepcopy(r if with_result else dataclasses.replace(r, result=None)) for r in picked[:limit]]

    async def try_transition(
        self,
        run_id: RunId,
        current: RunStatus | Collection[RunStatus],
        target: RunStatus,
        *,
        owner: RunOwner | None = None,
    ) -> bool:
        expected = {current} if isinstance(current, RunStatus) else set(current)
        check_run_transition(expected, target)
        run = self._run(run_id)
        if run.status not in expected:
            return False
        run.status = target
        run.updated_at = time.time()
        if owner is not None:
            run.owner = owner
            run.heartbeat_at = run.updated_at
        return True

    def set_result(self, run_id: RunId, result: Any) -> None:
        run = self._run(run_id)
        run.result = copy.deepcopy(result)
        run.updated_at = time.time()

    def set_owner(self, run_id: RunId, owner: RunOwner | None) -> None:
        self._run(run_id).owner = owner

    def beat(self, run_id: RunId, at: float) -> None:
        self._run(run_id).heartbeat_at = at

    async def delete_run(self, run_id: RunId) -> None:
        run = self._runs.pop(run_id, None)
        self._logs.pop(run_id, None)
        if run is not None and not any(r.task_id == run.task_id for r in self._runs.values()):
            self._tasks.pop(run.task_id, None)

    # -- per-run history ------------------------------------------------------------------------

    def _log(self, run_id: RunId) -> _RunLog:
        log = self._logs.get(run_id)
        if log is None:
            raise RunNotFound(run_id)
        return log

    def append_step_rows(self, run_id: RunId, rows: Sequence[StepRow]) -> None:
        log = self._log(run_id)
        keys = [key for r in rows if (key := r.replay_key()) is not None]
        for key in keys:
            if key in log.replay_keys:
                raise Duplicate(f"replay row {key} exists for run {run_id}")
        if len(set(keys)) < len(keys):
            raise Duplicate(f"replay rows for run {run_id} repeat a key")
        for r in rows:
            log.steps.append(r)
            if r.input_hash is not None:
                assert r.value_json is not None and r.skip is not None and r.occurrence is not None
                log.replay.append((r.step_ref, r.input_hash, r.value_json, r.skip, r.occurrence, r.created_at or 0.0))
        log.replay_keys.update(keys)

    async def list_steps(self, run_id: RunId) -> list[StepEntry]:
        return [r.entry() for r in self._log(run_id).steps]

    def append_replay(self, run_id: RunId, row: ReplayRow) -> None:
        if row.occurrence is None:
            raise ValueError("a stored replay row needs its occurrence")
        log = self._log(run_id)
        key = (row.step_ref, row.input_hash, row.occurrence)
        if key in log.replay_keys:
            raise Duplicate(f"replay row {key} exists for run {run_id}")
        stored = (
            row.step_ref,
            row.input_hash,
            dumps(row.value),
            row.skip,
            row.occurrence,
            row.created_at or time.time(),
        )
        log.replay_keys.add(key)
        log.replay.append(stored)

    async def list_replay(self, run_id: RunId) -> list[ReplayRow]:
        return [ReplayRow(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5]) for r in self._log(run_id).replay]

    async def delete_replay_from(self, run_id: RunId, index: int) -> int:
        log = self._log(run_id)
        cut = log.replay[max(index, 0) :]
        del log.replay[max(index, 0) :]
        for r in cut:
            log.replay_keys.discard((r[0], r[1], r[4]))
        return len(cut)

    def append_trace(
        self,
        run_id: RunId,
        kind: str,
        *,
        step_ref: str | None = None,
        attempt: int | None = None,
        payload: Any = None,
        ts: float | None = None,
    ) -> int:
        log = self._log(run_id)
        _, text = cap_trace_payload(payload)
        log.trace_seq += 1
        log.trace.append((log.trace_seq, time.time() if ts is None else ts, kind, step_ref, attempt, text))
        while len(log.trace) > self.trace_cap:
            log.trace.popleft()
        return log.trace_seq

    async def list_trace(
        self,
        run_id: RunId,
        *,
        after: int = 0,
        limit: int | None = None,
        kind_prefix: str | None = None,
        step_ref: str | None = None,
    ) -> list[TraceEvent]:
        events = [
            TraceEvent(run_id, r[0], r[1], r[2], r[3], r[4], _loads(r[5]))
            for r in self._log(run_id).trace
            if r[0] > after
            and (kind_prefix is None or r[2].startswith(kind_prefix))
            and (step_ref is None or r[3] == step_ref)
        ]
        return events[:limit]

    def put_output(self, record: OutputRecord) -> None:
        self._log(record.run_id).outputs.append(
            (record.step_id, record.attempt, record.producer, dumps(record.event), record.created_at or time.time())
        )

    async def list_outputs(
        self, run_id: RunId, *, step_id: str | None = None, attempt: int | None = None
    ) -> list[OutputRecord]:
        return [
            OutputRecord(run_id, r[0], r[1], r[2], json.loads(r[3]), r[4])
            for r in self._log(run_id).outputs
            if (step_id is None or r[0] == step_id) and (attempt is None or r[1] == attempt)
        ]
