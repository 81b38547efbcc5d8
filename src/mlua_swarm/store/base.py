"""The one store interface every backend implements (memory, SQLite, PostgreSQL).

Writes that sit on the hot path (`append_step`, `append_replay`, `append_trace`, `put_output`,
`set_result`, `set_owner`, `beat`, `set_task_status`) are plain methods that only queue the write; a
caller that needs it on disk awaits `flush()`, the commit point (`commit_step` does both for one step,
which lets a backend take a shorter way). A step entry and its replay row are encoded once, together
(`step_row`), and stored as one record. Trace events are observational and
may be written in bulk a moment later (SQLite: within 0.1 s); `flush(Durability.SYNC)` and `close()`
write them too. Everything that reads, and every compare-and-set, is a coroutine, so a networked
backend fits behind the same calls.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from types import TracebackType
from typing import Any, NamedTuple, Self

from ..core.state import StepOutcome
from ..ids import RunId, TaskId
from . import semver
from .errors import BlueprintNotFound, InvalidRunTransition
from .operators import OperatorSessionRecord, SeatRecord
from .owner import owner_gone
from .records import (
    PRUNABLE,
    RUN_TRANSITIONS,
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
    canonical_json,
    dumps,
)

DEFAULT_TRACE_CAP = 10_000
"""Trace events kept per run; older ones are pruned as new ones arrive."""
TRACE_PAYLOAD_CAP = 8 * 1024
"""Bytes of encoded payload kept per trace event; larger payloads become a truncation marker."""
TRACE_HEAD_CHARS = 1024
STDERR_TAIL_CAP = 64 * 1024
"""Characters of a worker's stderr a step entry keeps (the end of it)."""
DEFAULT_STALE_SECS = 60.0
"""A run on another host whose heartbeat is older than this is taken for orphaned."""


HISTORY_STEP, HISTORY_REPLAY, HISTORY_STEP_REPLAY = 0, 1, 2
"""`history.kind` in the SQL backends: a step entry, a replay row, or a step entry with its replay row."""

RUN_COLUMNS = (
    "id, task_id, status, created_at, updated_at, result_json, input_json,"
    " owner_host, owner_pid, owner_started_at, heartbeat_at"
)
"""The `runs` columns the SQL backends read, in the order `run_from_row` takes them."""
TASK_COLUMNS = "id, goal, blueprint_ref_json, input_ctx_json, status, created_at, updated_at"
"""The `tasks` columns the SQL backends read, in the order `task_from_row` takes them."""
BLUEPRINT_SELECT = (
    "SELECT b.name, b.version, b.content_hash, b.document_json, b.semver, b.created_at,"
    " COALESCE(n.archived, FALSE) FROM blueprints b LEFT JOIN blueprint_names n ON n.name = b.name"
)
"""The SQL backends' Blueprint query, completed by a WHERE clause; `blueprint_from_row` reads its rows."""


def owner_update(owner: RunOwner | None, now: float) -> tuple[str, tuple[Any, ...]]:
    """The SQL backends' `SET` clause tail (`?` placeholders) and values that record `owner` with a
    heartbeat at `now`; empty without an owner."""
    if owner is None:
        return "", ()
    return (
        ", owner_host = ?, owner_pid = ?, owner_started_at = ?, heartbeat_at = ?",
        (owner.host, owner.pid, owner.started_at, now),
    )


def run_from_row(row: Sequence[Any]) -> RunRecord:
    """A `RunRecord` from a row of `RUN_COLUMNS`."""
    owner = None if row[7] is None else RunOwner(row[7], int(row[8]), float(row[9] or 0.0))
    return RunRecord(
        RunId(row[0]), TaskId(row[1]), RunStatus(row[2]), row[3], row[4], _loads(row[5]), row[6], owner, row[10]
    )


def task_from_row(row: Sequence[Any]) -> TaskRecord:
    """A `TaskRecord` from a row of `TASK_COLUMNS`."""
    return TaskRecord(TaskId(row[0]), row[1], _loads(row[2]), _loads(row[3]), RunStatus(row[4]), row[5], row[6])


def blueprint_from_row(row: Sequence[Any]) -> BlueprintVersion:
    """A `BlueprintVersion` from a row of `BLUEPRINT_SELECT`."""
    return BlueprintVersion(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], bool(row[6]))


def cap_trace_payload(payload: Any) -> tuple[Any, str | None]:
    """The payload as stored (a `{truncated, size_bytes, head}` marker past 8 KiB) and its JSON text."""
    if payload is None:
        return None, None
    text = dumps(payload)
    size = len(text.encode())
    if size <= TRACE_PAYLOAD_CAP:
        return payload, text
    marker = {"truncated": True, "size_bytes": size, "head": text[:TRACE_HEAD_CHARS]}
    return marker, dumps(marker)


class StepRow(NamedTuple):
    """A step entry with its optional replay row, JSON-encoded: an immutable snapshot every backend
    stores as is (the SQLite backend inserts it as the tail of a `history` row). The replay fields are
    all None when the step has no replay row."""

    step_ref: str
    step_id: str
    status: str
    attempt: int
    started_at: float | None
    finished_at: float | None
    stats_json: str | None
    stderr_tail: str | None
    error_json: str | None
    input_hash: str | None = None
    occurrence: int | None = None
    skip: bool | None = None
    value_json: str | None = None
    created_at: float | None = None
    node_index: int | None = None

    def replay_key(self) -> tuple[str, str, int] | None:
        """(step_ref, input_hash, occurrence), or None for a step without a replay row."""
        if self.input_hash is None or self.occurrence is None:
            return None
        return (self.step_ref, self.input_hash, self.occurrence)

    def entry(self) -> StepEntry:
        """The step entry this row encodes."""
        return step_entry(*self[:9], self.node_index)


def step_entry(
    step_ref: str,
    step_id: str,
    status: str,
    attempt: int,
    started_at: float | None,
    finished_at: float | None,
    stats_json: str | None,
    stderr_tail: str | None,
    error_json: str | None,
    node_index: int | None,
) -> StepEntry:
    """The step entry a stored step's columns encode (in `StepRow`'s order, its JSON text decoded)."""
    return StepEntry(
        step_ref,
        step_id,
        StepOutcome(status),
        attempt,
        started_at,
        finished_at,
        _loads(stats_json),
        stderr_tail,
        _loads(error_json),
        node_index,
    )


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def step_row(entry: StepEntry, replay: ReplayRow | None = None) -> StepRow:
    """Encode a step entry and its replay row (same step_ref; it needs its occurrence) into one `StepRow`."""
    if replay is None:
        return encode_step(
            entry.step_ref, entry.step_id, entry.status, entry.attempt, entry.started_at, entry.finished_at,
            entry.stats, entry.stderr_tail, entry.error, entry.node_index,
        )  # fmt: skip
    if replay.occurrence is None:
        raise ValueError("a stored replay row needs its occurrence")
    if replay.step_ref != entry.step_ref:
        raise ValueError(f"replay row of {replay.step_ref!r} given with the entry of {entry.step_ref!r}")
    return encode_step(
        entry.step_ref, entry.step_id, entry.status, entry.attempt, entry.started_at, entry.finished_at,
        entry.stats, entry.stderr_tail, entry.error, entry.node_index,
        replay.input_hash, replay.occurrence, replay.skip, replay.value, replay.created_at,
    )  # fmt: skip


def encode_step(
    step_ref: str,
    step_id: str,
    status: StepOutcome,
    attempt: int,
    started_at: float | None,
    finished_at: float | None,
    stats: Mapping[str, Any] | None,
    stderr: str | None,
    error: Any,
    node_index: int | None,
    input_hash: str | None = None,
    occurrence: int | None = None,
    skip: bool = False,
    value: Any = None,
    created_at: float = 0.0,
) -> StepRow:
    """A step's fields (those of a `StepEntry`, then those of its `ReplayRow` when `input_hash` is
    given) encoded into one `StepRow`, without building either record.

    Ids and the status are stored as plain `str` (a `str` subclass costs the SQLite binding an adapter lookup).
    """
    if input_hash is None:
        return _new_row(
            StepRow,
            (
                step_ref, str(step_id), status._value_, attempt, started_at, finished_at,
                None if stats is None else stats_json(stats), None if stderr is None else stderr_tail(stderr),
                None if error is None else dumps(error), None, None, None, None, None, node_index,
            ),
        )  # fmt: skip
    return _new_row(
        StepRow,
        (
            step_ref, str(step_id), status._value_, attempt, started_at, finished_at,
            None if stats is None else stats_json(stats), None if stderr is None else stderr_tail(stderr),
            None if error is None else dumps(error), input_hash, occurrence, skip,
            str(value) if type(value) is int else dumps(value), created_at or time.time(), node_index,
        ),
    )  # fmt: skip


_STATS_TEXTS: dict[tuple[tuple[str, Any], ...], str] = {}
"""The JSON of worker stats seen before, by their items: most steps of a run report the same few
(`{"worker_kind": "python"}`), so most steps need no encoding. Only stats whose keys and values are
all `str` are kept (`1`, `1.0` and `True` are equal as keys but not as JSON), at most `_STATS_TEXTS_MAX`."""
_STATS_TEXTS_MAX = 256


def stats_json(stats: Mapping[str, Any]) -> str:
    """A step's worker stats as stored (`dumps`), from a small memo when the same stats were seen."""
    try:
        key = tuple(stats.items())
        known = _STATS_TEXTS.get(key)
    except TypeError:  # a value that cannot be hashed (a list, a dict)
        return dumps(stats)
    if known is not None:
        return known
    text = dumps(stats)
    if len(_STATS_TEXTS) < _STATS_TEXTS_MAX and all(type(k) is str and type(v) is str for k, v in key):
        _STATS_TEXTS[key] = text
    return text


_new_row = tuple.__new__
"""Builds a `StepRow` from a full tuple of its fields without the Python-level `__new__` of a NamedTuple."""


def stderr_tail(text: str) -> str:
    """The last `STDERR_TAIL_CAP` characters of a worker's stderr."""
    return text if len(text) <= STDERR_TAIL_CAP else text[-STDERR_TAIL_CAP:]


def blueprint_hash(document: Any) -> str:
    """SHA-256 hex of the canonical JSON of a Blueprint: its content-addressed version id."""
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


def declared_semver(document: Any) -> str | None:
    """The Blueprint's own `version` field when it reads as a semantic version."""
    if isinstance(document, Mapping):
        declared = document.get("version")
        if isinstance(declared, str) and semver.parse_version(declared) is not None:
            return declared
    return None


def check_run_transition(current: Collection[RunStatus], target: RunStatus) -> None:
    """Refuse a compare-and-set whose move is illegal from any of the expected statuses."""
    for status in current:
        if target not in RUN_TRANSITIONS[status]:
            raise InvalidRunTransition(status.value, target.value)


def orphan_reason(run: RunRecord, now: float, stale_after: float) -> str | None:
    """Why a `running` run has no live owner (None when it still has one)."""
    if run.owner is not None:
        gone = owner_gone(run.owner)
        if gone is True:
            return f"owner process {run.owner.pid} on {run.owner.host} is gone"
        if gone is False:
            return None
    last = run.heartbeat_at if run.heartbeat_at is not None else run.updated_at
    if now - last > stale_after:
        return f"no heartbeat for {now - last:.0f}s"
    return None


def select_version(name: str, history: list[BlueprintVersion], selector: str) -> BlueprintVersion:
    """Pick `latest`, a fixed content hash (a prefix of at least 8 hex chars), or the newest semver match."""
    if not history:
        raise BlueprintNotFound(f"no blueprint named {name!r}", f"register it first: POST /v1/blueprints/{name}")
    if selector == "latest":
        return history[-1]
    wanted = selector.removeprefix("sha256:").lower()
    if len(wanted) >= 8 and all(c in "0123456789abcdef" for c in wanted):
        hits = [v for v in history if v.content_hash.startswith(wanted)]
        if hits:
            return hits[-1]
    if semver.is_requirement(selector):
        matching = [
            (parsed, v.version, v)
            for v in history
            if v.semver is not None
            and (parsed := semver.parse_version(v.semver)) is not None
            and semver.matches(selector, parsed)
        ]
        if matching:
            return max(matching, key=lambda t: (t[0], t[1]))[2]
    raise BlueprintNotFound(
        f"blueprint {name!r} has no version matching {selector!r}",
        "use 'latest', a content hash prefix, or a semver requirement such as '^1.2'",
    )


class Store(ABC):
    """Durable state of blueprints, tasks, runs, step entries, replay log, trace and outputs."""

    def __init__(
        self, url: str, *, durability: Durability = Durability.BATCH, trace_cap: int = DEFAULT_TRACE_CAP
    ) -> None:
        if trace_cap < 1:
            raise ValueError("trace_cap must be at least 1")
        self.url = url
        self.durability = Durability(durability)
        self.trace_cap = trace_cap

    @property
    def shown_url(self) -> str:
        """The URL as messages and answers may show it: without any password it holds."""
        return self.url

    # -- commit points and lifetime -------------------------------------------------------------

    @abstractmethod
    async def flush(self, durability: Durability | None = None) -> None:
        """Return once the writes queued so far are committed (`sync`: now, trace included; `batch`: this tick)."""

    async def open(self) -> None:
        """Connect and bring the schema up to date (a networked backend; the others are open once built)."""
        return None

    @abstractmethod
    async def close(self) -> None:
        """Commit what is queued and release the backend."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def release(self, run_id: RunId) -> None:
        """Drop per-run caches of a run this process stops writing to (its data stays)."""
        return None

    @abstractmethod
    async def token_secret(self) -> bytes:
        """The engine's HMAC secret, created once and kept so tokens survive a restart."""

    # -- operator sessions and seats --------------------------------------------------------------

    @abstractmethod
    async def put_operator_session(self, record: OperatorSessionRecord) -> None:
        """Insert or replace a session; returns once durable."""

    @abstractmethod
    async def delete_operator_session(self, sid: str) -> None:
        """Forget a session (and nothing else); returns once durable."""

    @abstractmethod
    async def list_operator_sessions(self) -> list[OperatorSessionRecord]:
        """Every stored session."""

    @abstractmethod
    async def put_seat(self, record: SeatRecord) -> None:
        """Insert or replace the seat `(run_id, slot)`; returns once durable."""

    @abstractmethod
    async def list_seats(self, run_id: RunId | None = None) -> list[SeatRecord]:
        """The seats of one run, or of every run."""

    # -- blueprints -----------------------------------------------------------------------------

    @abstractmethod
    async def put_blueprint(self, name: str, document: Any, *, semver: str | None = None) -> BlueprintVersion:
        """Store a version, or return the one with the same content hash; `semver` defaults to its `version`."""

    @abstractmethod
    async def blueprint_history(self, name: str) -> list[BlueprintVersion]:
        """Every version of `name`, oldest first."""

    @abstractmethod
    async def archive_blueprint(self, name: str, archived: bool = True) -> None:
        """Hide (or show again) a Blueprint in listings; its versions stay readable."""

    @abstractmethod
    async def list_blueprints(self, *, include_archived: bool = False) -> list[BlueprintVersion]:
        """The latest version of each Blueprint, by name."""

    async def get_blueprint(self, name: str, selector: str = "latest") -> BlueprintVersion:
        """One version of `name`: `latest`, a fixed content hash, or a semver requirement (`^1.2`)."""
        return select_version(name, await self.blueprint_history(name), selector)

    # -- tasks ----------------------------------------------------------------------------------

    @abstractmethod
    async def create_task(self, task: TaskRecord) -> None:
        """Insert a task and commit; raises `Duplicate` when the id exists."""

    @abstractmethod
    async def get_task(self, task_id: TaskId) -> TaskRecord:
        """The task, or `TaskRecordNotFound`."""

    @abstractmethod
    async def list_tasks(self, *, limit: int | None = None) -> list[TaskRecord]:
        """Tasks, newest first."""

    @abstractmethod
    def set_task_status(self, task_id: TaskId, status: RunStatus) -> None:
        """Queue a task status change."""

    # -- runs -----------------------------------------------------------------------------------

    @abstractmethod
    async def create_run(self, run: RunRecord) -> None:
        """Insert a run and commit; raises `Duplicate` when the id exists."""

    @abstractmethod
    async def get_run(self, run_id: RunId, *, with_result: bool = True) -> RunRecord:
        """The run, or `RunNotFound`; `with_result=False` leaves `result` None without reading it."""

    @abstractmethod
    async def list_runs(
        self,
        *,
        status: Collection[RunStatus] | None = None,
        task_id: TaskId | None = None,
        limit: int | None = None,
        with_result: bool = True,
    ) -> list[RunRecord]:
        """Runs, newest first, optionally filtered by status and task.

        `with_result=False` leaves every `result` None without reading it, so a listing costs the
        same however large the runs' results are.
        """

    @abstractmethod
    async def try_transition(
        self,
        run_id: RunId,
        current: RunStatus | Collection[RunStatus],
        target: RunStatus,
        *,
        owner: RunOwner | None = None,
    ) -> bool:
        """Compare-and-set the run's status and commit; False when it was not in `current`.

        With `owner`, the same update records it as the run's owner with a fresh heartbeat: a run
        taken back to `running` never shows its previous (gone) owner, which an orphan sweep in
        another process would take it back for.
        """

    @abstractmethod
    def set_result(self, run_id: RunId, result: Any) -> None:
        """Queue the run's result document."""

    async def run_state(self, run_id: RunId) -> tuple[RunStatus, TaskId]:
        """The run's status and task, or `RunNotFound`; its result and launch snapshot are not read."""
        run = await self.get_run(run_id, with_result=False)
        return run.status, run.task_id

    async def settle_run(self, run_id: RunId, result: Any, target: RunStatus) -> bool:
        """Store the run's result and move it from `running` to `target` (compare-and-set), committed;
        False when it was no longer running (its result is stored all the same)."""
        self.set_result(run_id, result)
        return await self.try_transition(run_id, RunStatus.RUNNING, target)

    @abstractmethod
    def set_owner(self, run_id: RunId, owner: RunOwner | None) -> None:
        """Queue the run's owning process."""

    @abstractmethod
    def beat(self, run_id: RunId, at: float) -> None:
        """Queue a heartbeat of the run's owner."""

    @abstractmethod
    async def delete_run(self, run_id: RunId) -> None:
        """Delete a run with its steps, replay log, trace and outputs (and its task when no run is left)."""

    # -- per-run history (reads of an unknown run raise `RunNotFound`; writes need an existing run) ---

    def append_step(self, run_id: RunId, entry: StepEntry, replay: ReplayRow | None = None) -> None:
        """Queue one step entry, with the replay row of its outcome when given (kept as one record).

        Raises `Duplicate` on a repeated replay key, like `append_replay`.
        """
        self.append_step_rows(run_id, (step_row(entry, replay),))

    async def commit_step(self, run_id: RunId, row: StepRow, durability: Durability) -> None:
        """Append one encoded step and return once it reached the commit point `durability` asks for.

        This is the run journal's path: the journal hands out each replay key once, after reading
        the run's stored log, so a backend may skip the `Duplicate` check here (SQLite does, and so
        keeps no memory per committed step).
        """
        self.append_step_rows(run_id, (row,))
        await self.flush(durability)

    @abstractmethod
    def append_step_rows(self, run_id: RunId, rows: Sequence[StepRow]) -> None:
        """Queue encoded step records (see `step_row`) in order; a replay key already stored raises `Duplicate`."""

    @abstractmethod
    async def list_steps(self, run_id: RunId) -> list[StepEntry]:
        """The run's step entries in the order they were written."""

    @abstractmethod
    def append_replay(self, run_id: RunId, row: ReplayRow) -> None:
        """Queue a replay row; raises `Duplicate` on a repeated (step_ref, input_hash, occurrence)."""

    @abstractmethod
    async def list_replay(self, run_id: RunId) -> list[ReplayRow]:
        """The run's replay log in insertion order."""

    async def count_history(self, run_id: RunId) -> tuple[int, int]:
        """How many step entries and replay rows the run has (backends count without loading them)."""
        return len(await self.list_steps(run_id)), len(await self.list_replay(run_id))

    @abstractmethod
    async def delete_replay_from(self, run_id: RunId, index: int) -> int:
        """Cut the replay log at `index` (0-based, insertion order) and commit; returns how many rows went."""

    @abstractmethod
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
        """Queue a trace event (payload capped at 8 KiB; oldest pruned past `trace_cap`); returns its seq.

        The seq is final unless another process appends to the same run's trace before this event is
        written; then the event moves after that one.
        """

    @abstractmethod
    async def list_trace(
        self,
        run_id: RunId,
        *,
        after: int = 0,
        limit: int | None = None,
        kind_prefix: str | None = None,
        step_ref: str | None = None,
    ) -> list[TraceEvent]:
        """Trace events with seq > `after`, oldest first."""

    @abstractmethod
    def put_output(self, record: OutputRecord) -> None:
        """Queue one output event of an attempt."""

    @abstractmethod
    async def list_outputs(
        self, run_id: RunId, *, step_id: str | None = None, attempt: int | None = None
    ) -> list[OutputRecord]:
        """Output events of a run, in the order written."""

    # -- maintenance ----------------------------------------------------------------------------

    async def sweep_orphans(self, *, stale_after: float = DEFAULT_STALE_SECS) -> list[RunId]:
        """Mark `running` runs whose owner is gone as `interrupted` (resumable); returns their ids."""
        now = time.time()
        swept: list[RunId] = []
        for run in await self.list_runs(status=[RunStatus.RUNNING], with_result=False):
            reason = orphan_reason(run, now, stale_after)
            if reason is None or not await self.try_transition(run.run_id, RunStatus.RUNNING, RunStatus.INTERRUPTED):
                continue
            self.append_trace(run.run_id, "core.run_interrupted", payload={"reason": reason})
            self.set_task_status(run.task_id, RunStatus.INTERRUPTED)
            swept.append(run.run_id)
        await self.flush()
        return swept

    async def prune(
        self, *, older_than: float | None = None, keep: int | None = None, include_interrupted: bool = False
    ) -> int:
        """Delete finished runs last updated more than `older_than` seconds ago and/or beyond the newest `keep`.

        With both given, a run goes only when it meets both. Only `done`, `failed` and `cancelled`
        runs go; `interrupted` runs (resumable) only with `include_interrupted`; running and
        pending runs never. The space the deleted runs took is given back (`reclaim`).
        """
        if older_than is None and keep is None:
            raise ValueError("prune needs older_than, keep, or both")
        if keep is not None and keep < 0:
            raise ValueError("keep must not be negative")
        prunable = PRUNABLE | {RunStatus.INTERRUPTED} if include_interrupted else PRUNABLE
        cutoff = None if older_than is None else time.time() - older_than
        doomed = 0
        for index, run in enumerate(await self.list_runs(with_result=False)):
            if run.status not in prunable:
                continue
            if keep is not None and index < keep:
                continue
            if cutoff is not None and run.updated_at >= cutoff:
                continue
            await self.delete_run(run.run_id)
            doomed += 1
        await self.flush()
        if doomed:
            await self.reclaim()
        return doomed

    async def reclaim(self) -> None:
        """Give the space of deleted rows back to the file system (a no-op where there is no file)."""
        return None
