"""The SQLite store: one WAL file, one writer connection used on the event loop's thread, batched commits.

Each write runs at once inside an open `BEGIN IMMEDIATE` transaction (a few microseconds); the commit is
scheduled with `loop.call_soon`, so every write queued in the same loop tick shares one commit. `flush()`
resolves once that commit is done (`sync` commits right away). A task that flushes twice in a row with
no other task flushing in between is a sequential writer: nobody can join its commit, so its `flush()`
commits at once, and its next step (`commit_step`) is a single autocommit insert, with no transaction
to open and no loop turn to wait for. Concurrent writers (fanout lanes, parallel runs) keep sharing
the tick's commit. Committed WAL transactions survive the process being killed; `synchronous=FULL`
(durability `sync`) also survives power loss. Other processes may open the same file: `busy_timeout`
makes a writer wait for the lock instead of failing, and each process holds the lock for at most two
loop turns. Two stores on one file in one thread take turns: starting a transaction first commits the
other's. Trace events are observational: they are written in bulk up to 0.1 s after they are queued,
off the steps' commits (`flush(SYNC)` and `close()` write them at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from ..ids import RunId, TaskId
from .base import (
    BLUEPRINT_SELECT,
    DEFAULT_TRACE_CAP,
    HISTORY_REPLAY,
    HISTORY_STEP,
    HISTORY_STEP_REPLAY,
    RUN_COLUMNS,
    TASK_COLUMNS,
    StepRow,
    Store,
    blueprint_from_row,
    blueprint_hash,
    cap_trace_payload,
    check_run_transition,
    declared_semver,
    owner_update,
    run_from_row,
    step_entry,
    task_from_row,
)
from .errors import Duplicate, RunNotFound, StoreUnusable, StoreWriteFailed, TaskRecordNotFound
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
from .schema import migrate

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
"""How long a writer waits for another process's write lock before giving up."""

TRACE_DELAY_SECS = 0.1
"""Trace events are written in bulk this long after the first one is queued (or at 512 queued)."""
TRACE_BATCH_ROWS = 512
_TRACE_INSERT = (
    "INSERT INTO trace (run_id, seq, ts, kind, step_ref, attempt, payload_json) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

_SIBLINGS: dict[tuple[str, int], weakref.WeakSet[SqliteStore]] = {}
"""Open stores per (file, thread). They share the thread, so one must commit before another can write."""
_OPENED: dict[tuple[str, int], int] = {}
"""Stores opened and not closed per (file, thread): below two, a store has no sibling to commit
(cheaper to ask than the weak set; a store dropped without `close` only keeps it high)."""

_EXIT, _SYNC = Durability.EXIT, Durability.SYNC
_HISTORY_TABLES = ("history", "trace", "outputs")
_STEP, _REPLAY, _STEP_REPLAY = HISTORY_STEP, HISTORY_REPLAY, HISTORY_STEP_REPLAY
_STEP_KINDS = (_STEP, _STEP_REPLAY)
_REPLAY_KINDS = (_REPLAY, _STEP_REPLAY)

SEQ_LIMIT = (1 << 32) - 1
"""A run's `history` rows are numbered 1 to this: a row's key is the run's base (`runs.num` times
2**32, see schema.py) plus its seq."""
RUN_NUM_LIMIT = (1 << 31) - 1
"""The largest run number (keys stay 64-bit signed integers); past it a new run takes a free one."""

_HISTORY_INSERT = (
    "INSERT INTO history (key, kind, step_ref, step_id, status, attempt, started_at, finished_at,"
    " stats_json, stderr_tail, error_json, input_hash, occurrence, skip, value_json, created_at, node_index)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_LEAN_HISTORY_INSERT = (
    "INSERT INTO history (key, kind, step_ref, step_id, status, attempt, started_at, finished_at,"
    " stats_json, input_hash, occurrence, skip, value_json, created_at, node_index)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_BARE_HISTORY_INSERT = (
    "INSERT INTO history (key, kind, step_ref, step_id, status, attempt, started_at, finished_at,"
    " input_hash, occurrence, skip, value_json, created_at, node_index)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_REPLAY_INSERT = (
    "INSERT INTO history (key, kind, step_ref, input_hash, occurrence, skip, value_json, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_RUN_ROWS = f"FROM history WHERE key BETWEEN ?1 AND ?1 + {SEQ_LIMIT}"
"""A run's `history` rows, in key (so seq) order; `?1` is the run's base."""


def _history_insert(key: int, kind: int, row: StepRow) -> tuple[str, tuple[Any, ...]]:
    """The statement and parameters that insert one step's `history` row under `key`.

    The sqlite3 module binds exact `str`, `int` and `float` values directly, but looks for an adapter
    (two failed attribute lookups, each raising and clearing an `AttributeError`) for anything else:
    `None`, a `bool`. A step with its replay row and no error or stderr, the common case, leaves its
    NULL columns out of the statement and binds plain values.
    """
    (
        ref, step_id, status, attempt, started, finished, stats, stderr, error,
        digest, occurrence, skip, value, created, node,
    ) = row  # fmt: skip
    if digest is None or stderr is not None or error is not None:
        return _HISTORY_INSERT, (key, kind, *row)
    if stats is None:
        return _BARE_HISTORY_INSERT, (
            key, kind, ref, step_id, status, attempt, started, finished,
            digest, occurrence, 1 if skip else 0, value, created, node,
        )  # fmt: skip
    return _LEAN_HISTORY_INSERT, (
        key, kind, ref, step_id, status, attempt, started, finished, stats,
        digest, occurrence, 1 if skip else 0, value, created, node,
    )  # fmt: skip


_STEPS_SELECT = (
    "SELECT step_ref, step_id, status, attempt, started_at, finished_at, stats_json, stderr_tail, error_json,"
    f" node_index {_RUN_ROWS} AND kind IN (?2, ?3) ORDER BY key"
)
_REPLAY_SELECT = (
    f"SELECT step_ref, input_hash, value_json, skip, occurrence, created_at {_RUN_ROWS} AND kind IN (?2, ?3)"
    " ORDER BY key"
)
_KEYS_SELECT = f"SELECT step_ref, input_hash, occurrence {_RUN_ROWS} AND kind IN (?2, ?3)"
_COUNT_SELECT = f"SELECT COALESCE(SUM(kind IN (?2, ?3)), 0), COALESCE(SUM(kind IN (?4, ?5)), 0) {_RUN_ROWS}"
_CUT_SELECT = f"SELECT key {_RUN_ROWS} AND kind IN (?2, ?3) ORDER BY key LIMIT 1 OFFSET ?4"
_TOP_SELECT = f"SELECT MAX(key) {_RUN_ROWS}"


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _is_key_clash(exc: sqlite3.IntegrityError) -> bool:
    return getattr(exc, "sqlite_errorname", "") == "SQLITE_CONSTRAINT_PRIMARYKEY"


_DAMAGE = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_CANTOPEN", "SQLITE_IOERR_SHORT_READ"})
_KEEP_IT = (
    "the file was left untouched: move it aside (`sqlite3 FILE .recover` may save its runs) to start a"
    " new store there, or pass --store with another file"
)


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return name in _DAMAGE or name.startswith("SQLITE_CORRUPT") or name.startswith("SQLITE_CANTOPEN")


def _create_store_file(path: Path) -> None:
    """Create a new store file whole: it is built beside `path` and linked into place, so a store
    file is never seen empty. Losing the race to another process creating it too is fine."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
    try:
        conn = sqlite3.connect(temporary, isolation_level=None)
        try:
            os.chmod(temporary, 0o600)
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn, str(path))
        finally:
            conn.close()
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    except (OSError, sqlite3.Error) as exc:
        raise StoreUnusable(f"cannot create the store {path}: {exc}", "check you may write to its folder") from None
    finally:
        for leftover in (
            temporary,
            temporary.with_name(temporary.name + "-wal"),
            temporary.with_name(temporary.name + "-shm"),
        ):
            leftover.unlink(missing_ok=True)


def _check_store_file(path: Path) -> None:
    """Refuse a path that cannot be a store before SQLite touches it: SQLite would start an empty
    store in a zero-length file, hiding that its history was lost (the store never creates one)."""
    if path.is_dir():
        raise StoreUnusable(f"the store {path} is a directory, not a SQLite file", "pass --store with a file path")
    if path.is_file() and path.stat().st_size == 0:
        raise StoreUnusable(f"the store {path} is an empty file (0 bytes): its runs, if it had any, are gone", _KEEP_IT)


def unusable_store(path: Path, exc: sqlite3.Error) -> StoreUnusable:
    """The error for a store file SQLite cannot read: what is wrong with it and what to do."""
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_NOTADB":
        what = "is not a SQLite database (a bad header, or not a store at all)"
    elif name.startswith("SQLITE_CANTOPEN"):
        what = "cannot be opened (check it exists and that you may read and write it and its folder)"
    else:
        what = f"is damaged ({exc})"
    return StoreUnusable(f"the store {path} {what}", _KEEP_IT)


def _is_write_failure(exc: sqlite3.Error) -> bool:
    """A write the file system refused (full disk, I/O error, read-only), as opposed to a bug or a lock."""
    name = getattr(exc, "sqlite_errorname", "")
    return name == "SQLITE_FULL" or name.startswith(("SQLITE_IOERR", "SQLITE_READONLY"))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class SqliteStore(Store):
    """A store in one SQLite file (see the module docstring for the commit model)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = Durability.BATCH,
        trace_cap: int = DEFAULT_TRACE_CAP,
    ) -> None:
        self.path = Path(path)
        super().__init__(f"sqlite://{self.path}", durability=durability, trace_cap=trace_cap)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnusable(
                f"cannot create the folder of the store {self.path}: {exc.strerror or exc}",
                "check the --store path: its folder must be a folder you may write",
            ) from None
        self._key = (str(self.path.resolve()), threading.get_ident())
        if not self.path.exists():
            _create_store_file(self.path)
        _check_store_file(self.path)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise unusable_store(self.path, exc) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.durability is Durability.SYNC else 'NORMAL'}")
            self._commit_siblings()
            migrate(conn, str(self.path))
        except sqlite3.DatabaseError as exc:
            conn.close()
            if not _is_damage(exc):
                raise
            raise unusable_store(self.path, exc) from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._cursor = conn.cursor()
        """Reused by the per-step insert (`Connection.execute` makes a cursor per call)."""
        self._commit_handle: asyncio.Handle | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._txn = 0
        """Number of the open (or last) write transaction."""
        self._committed = 0
        """Number of the last transaction that ended, committed or failed."""
        self._failed: tuple[int, sqlite3.Error | StoreWriteFailed] | None = None
        self._last_flusher: asyncio.Task[Any] | None = None
        """The task whose `flush` waited for the tick's commit last; when it flushes again, it commits at once."""
        self.commits = 0
        """Write transactions this store committed."""
        self._seqs: dict[tuple[str, RunId], int] = {}
        self._bases: dict[RunId, int] = {}
        """`history` key bases of the runs this store writes (see `_history_key`)."""
        self._replay_keys: dict[RunId, set[tuple[str, str, int]]] = {}
        self._closed = False
        self._traces: list[tuple[Any, ...]] = []
        self._trace_handle: asyncio.TimerHandle | None = None
        _SIBLINGS.setdefault(self._key, weakref.WeakSet()).add(self)
        _OPENED[self._key] = _OPENED.get(self._key, 0) + 1

    # -- the commit model -----------------------------------------------------------------------

    def _commit_siblings(self) -> None:
        """Commit other stores on this file and thread first: waiting for their lock would never end."""
        if _OPENED.get(self._key, 0) < 2:
            return
        siblings = _SIBLINGS.get(self._key)
        if siblings is None or len(siblings) < 2:
            return
        for sibling in list(siblings):
            if sibling is not self and sibling._conn.in_transaction:
                sibling._commit()

    def _begin(self) -> bool:
        """Open the write transaction if none is open and schedule its commit; False without a loop."""
        conn = self._conn
        if not conn.in_transaction:
            self._commit_siblings()
            conn.execute("BEGIN IMMEDIATE")
            self._txn += 1
        if self._commit_handle is None:
            loop = _running_loop()
            if loop is None:
                return False
            self._commit_handle = loop.call_soon(self._commit_tick, loop, asyncio.current_task(loop))
        return True

    def _commit_tick(self, loop: asyncio.AbstractEventLoop, opener: asyncio.Task[Any] | None) -> None:
        """The tick's commit. When the last task to wait for it is the one that opened the transaction
        (typically a lone writer), it waits one loop turn more: the tasks that one started in its tick
        (a fanout's later lanes, given tasks by the lane before them when it waited) write into it first
        and share it."""
        if opener is not None and opener is self._last_flusher:
            self._commit_handle = loop.call_soon(self._commit)
        else:
            self._commit()

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """Run one write inside the open transaction; without an event loop it commits at once."""
        scheduled = self._begin()
        try:
            return self._conn.execute(sql, params)
        except sqlite3.OperationalError as exc:
            if _is_write_failure(exc):
                raise self._write_failed(exc) from None
            raise
        finally:
            if not scheduled:
                self._commit()

    def _write_failed(self, exc: sqlite3.Error) -> StoreWriteFailed:
        return StoreWriteFailed(
            f"the store {self.path} could not be written: {exc}",
            "free space (or fix the file system), then `mse runs resume RUN_ID`: the run is kept as interrupted",
        )

    def _commit(self) -> None:
        """Commit the open transaction and settle everyone waiting on it; a failed commit rolls back."""
        if self._commit_handle is not None:
            self._commit_handle.cancel()
            self._commit_handle = None
        if self._conn.in_transaction:
            try:
                self._conn.execute("COMMIT")
                self.commits += 1
            except sqlite3.Error as exc:
                # A full disk or an I/O error may already have rolled the transaction back.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                self._failed = (self._txn, self._write_failed(exc) if _is_write_failure(exc) else exc)
                # Counters and replay keys may name rows that were just rolled back: read them again.
                self._seqs.clear()
                self._bases.clear()
                self._replay_keys.clear()
                log.error("store %s: commit failed, its writes are lost: %s", self.path, exc)
            self._committed = self._txn
        waiters, self._waiters = self._waiters, []
        for txn, waiter in waiters:
            if not waiter.done():
                self._settle(txn, waiter)

    def _settle(self, txn: int, waiter: asyncio.Future[None]) -> None:
        failed = self._failed
        if failed is not None and failed[0] == txn:
            waiter.set_exception(failed[1])
        else:
            waiter.set_result(None)

    def _raise_if_failed(self, txn: int) -> None:
        failed = self._failed
        if failed is not None and failed[0] == txn:
            raise failed[1]

    async def flush(self, durability: Durability | None = None) -> None:
        mode = self.durability if durability is None else durability
        if mode is Durability.SYNC and self._traces:
            self._write_traces()
        txn = self._txn
        if self._committed >= txn:
            self._raise_if_failed(txn)
            return
        loop = _running_loop()
        if mode is Durability.SYNC or loop is None:
            self._commit()
            self._raise_if_failed(txn)
            return
        if mode is Durability.EXIT:
            return
        task = asyncio.current_task(loop)
        if task is self._last_flusher:
            # The same task flushed last time: a sequential writer, which nobody joins in this tick.
            self._commit()
            self._raise_if_failed(txn)
            return
        self._last_flusher = task
        # The tick's commit was scheduled with the transaction's first write, so it runs before this
        # task resumes from one yield, after the other tasks that run in this tick wrote into it too;
        # the future is only for a commit that has not happened by then.
        await asyncio.sleep(0)
        if self._committed < txn:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append((txn, waiter))
            await waiter
        self._raise_if_failed(txn)

    def _commit_now(self) -> None:
        """Commit at once, raising if the commit fails."""
        txn = self._txn
        if self._conn.in_transaction:
            self._commit()
        self._raise_if_failed(txn)

    async def close(self) -> None:
        self.close_sync()

    def close_sync(self) -> None:
        """Commit what is queued and close the connection (idempotent); for callers without an event loop."""
        if self._closed:
            return
        self._write_traces()
        self._commit_now()
        self._conn.close()
        self._closed = True
        opened = _OPENED.pop(self._key, 1) - 1
        if opened > 0:
            _OPENED[self._key] = opened
        siblings = _SIBLINGS.get(self._key)
        if siblings is not None:
            siblings.discard(self)
            if not siblings:
                del _SIBLINGS[self._key]

    async def reclaim(self) -> None:
        """Rewrite the file without its free pages (VACUUM), then truncate the WAL it went through."""
        self._write_traces()
        self._commit_now()
        self._commit_siblings()
        self._conn.execute("VACUUM")
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def token_secret(self) -> bytes:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'token_secret'").fetchone()
        if row is None:
            fresh = secrets.token_bytes(32)
            self._write("INSERT OR IGNORE INTO meta (key, value) VALUES ('token_secret', ?)", (fresh,))
            self._commit_now()
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'token_secret'").fetchone()
        return bytes(row[0])

    # -- operator sessions and seats --------------------------------------------------------------

    async def put_operator_session(self, record: OperatorSessionRecord) -> None:
        self._write(
            "INSERT OR REPLACE INTO operator_sessions (sid, token_digest, join_desc, capability_manifest_json,"
            " joined_at, last_access, observed_json, observed_total) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.sid,
                record.token_digest,
                record.desc,
                dumps(record.capability_manifest),
                record.joined_at,
                record.last_access,
                dumps(record.observed),
                record.observed_total,
            ),
        )
        self._commit_now()

    async def delete_operator_session(self, sid: str) -> None:
        self._write("DELETE FROM operator_sessions WHERE sid = ?", (sid,))
        self._commit_now()

    async def list_operator_sessions(self) -> list[OperatorSessionRecord]:
        rows = self._conn.execute(
            "SELECT sid, token_digest, join_desc, capability_manifest_json, joined_at, last_access, observed_json,"
            " observed_total FROM operator_sessions"
        )
        return [
            OperatorSessionRecord(r[0], r[1], r[2], _loads(r[3]), r[4], r[5], _loads(r[6]) or [], r[7]) for r in rows
        ]

    async def put_seat(self, record: SeatRecord) -> None:
        self._write(
            "INSERT OR REPLACE INTO operator_seats (run_id, slot, op, op_desc, gen) VALUES (?, ?, ?, ?, ?)",
            (record.run_id, record.slot, record.op, record.desc, record.gen),
        )
        self._commit_now()

    async def list_seats(self, run_id: RunId | None = None) -> list[SeatRecord]:
        sql = "SELECT run_id, slot, op, op_desc, gen FROM operator_seats"
        rows = (
            self._conn.execute(sql, ()) if run_id is None else self._conn.execute(sql + " WHERE run_id = ?", (run_id,))
        )
        return [SeatRecord(*r) for r in rows]

    # -- blueprints -----------------------------------------------------------------------------

    def _blueprint_rows(self, sql: str, params: tuple[Any, ...]) -> list[BlueprintVersion]:
        return [blueprint_from_row(r) for r in self._conn.execute(sql, params)]

    _BP_SELECT = BLUEPRINT_SELECT

    async def put_blueprint(self, name: str, document: Any, *, semver: str | None = None) -> BlueprintVersion:
        digest = blueprint_hash(document)
        existing = self._blueprint_rows(f"{self._BP_SELECT} WHERE b.name = ? AND b.content_hash = ?", (name, digest))
        if existing:
            return existing[0]
        self._write("INSERT OR IGNORE INTO blueprint_names (name) VALUES (?)", (name,))
        row = self._conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM blueprints WHERE name = ?", (name,))
        version = int(row.fetchone()[0])
        chosen = semver if semver is not None else declared_semver(document)
        self._write(
            "INSERT INTO blueprints (name, version, content_hash, semver, document_json, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (name, version, digest, chosen, dumps(document), time.time()),
        )
        self._commit_now()
        return self._blueprint_rows(f"{self._BP_SELECT} WHERE b.name = ? AND b.version = ?", (name, version))[0]

    async def blueprint_history(self, name: str) -> list[BlueprintVersion]:
        return self._blueprint_rows(f"{self._BP_SELECT} WHERE b.name = ? ORDER BY b.version", (name,))

    async def archive_blueprint(self, name: str, archived: bool = True) -> None:
        self._write(
            "INSERT INTO blueprint_names (name, archived) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET archived = excluded.archived",
            (name, int(archived)),
        )
        self._commit_now()

    async def list_blueprints(self, *, include_archived: bool = False) -> list[BlueprintVersion]:
        where = "" if include_archived else " AND COALESCE(n.archived, 0) = 0"
        return self._blueprint_rows(
            f"{self._BP_SELECT} WHERE b.version = (SELECT MAX(version) FROM blueprints WHERE name = b.name)"
            f"{where} ORDER BY b.name",
            (),
        )

    # -- tasks ----------------------------------------------------------------------------------

    async def create_task(self, task: TaskRecord) -> None:
        try:
            self._write(
                "INSERT INTO tasks (id, goal, blueprint_ref_json, input_ctx_json, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    task.task_id,
                    task.goal,
                    dumps(task.blueprint_ref),
                    dumps(task.input_ctx),
                    task.status.value,
                    task.created_at,
                    task.updated_at,
                ),
            )
        except sqlite3.IntegrityError as exc:
            if not _is_key_clash(exc):
                raise
            raise Duplicate(f"task {task.task_id} exists") from exc
        await self.flush()

    async def get_task(self, task_id: TaskId) -> TaskRecord:
        row = self._conn.execute(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?",
            (task_id,),
        ).fetchone()
        if row is None:
            raise TaskRecordNotFound(task_id)
        return task_from_row(row)

    async def list_tasks(self, *, limit: int | None = None) -> list[TaskRecord]:
        rows = self._conn.execute(
            f"SELECT {TASK_COLUMNS} FROM tasks ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [task_from_row(r) for r in rows]

    def set_task_status(self, task_id: TaskId, status: RunStatus) -> None:
        self._write("UPDATE tasks SET status = ?, updated_at = ? WHERE id = ?", (status.value, time.time(), task_id))

    # -- runs -----------------------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> None:
        owner = run.owner
        scheduled = self._begin()
        try:
            self._write(
                f"INSERT INTO runs ({RUN_COLUMNS}, num) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    run.task_id,
                    run.status.value,
                    run.created_at,
                    run.updated_at,
                    None if run.result is None else dumps(run.result),
                    run.input_json,
                    None if owner is None else owner.host,
                    None if owner is None else owner.pid,
                    None if owner is None else owner.started_at,
                    run.heartbeat_at,
                    self._new_run_num(),
                ),
            )
        except sqlite3.IntegrityError as exc:
            if not _is_key_clash(exc):
                raise
            raise Duplicate(f"run {run.run_id} exists") from exc
        finally:
            if not scheduled:
                self._commit()
        await self.flush()

    def _new_run_num(self) -> int:
        """A number for a new run, read inside the write transaction: one past the largest, or once
        that is `RUN_NUM_LIMIT`, a free one (a deleted run's)."""
        top = self._conn.execute("SELECT MAX(num) FROM runs").fetchone()[0]
        if top is None or top < RUN_NUM_LIMIT:
            return 1 if top is None else int(top) + 1
        row = self._conn.execute(
            "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM runs WHERE num = 1) UNION ALL"
            " SELECT num + 1 FROM runs AS r WHERE num < ?1 AND NOT EXISTS (SELECT 1 FROM runs WHERE num = r.num + 1)"
            " LIMIT 1",
            (RUN_NUM_LIMIT,),
        ).fetchone()
        if row is None:
            raise StoreWriteFailed(
                f"the store {self.path} holds {RUN_NUM_LIMIT:,} runs, the most one SQLite store numbers",
                "delete finished runs (`mse runs prune`) or pass --store with another file",
            )
        return int(row[0])

    async def get_run(self, run_id: RunId, *, with_result: bool = True) -> RunRecord:
        columns = RUN_COLUMNS if with_result else RUN_COLUMNS.replace("result_json", "NULL")
        row = self._conn.execute(f"SELECT {columns} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return run_from_row(row)

    async def run_state(self, run_id: RunId) -> tuple[RunStatus, TaskId]:
        row = self._conn.execute("SELECT status, task_id FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return RunStatus(row[0]), TaskId(row[1])

    async def list_runs(
        self,
        *,
        status: Collection[RunStatus] | None = None,
        task_id: TaskId | None = None,
        limit: int | None = None,
        with_result: bool = True,
    ) -> list[RunRecord]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            wanted = [RunStatus(s).value for s in status]
            where.append(f"status IN ({', '.join('?' * len(wanted))})" if wanted else "0")
            params.extend(wanted)
        if task_id is not None:
            where.append("task_id = ?")
            params.append(task_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        params.append(-1 if limit is None else limit)
        columns = RUN_COLUMNS if with_result else RUN_COLUMNS.replace("result_json", "NULL")
        rows = self._conn.execute(
            f"SELECT {columns} FROM runs{clause} ORDER BY created_at DESC, rowid DESC LIMIT ?", params
        )
        return [run_from_row(r) for r in rows]

    async def try_transition(
        self,
        run_id: RunId,
        current: RunStatus | Collection[RunStatus],
        target: RunStatus,
        *,
        owner: RunOwner | None = None,
    ) -> bool:
        expected = [current] if isinstance(current, RunStatus) else list(current)
        check_run_transition(expected, target)
        now = time.time()
        claim, claimed = owner_update(owner, now)
        cursor = self._write(
            f"UPDATE runs SET status = ?, updated_at = ?{claim} WHERE id = ?"
            f" AND status IN ({', '.join('?' * len(expected))})",
            (target.value, now, *claimed, run_id, *(s.value for s in expected)),
        )
        changed = cursor.rowcount == 1
        if not changed:
            await self.get_run(run_id, with_result=False)
        self._commit_now()
        return changed

    async def settle_run(self, run_id: RunId, result: Any, target: RunStatus) -> bool:
        """One UPDATE for the result and the status: SQLite rewrites a row whole when its size changes,
        so two updates would write a large result and launch snapshot twice."""
        check_run_transition([RunStatus.RUNNING], target)
        text = dumps(result)
        scheduled = self._begin()
        try:
            row = self._conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            changed: bool = row[0] == RunStatus.RUNNING.value
            self._conn.execute(
                "UPDATE runs SET result_json = ?, updated_at = ?, status = ? WHERE id = ?",
                (text, time.time(), target.value if changed else row[0], run_id),
            )
        except sqlite3.OperationalError as exc:
            if _is_write_failure(exc):
                raise self._write_failed(exc) from None
            raise
        finally:
            if not scheduled:
                self._commit()
        self._commit_now()
        return changed

    def set_result(self, run_id: RunId, result: Any) -> None:
        sql = "UPDATE runs SET result_json = ?, updated_at = ? WHERE id = ?"
        self._write(sql, (dumps(result), time.time(), run_id))

    def set_owner(self, run_id: RunId, owner: RunOwner | None) -> None:
        values = (None, None, None) if owner is None else (owner.host, owner.pid, owner.started_at)
        self._write(
            "UPDATE runs SET owner_host = ?, owner_pid = ?, owner_started_at = ? WHERE id = ?", (*values, run_id)
        )

    def beat(self, run_id: RunId, at: float) -> None:
        self._write("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (at, run_id))

    async def delete_run(self, run_id: RunId) -> None:
        self._write_traces()
        row = self._conn.execute("SELECT task_id, num FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is not None:
            base = int(row[1]) << 32
            self._write("DELETE FROM history WHERE key BETWEEN ? AND ?", (base, base + SEQ_LIMIT))
        for table in ("trace", "outputs"):
            self._write(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        self._write("DELETE FROM runs WHERE id = ?", (run_id,))
        if row is not None:
            self._write(
                "DELETE FROM tasks WHERE id = ? AND NOT EXISTS (SELECT 1 FROM runs WHERE task_id = ?)", (row[0], row[0])
            )
        self.release(run_id)

    # -- per-run history ------------------------------------------------------------------------

    def _require_run(self, run_id: RunId) -> int:
        """`RunNotFound` for an unknown run; else the run's `history` key base (its number times 2**32)."""
        row = self._conn.execute("SELECT num FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return int(row[0]) << 32

    def _base(self, run_id: RunId) -> int:
        """The `history` key base of a run this store writes, read once (until `release`)."""
        base = self._bases.get(run_id)
        if base is None:
            base = self._bases[run_id] = self._require_run(run_id)
        return base

    def _history_key(self, run_id: RunId, seq: int) -> int:
        """The `history` key of the run's row `seq`."""
        if seq > SEQ_LIMIT:
            raise StoreWriteFailed(
                f"run {run_id} has {SEQ_LIMIT:,} history rows, the most a SQLite store keeps for one run",
                "the run is kept as interrupted; start the work again as a new run",
            )
        return self._base(run_id) + seq

    def _params(self, table: str, run_id: RunId, seq: int, values: Sequence[Any]) -> tuple[Any, ...]:
        """A row's parameters: `(run_id, seq, *values)`, and `(key, *values)` for `history`."""
        if table == "history":
            return (self._history_key(run_id, seq), *values)
        return (run_id, seq, *values)

    def _max_seq(self, table: str, run_id: RunId) -> int:
        """The run's top seq in `table`."""
        if table == "history":
            base = self._base(run_id)
            top = self._conn.execute(_TOP_SELECT, (base,)).fetchone()[0]
            return 0 if top is None else int(top) - base
        row = self._conn.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table} WHERE run_id = ?", (run_id,))
        return int(row.fetchone()[0])

    def _next_seq(self, table: str, run_id: RunId) -> int:
        """The run's next seq in `table`, from a per-run counter read from the file once."""
        key = (table, run_id)
        seq = self._seqs.get(key)
        seq = (self._max_seq(table, run_id) if seq is None else seq) + 1
        self._seqs[key] = seq
        return seq

    def _insert_seq(self, table: str, sql: str, run_id: RunId, seq: int, values: tuple[Any, ...]) -> int:
        """Insert a row at `seq`; when another process took that seq, re-read the top and insert after it.

        The retry runs inside our write transaction, so nobody else can take the new seq.
        """
        try:
            self._write(sql, self._params(table, run_id, seq, values))
        except sqlite3.IntegrityError as exc:
            if not _is_key_clash(exc):
                raise
            seq = self._max_seq(table, run_id) + 1
            self._write(sql, self._params(table, run_id, seq, values))
        key = (table, run_id)
        self._seqs[key] = max(self._seqs.get(key, 0), seq)
        return seq

    def _append(self, table: str, sql: str, run_id: RunId, values: tuple[Any, ...]) -> int:
        """Insert a history row under the run's next seq; returns the seq."""
        return self._insert_seq(table, sql, run_id, self._next_seq(table, run_id), values)

    def release(self, run_id: RunId) -> None:
        for table in _HISTORY_TABLES:
            self._seqs.pop((table, run_id), None)
        self._bases.pop(run_id, None)
        self._replay_keys.pop(run_id, None)

    def append_step_rows(self, run_id: RunId, rows: Sequence[StepRow]) -> None:
        if not rows:
            return
        if len(rows) == 1:
            self._append_step_row(run_id, rows[0])
            return
        keys = self._keys_of(run_id)
        fresh = [key for r in rows if (key := r.replay_key()) is not None]
        for key in fresh:
            if key in keys:
                raise Duplicate(f"replay row {key} exists for run {run_id}")
        if len(set(fresh)) < len(fresh):
            raise Duplicate(f"replay rows for run {run_id} repeat a key")
        seq = self._next_seq("history", run_id) - 1
        queued = [
            (run_id, seq + i, _STEP if r.input_hash is None else _STEP_REPLAY, *r) for i, r in enumerate(rows, start=1)
        ]
        scheduled = self._begin()
        try:
            top = self._insert_many("history", _HISTORY_INSERT, queued)
        finally:
            if not scheduled:
                self._commit()
        self._seqs[("history", run_id)] = top[run_id]
        keys.update(fresh)

    def _free_replay_key(self, run_id: RunId, row: StepRow) -> tuple[str, str, int] | None:
        """The row's replay key, checked unused (None for a step without a replay row)."""
        key = row.replay_key()
        if key is None:
            return None
        if key in self._keys_of(run_id):
            raise Duplicate(f"replay row {key} exists for run {run_id}")
        return key

    def _append_step_row(self, run_id: RunId, row: StepRow) -> None:
        """One step inside the open transaction: one insert, and its replay key remembered."""
        key = self._free_replay_key(run_id, row)
        self._append("history", _HISTORY_INSERT, run_id, (_STEP if key is None else _STEP_REPLAY, *row))
        if key is not None:
            self._replay_keys[run_id].add(key)

    def _note_key(self, run_id: RunId, row: StepRow) -> None:
        """Add a committed step's replay key to the run's key set, if one was loaded."""
        keys = self._replay_keys.get(run_id)
        if keys is not None and (key := row.replay_key()) is not None:
            keys.add(key)

    async def commit_step(self, run_id: RunId, row: StepRow, durability: Durability) -> None:
        """A sequential writer (see `flush`) with nothing else queued inserts the step as its own transaction.

        The replay key is the journal's to keep unique (see `Store.commit_step`): a run's committed
        steps leave nothing behind in this object unless the run's key set was loaded for a check.
        """
        kind = _STEP if row.input_hash is None else _STEP_REPLAY
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no event loop
            task = None
        if (
            task is None
            or task is not self._last_flusher
            or self._conn.in_transaction
            or durability is _EXIT
            or (durability is _SYNC and self._traces)
        ):
            self._append("history", _HISTORY_INSERT, run_id, (kind, *row))
            self._note_key(run_id, row)
            await self.flush(durability)
            return
        if _OPENED.get(self._key, 0) > 1:
            self._commit_siblings()
        try:
            self._cursor.execute(
                *_history_insert(self._history_key(run_id, self._next_seq("history", run_id)), kind, row)
            )
        except sqlite3.IntegrityError as exc:
            if not _is_key_clash(exc):
                raise
            # Another process took the seq: insert after its rows under the write lock.
            self._append("history", _HISTORY_INSERT, run_id, (kind, *row))
            self._note_key(run_id, row)
            self._commit_now()
            return
        self._txn += 1
        self._committed = self._txn
        self.commits += 1
        if self._replay_keys:
            self._note_key(run_id, row)

    async def list_steps(self, run_id: RunId) -> list[StepEntry]:
        rows = self._conn.execute(_STEPS_SELECT, (self._require_run(run_id), *_STEP_KINDS))
        return [step_entry(*r) for r in rows]

    def _keys_of(self, run_id: RunId) -> set[tuple[str, str, int]]:
        keys = self._replay_keys.get(run_id)
        if keys is None:
            rows = self._conn.execute(_KEYS_SELECT, (self._base(run_id), *_REPLAY_KINDS))
            keys = self._replay_keys[run_id] = {(r[0], r[1], r[2]) for r in rows}
        return keys

    def append_replay(self, run_id: RunId, row: ReplayRow) -> None:
        if row.occurrence is None:
            raise ValueError("a stored replay row needs its occurrence")
        keys = self._keys_of(run_id)
        key = (row.step_ref, row.input_hash, row.occurrence)
        if key in keys:
            raise Duplicate(f"replay row {key} exists for run {run_id}")
        self._append(
            "history",
            _REPLAY_INSERT,
            run_id,
            (
                _REPLAY,
                row.step_ref,
                row.input_hash,
                row.occurrence,
                int(row.skip),
                dumps(row.value),
                row.created_at or time.time(),
            ),
        )
        keys.add(key)

    async def list_replay(self, run_id: RunId) -> list[ReplayRow]:
        rows = self._conn.execute(_REPLAY_SELECT, (self._require_run(run_id), *_REPLAY_KINDS))
        return [ReplayRow(r[0], r[1], json.loads(r[2]), bool(r[3]), r[4], r[5]) for r in rows]

    async def count_history(self, run_id: RunId) -> tuple[int, int]:
        row = self._conn.execute(_COUNT_SELECT, (self._require_run(run_id), *_STEP_KINDS, *_REPLAY_KINDS)).fetchone()
        return int(row[0]), int(row[1])

    async def delete_replay_from(self, run_id: RunId, index: int) -> int:
        """Cut the log; a step stored with its replay row keeps its entry and loses the replay part."""
        base = self._require_run(run_id)
        row = self._conn.execute(_CUT_SELECT, (base, *_REPLAY_KINDS, max(index, 0))).fetchone()
        if row is None:
            return 0
        cut = (row[0], base + SEQ_LIMIT)
        dropped: int = self._write(
            "DELETE FROM history WHERE key BETWEEN ? AND ? AND kind = ?", (*cut, _REPLAY)
        ).rowcount
        dropped += self._write(
            "UPDATE history SET kind = ?, input_hash = NULL, occurrence = NULL, skip = NULL, value_json = NULL,"
            " created_at = NULL WHERE key BETWEEN ? AND ? AND kind = ?",
            (_STEP, *cut, _STEP_REPLAY),
        ).rowcount
        self._replay_keys.pop(run_id, None)
        self._commit_now()
        return dropped

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
        _, text = cap_trace_payload(payload)
        seq = self._next_seq("trace", run_id)
        self._traces.append((run_id, seq, time.time() if ts is None else ts, kind, step_ref, attempt, text))
        loop = _running_loop()
        if loop is None or len(self._traces) >= TRACE_BATCH_ROWS:
            self._write_traces()
        elif self._trace_handle is None:
            self._trace_handle = loop.call_later(TRACE_DELAY_SECS, self._write_traces)
        return seq

    def _write_traces(self) -> None:
        """Move queued trace events into the open transaction and prune each run's oldest past the cap."""
        if self._trace_handle is not None:
            self._trace_handle.cancel()
            self._trace_handle = None
        queued, self._traces = self._traces, []
        if not queued:
            return
        scheduled = self._begin()
        try:
            top = self._insert_many("trace", _TRACE_INSERT, queued)
            for run_id, seq in top.items():
                key = ("trace", run_id)
                self._seqs[key] = max(self._seqs.get(key, 0), seq)
                if seq > self.trace_cap:
                    self._write("DELETE FROM trace WHERE run_id = ? AND seq <= ?", (run_id, seq - self.trace_cap))
        finally:
            if not scheduled:
                self._commit()

    def _insert_many(self, table: str, sql: str, queued: list[tuple[Any, ...]]) -> dict[RunId, int]:
        """Insert `(run_id, seq, ...)` rows in one statement inside the open transaction; returns each run's top seq.

        If another process took some seq, the rows go in one by one after its rows, in their order.
        """
        conn = self._conn
        conn.execute("SAVEPOINT many")
        try:
            conn.executemany(
                sql, (self._params(table, r[0], r[1], r[2:]) for r in queued) if table == "history" else queued
            )
            top: dict[RunId, int] = {}
            for row in queued:
                top[row[0]] = max(top.get(row[0], 0), row[1])
            return top
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK TO many")
            if not _is_key_clash(exc):
                raise
            top = {}
            for run_id, seq, *values in queued:
                wanted = max(seq, top.get(run_id, 0) + 1)
                top[run_id] = self._insert_seq(table, sql, run_id, wanted, tuple(values))
            return top
        finally:
            conn.execute("RELEASE many")

    async def list_trace(
        self,
        run_id: RunId,
        *,
        after: int = 0,
        limit: int | None = None,
        kind_prefix: str | None = None,
        step_ref: str | None = None,
    ) -> list[TraceEvent]:
        self._require_run(run_id)
        self._write_traces()
        sql = "SELECT seq, ts, kind, step_ref, attempt, payload_json FROM trace WHERE run_id = ? AND seq > ?"
        params: list[Any] = [run_id, after]
        if kind_prefix is not None:
            sql += " AND substr(kind, 1, ?) = ?"
            params += [len(kind_prefix), kind_prefix]
        if step_ref is not None:
            sql += " AND step_ref = ?"
            params.append(step_ref)
        sql += " ORDER BY seq LIMIT ?"
        params.append(-1 if limit is None else limit)
        return [TraceEvent(run_id, r[0], r[1], r[2], r[3], r[4], _loads(r[5])) for r in self._conn.execute(sql, params)]

    def put_output(self, record: OutputRecord) -> None:
        self._append(
            "outputs",
            "INSERT INTO outputs (run_id, seq, step_id, attempt, producer, event_json, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            record.run_id,
            (
                record.step_id,
                record.attempt,
                record.producer,
                dumps(record.event),
                record.created_at or time.time(),
            ),
        )

    async def list_outputs(
        self, run_id: RunId, *, step_id: str | None = None, attempt: int | None = None
    ) -> list[OutputRecord]:
        self._require_run(run_id)
        sql = "SELECT step_id, attempt, producer, event_json, created_at FROM outputs WHERE run_id = ?"
        params: list[Any] = [run_id]
        if step_id is not None:
            sql += " AND step_id = ?"
            params.append(step_id)
        if attempt is not None:
            sql += " AND attempt = ?"
            params.append(attempt)
        rows = self._conn.execute(sql + " ORDER BY seq", params)
        return [OutputRecord(run_id, r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]
