"""The PostgreSQL store: one database shared by several engine hosts, on psycopg 3 (async).

The queueing writes of the interface (`append_step_rows`, `append_trace`, `put_output`, `set_result`,
`set_owner`, `beat`, `set_task_status`) only add to an in-memory batch and schedule its commit for the
next loop turn; `flush()` returns once the batch holding the caller's writes is committed, in one
transaction (`batch` first lets the other tasks of this loop tick add theirs, so fanout lanes and
concurrent runs share a commit; `sync` commits at once; `exit` does not wait). Every read and every
compare-and-set first commits what is queued, so a store always reads its own writes.

One connection carries everything, one operation at a time (an asyncio lock). What keeps two hosts
apart lives in the database, not in this process: run status changes are `UPDATE ... WHERE status IN
(...)`, so of two hosts resuming the same run exactly one sees its row change; a Blueprint's next
version is chosen under a row lock on its name; the replay key is a unique index; a per-run sequence
number (history, trace, outputs) that another host took first moves this host's rows after its rows.
The schema is created and migrated on open under an advisory lock, and a database written by a newer
release is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

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
    task_from_row,
)
from .errors import (
    BadStoreUrl,
    Duplicate,
    RunNotFound,
    SchemaTooNew,
    StoreUnusable,
    StoreWriteFailed,
    TaskRecordNotFound,
)
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

log = logging.getLogger(__name__)

MIGRATIONS: tuple[str, ...] = (
    # 1: every entity, as the SQLite store keeps them (`ord` orders rows created in the same instant).
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
    CREATE TABLE blueprint_names (name TEXT PRIMARY KEY, archived BOOLEAN NOT NULL DEFAULT FALSE);
    CREATE TABLE blueprints (
        name TEXT NOT NULL, version INTEGER NOT NULL, content_hash TEXT NOT NULL, semver TEXT,
        document_json TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (name, version),
        UNIQUE (name, content_hash)
    );
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY, ord BIGINT GENERATED ALWAYS AS IDENTITY, goal TEXT NOT NULL,
        blueprint_ref_json TEXT, input_ctx_json TEXT, status TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX tasks_created ON tasks (created_at, ord);
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, ord BIGINT GENERATED ALWAYS AS IDENTITY, task_id TEXT NOT NULL,
        status TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
        result_json TEXT, input_json TEXT, owner_host TEXT, owner_pid BIGINT,
        owner_started_at DOUBLE PRECISION, heartbeat_at DOUBLE PRECISION
    );
    CREATE INDEX runs_created ON runs (created_at, ord);
    CREATE INDEX runs_task ON runs (task_id, created_at);
    CREATE INDEX runs_status ON runs (status);
    CREATE TABLE history (
        run_id TEXT NOT NULL, seq BIGINT NOT NULL, kind SMALLINT NOT NULL, step_ref TEXT NOT NULL,
        step_id TEXT, status TEXT, attempt INTEGER, started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION,
        stats_json TEXT, stderr_tail TEXT, error_json TEXT, input_hash TEXT, occurrence INTEGER,
        skip BOOLEAN, value_json TEXT, created_at DOUBLE PRECISION, node_index INTEGER, PRIMARY KEY (run_id, seq)
    );
    CREATE UNIQUE INDEX history_replay_key ON history (run_id, step_ref, input_hash, occurrence)
        WHERE kind <> 0;
    CREATE TABLE trace (
        run_id TEXT NOT NULL, seq BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL,
        step_ref TEXT, attempt INTEGER, payload_json TEXT, PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE outputs (
        run_id TEXT NOT NULL, seq BIGINT NOT NULL, step_id TEXT NOT NULL, attempt INTEGER NOT NULL,
        producer TEXT NOT NULL, event_json TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE operator_sessions (
        sid TEXT PRIMARY KEY, token_digest TEXT NOT NULL, join_desc TEXT, capability_manifest_json TEXT,
        joined_at DOUBLE PRECISION NOT NULL, last_access DOUBLE PRECISION NOT NULL, observed_json TEXT,
        observed_total BIGINT NOT NULL
    );
    CREATE TABLE operator_seats (
        run_id TEXT NOT NULL, slot TEXT NOT NULL, op TEXT, op_desc TEXT, gen BIGINT NOT NULL,
        PRIMARY KEY (run_id, slot)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
_MIGRATION_LOCK = 0x6D7365  # the advisory lock every host takes to migrate ("mse")

_HISTORY_TABLES = ("history", "trace", "outputs")
_STEP_KINDS = (HISTORY_STEP, HISTORY_STEP_REPLAY)
_REPLAY_KINDS = (HISTORY_REPLAY, HISTORY_STEP_REPLAY)
_HISTORY_COLUMNS = ", ".join(StepRow._fields)
"""A history row's columns after `(run_id, seq, kind)`: the fields of `StepRow`, in its order."""
_INSERTS = {
    "history": f"INSERT INTO history (run_id, seq, kind, {_HISTORY_COLUMNS})"
    f" VALUES (%s, %s, %s{', %s' * len(StepRow._fields)})",
    "trace": "INSERT INTO trace (run_id, seq, ts, kind, step_ref, attempt, payload_json)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
    "outputs": "INSERT INTO outputs (run_id, seq, step_id, attempt, producer, event_json, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
}
_EXIT, _SYNC = Durability.EXIT, Durability.SYNC
_PASSWORD = re.compile(r"(://[^/@:]*:)[^/@]*@")
_PASSWORD_PARAM = re.compile(r"([?&](?:ssl)?password=)[^&#]*", re.IGNORECASE)
_Row = list[Any]
"""A queued `(run_id, seq, ...values)` row of a per-run table; seq is None until known."""


def redact(url: str) -> str:
    """The URL without its passwords (in its user part or a `password`/`sslpassword` parameter), for messages."""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD.sub(r"\1***@", url))


def check_url(url: str) -> None:
    """Refuse a PostgreSQL URL libpq would not read, naming what is wrong with it."""
    hint = "write postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        conninfo_to_dict(url)
    except (ValueError, psycopg.ProgrammingError) as exc:
        raise BadStoreUrl(f"store URL {redact(url)!r} is not a PostgreSQL URL libpq can read: {exc}", hint) from None
    if not parts.path.strip("/"):
        raise BadStoreUrl(f"store URL {redact(url)!r} names no database", hint)


def _text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL: a worker's stderr keeps U+FFFD in its place."""
    return value if value is None or "\x00" not in value else value.replace("\x00", "\ufffd")


def _history_values(kind: int, row: StepRow) -> tuple[Any, ...]:
    if row.stderr_tail is not None and "\x00" in row.stderr_tail:
        row = row._replace(stderr_tail=_text(row.stderr_tail))
    return (kind, *row)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class PostgresStore(Store):
    """A store in a PostgreSQL database (see the module docstring for the commit model)."""

    def __init__(
        self, url: str, *, durability: Durability = Durability.BATCH, trace_cap: int = DEFAULT_TRACE_CAP
    ) -> None:
        check_url(url)
        super().__init__(url, durability=durability, trace_cap=trace_cap)
        self._conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None
        self._lock = asyncio.Lock()
        self._ops: list[tuple[str, tuple[Any, ...]]] = []
        """Queued updates, in order."""
        self._rows: dict[str, list[_Row]] = {table: [] for table in _HISTORY_TABLES}
        """Queued inserts of per-run rows, by table, in order."""
        self._batch = 1
        """Number of the batch the queued writes belong to."""
        self._committed = 0
        """Number of the last batch that ended, committed or failed."""
        self._failed: tuple[int, Exception] | None = None
        self._scheduled = False
        self._background: set[asyncio.Task[None]] = set()
        self._seqs: dict[tuple[str, RunId], int] = {}
        """Each run's last seq per table, once read (or known from the run's creation)."""
        self._keys: dict[RunId, set[tuple[str, str, int]]] = {}
        """Replay keys of runs whose log was read or created here: a repeated key is refused at once."""
        self._closed = False
        self.commits = 0
        """Write transactions this store committed."""

    @property
    def shown_url(self) -> str:
        return redact(self.url)

    # -- connection and schema ------------------------------------------------------------------

    async def open(self) -> None:
        await self._connection()

    async def _connection(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        """The connection, opened (and the schema brought up to date) on first use; call under the lock."""
        if self._conn is not None:
            return self._conn
        if self._closed:
            raise StoreUnusable(f"the store {self.shown_url} is closed", "open the store again")
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreUnusable(
                f"cannot connect to the PostgreSQL store {self.shown_url}: {str(exc).strip()}",
                "check the server is running and the URL's host, port, user, password and database",
            ) from None
        try:
            if self.durability is not _SYNC:
                # A commit returns once its WAL is written, without waiting for the flush to disk:
                # a killed engine loses nothing; a crash of the database server may lose the last commits.
                await conn.execute("SET synchronous_commit = off")
            await self._migrate(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return conn

    async def _migrate(self, conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
        """Create or migrate the schema in one transaction; refuse a database written by a newer release."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            cur = await conn.execute("SELECT to_regclass('mse_schema') IS NOT NULL")
            row = await cur.fetchone()
            found = 0
            if row is not None and row[0]:
                cur = await conn.execute("SELECT version FROM mse_schema")
                got = await cur.fetchone()
                found = 0 if got is None else int(got[0])
            else:
                await conn.execute("CREATE TABLE mse_schema (version INTEGER NOT NULL)")
                await conn.execute("INSERT INTO mse_schema (version) VALUES (0)")
            if found > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"store {self.shown_url} has schema version {found};"
                    f" this mlua-swarm understands up to {SCHEMA_VERSION}",
                    "upgrade mlua-swarm, or point --store at another database",
                )
            for version in range(found, SCHEMA_VERSION):
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        await conn.execute(statement.encode())
            if found < SCHEMA_VERSION:
                await conn.execute("UPDATE mse_schema SET version = %s", (SCHEMA_VERSION,))

    # -- the commit model -----------------------------------------------------------------------

    def _queued(self) -> bool:
        return bool(self._ops) or any(self._rows.values())

    def _schedule(self) -> None:
        """Commit the queued writes on the next loop turn (at close when there is no loop)."""
        if self._scheduled:
            return
        loop = _running_loop()
        if loop is None:
            return
        self._scheduled = True
        task = loop.create_task(self._background_commit())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _background_commit(self) -> None:
        try:
            await self._commit_through(self._batch)
        except Exception as exc:  # the flushers of the batch are told; this only logs it
            log.debug("store %s: background commit failed: %s", self.shown_url, exc)

    def _queue(self, sql: str, params: tuple[Any, ...]) -> None:
        self._ops.append((sql, params))
        self._schedule()

    async def flush(self, durability: Durability | None = None) -> None:
        mode = self.durability if durability is None else durability
        if not self._queued():
            # The last batch may still be on its way (a background commit took it): wait for it.
            await self._commit_through(self._batch - 1)
            return
        if mode is _EXIT:
            self._schedule()
            return
        batch = self._batch
        if mode is not _SYNC:
            # Let the other tasks of this loop tick queue their writes into the same commit.
            await asyncio.sleep(0)
        await self._commit_through(batch)

    async def _commit_through(self, batch: int) -> None:
        """Return once batch `batch` ended; raise if its commit failed."""
        if self._committed >= batch:
            self._raise_if_failed(batch)
            return
        async with self._lock:
            if self._committed < batch:
                await self._commit_queued(await self._connection())
        self._raise_if_failed(batch)

    def _raise_if_failed(self, batch: int) -> None:
        failed = self._failed
        if failed is not None and failed[0] == batch:
            raise failed[1]

    async def _commit_queued(self, conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
        """Commit the queued batch in one transaction (under the lock); a failure is kept for its flushers."""
        self._scheduled = False
        batch = self._batch
        self._batch += 1
        ops, self._ops = self._ops, []
        rows, self._rows = self._rows, {table: [] for table in _HISTORY_TABLES}
        if not ops and not any(rows.values()):
            self._committed = batch
            return
        # One step (or one update) alone is one statement: autocommit makes it atomic in one round trip.
        alone = len(ops) + sum(map(len, rows.values())) == 1 and not rows["trace"]
        try:
            async with contextlib.nullcontext() if alone else conn.transaction(), conn.cursor() as cur:
                for sql, params in ops:
                    await cur.execute(sql, params)
                for table in _HISTORY_TABLES:
                    if rows[table]:
                        await self._insert_rows(cur, table, rows[table])
                if rows["trace"]:
                    await self._prune_trace(cur, rows["trace"])
            self.commits += 1
        except Exception as exc:
            self._failed = (batch, self._failure(exc))
            # Counters and replay keys may name rows that were just rolled back: read them again.
            self._seqs.clear()
            self._keys.clear()
            log.error("store %s: commit failed, its writes are lost: %s", self.shown_url, exc)
        finally:
            self._committed = batch

    def _failure(self, exc: Exception) -> Exception:
        if isinstance(exc, pg_errors.UniqueViolation):
            return Duplicate(f"a replay row's key exists: {str(exc).strip()}")
        if isinstance(exc, psycopg.OperationalError):
            return StoreWriteFailed(
                f"the store {self.shown_url} could not be written: {str(exc).strip()}",
                "fix the database server, then `mse runs resume RUN_ID`: the run is kept as interrupted",
            )
        return exc

    async def _insert_rows(self, cur: psycopg.AsyncCursor[tuple[Any, ...]], table: str, rows: list[_Row]) -> None:
        """Insert queued `(run_id, seq, ...)` rows. A row whose seq is unknown, or was taken by another
        host since it was counted, goes after the run's last row, with the run's later rows of this
        batch after it, so a run's rows keep their order."""
        unnumbered: dict[str, int] = {}
        for row in rows:
            if row[1] is None:
                run_id = row[0]
                if run_id not in unnumbered:
                    unnumbered[run_id] = await self._top_seq(cur, table, run_id)
                seq = unnumbered[run_id] = unnumbered[run_id] + 1
                row[1] = seq
                key = (table, RunId(run_id))
                self._seqs[key] = max(seq, self._seqs.get(key, 0))
        sql = _INSERTS[table] + " ON CONFLICT (run_id, seq) DO NOTHING RETURNING seq"
        landed: list[bool] = []
        if len(rows) == 1:
            await cur.execute(sql, rows[0])
            landed.append(await cur.fetchone() is not None)
        else:
            await cur.executemany(sql, rows, returning=True)
            while True:
                landed.append(await cur.fetchone() is not None)
                if not cur.nextset():
                    break
        clashed = {row[0] for row, ok in zip(rows, landed, strict=True) if not ok}
        if not clashed:
            return
        # Take this batch's rows of those runs out again and append them after the other host's.
        mine = [row for row, ok in zip(rows, landed, strict=True) if ok and row[0] in clashed]
        for row in mine:
            await cur.execute(f"DELETE FROM {table} WHERE run_id = %s AND seq = %s", (row[0], row[1]))
        for row in rows:
            if row[0] not in clashed:
                continue
            while True:
                row[1] = await self._top_seq(cur, table, row[0]) + 1
                await cur.execute(sql, row)
                if await cur.fetchone() is not None:
                    break
            key = (table, row[0])
            self._seqs[key] = max(self._seqs.get(key, 0), row[1])

    @staticmethod
    async def _top_seq(cur: psycopg.AsyncCursor[tuple[Any, ...]], table: str, run_id: str) -> int:
        await cur.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table} WHERE run_id = %s", (run_id,))
        row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    async def _prune_trace(self, cur: psycopg.AsyncCursor[tuple[Any, ...]], rows: list[_Row]) -> None:
        """Drop each run's oldest trace events past the cap."""
        top: dict[str, int] = {}
        for row in rows:
            top[row[0]] = max(top.get(row[0], 0), row[1])
        for run_id, seq in top.items():
            if seq > self.trace_cap:
                await cur.execute("DELETE FROM trace WHERE run_id = %s AND seq <= %s", (run_id, seq - self.trace_cap))

    async def _fetch(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple[Any, ...]]:
        """Commit what is queued, then read (reads see this store's own writes)."""
        async with self._lock:
            conn = await self._connection()
            if self._queued():
                await self._commit_queued(conn)
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def _fetch_one(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> tuple[Any, ...] | None:
        rows = await self._fetch(sql, params)
        return rows[0] if rows else None

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Commit what is queued, then run one statement in its own transaction; returns its row count."""
        async with self._lock:
            conn = await self._connection()
            if self._queued():
                await self._commit_queued(conn)
            try:
                cur = await conn.execute(sql, params)
            except psycopg.OperationalError as exc:
                raise self._failure(exc) from None
            self.commits += 1
            return cur.rowcount

    async def close(self) -> None:
        if self._closed:
            return
        batch = 0
        try:
            async with self._lock:
                if self._queued():
                    batch = self._batch
                    await self._commit_queued(await self._connection())
        finally:
            self._closed = True
            for task in list(self._background):
                task.cancel()
            if self._conn is not None:
                await self._conn.close()
                self._conn = None
        self._raise_if_failed(batch)

    async def token_secret(self) -> bytes:
        await self._execute(
            "INSERT INTO meta (key, value) VALUES ('token_secret', %s) ON CONFLICT (key) DO NOTHING",
            (secrets.token_bytes(32),),
        )
        row = await self._fetch_one("SELECT value FROM meta WHERE key = 'token_secret'")
        assert row is not None
        return bytes(row[0])

    # -- operator sessions and seats --------------------------------------------------------------

    async def put_operator_session(self, record: OperatorSessionRecord) -> None:
        await self._execute(
            "INSERT INTO operator_sessions (sid, token_digest, join_desc, capability_manifest_json, joined_at,"
            " last_access, observed_json, observed_total) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (sid) DO UPDATE SET token_digest = excluded.token_digest, join_desc = excluded.join_desc,"
            " capability_manifest_json = excluded.capability_manifest_json, joined_at = excluded.joined_at,"
            " last_access = excluded.last_access, observed_json = excluded.observed_json,"
            " observed_total = excluded.observed_total",
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

    async def delete_operator_session(self, sid: str) -> None:
        await self._execute("DELETE FROM operator_sessions WHERE sid = %s", (sid,))

    async def list_operator_sessions(self) -> list[OperatorSessionRecord]:
        rows = await self._fetch(
            "SELECT sid, token_digest, join_desc, capability_manifest_json, joined_at, last_access, observed_json,"
            " observed_total FROM operator_sessions"
        )
        return [
            OperatorSessionRecord(r[0], r[1], r[2], _loads(r[3]), r[4], r[5], _loads(r[6]) or [], r[7]) for r in rows
        ]

    async def put_seat(self, record: SeatRecord) -> None:
        await self._execute(
            "INSERT INTO operator_seats (run_id, slot, op, op_desc, gen) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (run_id, slot) DO UPDATE SET op = excluded.op, op_desc = excluded.op_desc,"
            " gen = excluded.gen",
            (str(record.run_id), record.slot, record.op, record.desc, record.gen),
        )

    async def list_seats(self, run_id: RunId | None = None) -> list[SeatRecord]:
        sql = "SELECT run_id, slot, op, op_desc, gen FROM operator_seats"
        rows = await (self._fetch(sql) if run_id is None else self._fetch(sql + " WHERE run_id = %s", (str(run_id),)))
        return [SeatRecord(*r) for r in rows]

    # -- blueprints -----------------------------------------------------------------------------

    async def _blueprint_rows(self, where: str, params: Sequence[Any]) -> list[BlueprintVersion]:
        return [blueprint_from_row(r) for r in await self._fetch(f"{BLUEPRINT_SELECT} {where}", params)]

    async def put_blueprint(self, name: str, document: Any, *, semver: str | None = None) -> BlueprintVersion:
        digest = blueprint_hash(document)
        chosen = semver if semver is not None else declared_semver(document)
        async with self._lock:
            conn = await self._connection()
            if self._queued():
                await self._commit_queued(conn)
            async with conn.transaction():
                # The name's row lock: two hosts storing versions of one Blueprint take turns.
                await conn.execute(
                    "INSERT INTO blueprint_names (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (name,)
                )
                await conn.execute("SELECT 1 FROM blueprint_names WHERE name = %s FOR UPDATE", (name,))
                cur = await conn.execute(
                    "SELECT version FROM blueprints WHERE name = %s AND content_hash = %s", (name, digest)
                )
                row = await cur.fetchone()
                if row is None:
                    cur = await conn.execute(
                        "SELECT COALESCE(MAX(version), 0) + 1 FROM blueprints WHERE name = %s", (name,)
                    )
                    top = await cur.fetchone()
                    assert top is not None
                    version = int(top[0])
                    await conn.execute(
                        "INSERT INTO blueprints (name, version, content_hash, semver, document_json, created_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        (name, version, digest, chosen, dumps(document), time.time()),
                    )
                else:
                    version = int(row[0])
        return (await self._blueprint_rows("WHERE b.name = %s AND b.version = %s", (name, version)))[0]

    async def blueprint_history(self, name: str) -> list[BlueprintVersion]:
        return await self._blueprint_rows("WHERE b.name = %s ORDER BY b.version", (name,))

    async def archive_blueprint(self, name: str, archived: bool = True) -> None:
        await self._execute(
            "INSERT INTO blueprint_names (name, archived) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET archived = excluded.archived",
            (name, archived),
        )

    async def list_blueprints(self, *, include_archived: bool = False) -> list[BlueprintVersion]:
        where = "" if include_archived else " AND NOT COALESCE(n.archived, FALSE)"
        return await self._blueprint_rows(
            f"WHERE b.version = (SELECT MAX(version) FROM blueprints WHERE name = b.name){where} ORDER BY b.name", ()
        )

    # -- tasks ----------------------------------------------------------------------------------

    async def create_task(self, task: TaskRecord) -> None:
        try:
            await self._execute(
                f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    str(task.task_id),
                    task.goal,
                    dumps(task.blueprint_ref),
                    dumps(task.input_ctx),
                    task.status.value,
                    task.created_at,
                    task.updated_at,
                ),
            )
        except pg_errors.UniqueViolation:
            raise Duplicate(f"task {task.task_id} exists") from None

    async def get_task(self, task_id: TaskId) -> TaskRecord:
        row = await self._fetch_one(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = %s", (str(task_id),))
        if row is None:
            raise TaskRecordNotFound(task_id)
        return task_from_row(row)

    async def list_tasks(self, *, limit: int | None = None) -> list[TaskRecord]:
        rows = await self._fetch(
            f"SELECT {TASK_COLUMNS} FROM tasks ORDER BY created_at DESC, ord DESC LIMIT %s", (limit,)
        )
        return [task_from_row(r) for r in rows]

    def set_task_status(self, task_id: TaskId, status: RunStatus) -> None:
        self._queue(
            "UPDATE tasks SET status = %s, updated_at = %s WHERE id = %s", (status.value, time.time(), str(task_id))
        )

    # -- runs -----------------------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> None:
        owner = run.owner
        try:
            await self._execute(
                f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    str(run.run_id),
                    str(run.task_id),
                    run.status.value,
                    run.created_at,
                    run.updated_at,
                    None if run.result is None else dumps(run.result),
                    run.input_json,
                    None if owner is None else owner.host,
                    None if owner is None else owner.pid,
                    None if owner is None else owner.started_at,
                    run.heartbeat_at,
                ),
            )
        except pg_errors.UniqueViolation:
            raise Duplicate(f"run {run.run_id} exists") from None
        for table in _HISTORY_TABLES:
            self._seqs[(table, run.run_id)] = 0
        self._keys[run.run_id] = set()

    async def _load_seqs(self, run_id: RunId) -> None:
        """Read the run's last seq per table once, so its queued rows can be numbered here."""
        if ("history", run_id) in self._seqs:
            return
        row = await self._fetch_one(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM history WHERE run_id = %(r)s),"
            " (SELECT COALESCE(MAX(seq), 0) FROM trace WHERE run_id = %(r)s),"
            " (SELECT COALESCE(MAX(seq), 0) FROM outputs WHERE run_id = %(r)s)",
            {"r": str(run_id)},
        )
        assert row is not None
        for table, seq in zip(_HISTORY_TABLES, row, strict=True):
            key = (table, run_id)
            self._seqs[key] = max(self._seqs.get(key, 0), int(seq))

    async def get_run(self, run_id: RunId, *, with_result: bool = True) -> RunRecord:
        columns = RUN_COLUMNS if with_result else RUN_COLUMNS.replace("result_json", "NULL")
        row = await self._fetch_one(f"SELECT {columns} FROM runs WHERE id = %s", (str(run_id),))
        if row is None:
            raise RunNotFound(run_id)
        await self._load_seqs(run_id)
        return run_from_row(row)

    async def run_state(self, run_id: RunId) -> tuple[RunStatus, TaskId]:
        row = await self._fetch_one("SELECT status, task_id FROM runs WHERE id = %s", (str(run_id),))
        if row is None:
            raise RunNotFound(run_id)
        await self._load_seqs(run_id)
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
            where.append("status = ANY(%s)")
            params.append([RunStatus(s).value for s in status])
        if task_id is not None:
            where.append("task_id = %s")
            params.append(str(task_id))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        params.append(limit)
        columns = RUN_COLUMNS if with_result else RUN_COLUMNS.replace("result_json", "NULL")
        rows = await self._fetch(
            f"SELECT {columns} FROM runs{clause} ORDER BY created_at DESC, ord DESC LIMIT %s", params
        )
        return [run_from_row(r) for r in rows]

    async def _require_run(self, run_id: RunId) -> None:
        if await self._fetch_one("SELECT 1 FROM runs WHERE id = %s", (str(run_id),)) is None:
            raise RunNotFound(run_id)

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
        changed = await self._execute(
            f"UPDATE runs SET status = %s, updated_at = %s{claim.replace('?', '%s')} WHERE id = %s"
            " AND status = ANY(%s)",
            (target.value, now, *claimed, str(run_id), [s.value for s in expected]),
        )
        if not changed:
            await self._require_run(run_id)
        await self._load_seqs(run_id)
        return changed == 1

    async def settle_run(self, run_id: RunId, result: Any, target: RunStatus) -> bool:
        """The result and the status in one transaction, the run's row locked in between."""
        check_run_transition([RunStatus.RUNNING], target)
        text = dumps(result)
        async with self._lock:
            conn = await self._connection()
            if self._queued():
                await self._commit_queued(conn)
            async with conn.transaction():
                cur = await conn.execute("SELECT status FROM runs WHERE id = %s FOR UPDATE", (str(run_id),))
                row = await cur.fetchone()
                if row is None:
                    raise RunNotFound(run_id)
                changed: bool = row[0] == RunStatus.RUNNING.value
                await conn.execute(
                    "UPDATE runs SET result_json = %s, updated_at = %s, status = %s WHERE id = %s",
                    (text, time.time(), target.value if changed else row[0], str(run_id)),
                )
            self.commits += 1
        return changed

    def set_result(self, run_id: RunId, result: Any) -> None:
        self._queue(
            "UPDATE runs SET result_json = %s, updated_at = %s WHERE id = %s", (dumps(result), time.time(), str(run_id))
        )

    def set_owner(self, run_id: RunId, owner: RunOwner | None) -> None:
        values = (None, None, None) if owner is None else (owner.host, owner.pid, owner.started_at)
        self._queue(
            "UPDATE runs SET owner_host = %s, owner_pid = %s, owner_started_at = %s WHERE id = %s",
            (*values, str(run_id)),
        )

    def beat(self, run_id: RunId, at: float) -> None:
        self._queue("UPDATE runs SET heartbeat_at = %s WHERE id = %s", (at, str(run_id)))

    async def delete_run(self, run_id: RunId) -> None:
        async with self._lock:
            conn = await self._connection()
            if self._queued():
                await self._commit_queued(conn)
            async with conn.transaction():
                cur = await conn.execute("DELETE FROM runs WHERE id = %s RETURNING task_id", (str(run_id),))
                row = await cur.fetchone()
                for table in _HISTORY_TABLES:
                    await conn.execute(f"DELETE FROM {table} WHERE run_id = %s", (str(run_id),))
                if row is not None:
                    await conn.execute(
                        "DELETE FROM tasks WHERE id = %s AND NOT EXISTS (SELECT 1 FROM runs WHERE task_id = %s)",
                        (row[0], row[0]),
                    )
            self.commits += 1
        self.release(run_id)

    # -- per-run history ------------------------------------------------------------------------

    def release(self, run_id: RunId) -> None:
        for table in _HISTORY_TABLES:
            self._seqs.pop((table, run_id), None)
        self._keys.pop(run_id, None)

    def _next_seq(self, table: str, run_id: RunId) -> int | None:
        """The run's next seq in `table`; None when the run was not read here (numbered at the commit)."""
        key = (table, run_id)
        seq = self._seqs.get(key)
        if seq is None:
            return None
        self._seqs[key] = seq + 1
        return seq + 1

    def _append(self, table: str, run_id: RunId, values: tuple[Any, ...]) -> int | None:
        seq = self._next_seq(table, run_id)
        self._rows[table].append([str(run_id), seq, *values])
        self._schedule()
        return seq

    def append_step_rows(self, run_id: RunId, rows: Sequence[StepRow]) -> None:
        if not rows:
            return
        fresh = [key for r in rows if (key := r.replay_key()) is not None]
        if len(set(fresh)) < len(fresh):
            raise Duplicate(f"replay rows for run {run_id} repeat a key")
        keys = self._keys.get(run_id)
        if keys is not None:
            for key in fresh:
                if key in keys:
                    raise Duplicate(f"replay row {key} exists for run {run_id}")
            keys.update(fresh)
        for r in rows:
            self._append(
                "history", run_id, _history_values(HISTORY_STEP if r.input_hash is None else HISTORY_STEP_REPLAY, r)
            )

    async def list_steps(self, run_id: RunId) -> list[StepEntry]:
        await self._require_run(run_id)
        rows = await self._fetch(
            f"SELECT {_HISTORY_COLUMNS} FROM history WHERE run_id = %s AND kind = ANY(%s) ORDER BY seq",
            (str(run_id), list(_STEP_KINDS)),
        )
        return [StepRow(*r).entry() for r in rows]

    def append_replay(self, run_id: RunId, row: ReplayRow) -> None:
        if row.occurrence is None:
            raise ValueError("a stored replay row needs its occurrence")
        key = (row.step_ref, row.input_hash, row.occurrence)
        keys = self._keys.get(run_id)
        if keys is not None:
            if key in keys:
                raise Duplicate(f"replay row {key} exists for run {run_id}")
            keys.add(key)
        values: dict[str, Any] = dict.fromkeys(StepRow._fields)
        values.update(
            step_ref=row.step_ref,
            input_hash=row.input_hash,
            occurrence=row.occurrence,
            skip=row.skip,
            value_json=dumps(row.value),
            created_at=row.created_at or time.time(),
        )
        self._append("history", run_id, (HISTORY_REPLAY, *values.values()))

    async def list_replay(self, run_id: RunId) -> list[ReplayRow]:
        await self._require_run(run_id)
        rows = await self._fetch(
            "SELECT step_ref, input_hash, value_json, skip, occurrence, created_at FROM history"
            " WHERE run_id = %s AND kind = ANY(%s) ORDER BY seq",
            (str(run_id), list(_REPLAY_KINDS)),
        )
        self._keys[run_id] = {(r[0], r[1], r[4]) for r in rows}
        await self._load_seqs(run_id)
        return [ReplayRow(r[0], r[1], _loads(r[2]), bool(r[3]), r[4], r[5]) for r in rows]

    async def count_history(self, run_id: RunId) -> tuple[int, int]:
        await self._require_run(run_id)
        row = await self._fetch_one(
            "SELECT COUNT(*) FILTER (WHERE kind = ANY(%s)), COUNT(*) FILTER (WHERE kind = ANY(%s))"
            " FROM history WHERE run_id = %s",
            (list(_STEP_KINDS), list(_REPLAY_KINDS), str(run_id)),
        )
        assert row is not None
        return int(row[0]), int(row[1])

    async def delete_replay_from(self, run_id: RunId, index: int) -> int:
        """Cut the log; a step stored with its replay row keeps its entry and loses the replay part."""
        await self._require_run(run_id)
        row = await self._fetch_one(
            "SELECT seq FROM history WHERE run_id = %s AND kind = ANY(%s) ORDER BY seq LIMIT 1 OFFSET %s",
            (str(run_id), list(_REPLAY_KINDS), max(index, 0)),
        )
        if row is None:
            return 0
        self._keys.pop(run_id, None)
        dropped = await self._execute(
            "DELETE FROM history WHERE run_id = %s AND kind = %s AND seq >= %s", (str(run_id), HISTORY_REPLAY, row[0])
        )
        dropped += await self._execute(
            "UPDATE history SET kind = %s, input_hash = NULL, occurrence = NULL, skip = NULL, value_json = NULL,"
            " created_at = NULL WHERE run_id = %s AND kind = %s AND seq >= %s",
            (HISTORY_STEP, str(run_id), HISTORY_STEP_REPLAY, row[0]),
        )
        await self.list_replay(run_id)
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
        seq = self._append("trace", run_id, (time.time() if ts is None else ts, kind, step_ref, attempt, text))
        return 0 if seq is None else seq

    async def list_trace(
        self,
        run_id: RunId,
        *,
        after: int = 0,
        limit: int | None = None,
        kind_prefix: str | None = None,
        step_ref: str | None = None,
    ) -> list[TraceEvent]:
        await self._require_run(run_id)
        sql = "SELECT seq, ts, kind, step_ref, attempt, payload_json FROM trace WHERE run_id = %s AND seq > %s"
        params: list[Any] = [str(run_id), after]
        if kind_prefix is not None:
            sql += " AND left(kind, %s) = %s"
            params += [len(kind_prefix), kind_prefix]
        if step_ref is not None:
            sql += " AND step_ref = %s"
            params.append(step_ref)
        sql += " ORDER BY seq LIMIT %s"
        params.append(limit)
        return [TraceEvent(run_id, r[0], r[1], r[2], r[3], r[4], _loads(r[5])) for r in await self._fetch(sql, params)]

    def put_output(self, record: OutputRecord) -> None:
        self._append(
            "outputs",
            record.run_id,
            (record.step_id, record.attempt, record.producer, dumps(record.event), record.created_at or time.time()),
        )

    async def list_outputs(
        self, run_id: RunId, *, step_id: str | None = None, attempt: int | None = None
    ) -> list[OutputRecord]:
        await self._require_run(run_id)
        sql = "SELECT step_id, attempt, producer, event_json, created_at FROM outputs WHERE run_id = %s"
        params: list[Any] = [str(run_id)]
        if step_id is not None:
            sql += " AND step_id = %s"
            params.append(step_id)
        if attempt is not None:
            sql += " AND attempt = %s"
            params.append(attempt)
        rows = await self._fetch(sql + " ORDER BY seq", params)
        return [OutputRecord(run_id, r[0], r[1], r[2], _loads(r[3]), r[4]) for r in rows]
