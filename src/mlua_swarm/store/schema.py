"""The SQLite schema as numbered migrations; `PRAGMA user_version` records how many have run.

A run's history (step entries, `kind` 0; replay rows, `kind` 1; a step stored with its replay row,
`kind` 2, one insert per step) lives in `history`, a rowid table whose integer key is the run's number
(`runs.num`) times 2**32 plus the row's seq within the run. So a run's rows are one key range, in seq
order, and a run that writes after every other appends at the right edge of the tree: SQLite then
splits a full leaf by starting a new one (one page, plus its parent's), and a commit writes ~1.1
pages a step. Tables clustered by a composite key (WITHOUT ROWID) redistribute cells over up to three
sibling leaves at each split (~1.7 pages a step) and keep only ~1 KB of a row on its 4 KiB page; a
rowid table keeps ~4 KB. Replay-key uniqueness is kept by the store, not an index.

Version 7 moved the rows of versions 6 and before (`history`, clustered by `(run_id, seq)`, and
`history_big`, its rowid twin for large values) into this table; rows of a run no longer in `runs`,
which no reader could reach, were left behind.
"""

from __future__ import annotations

import sqlite3

from .errors import SchemaTooNew, StoreInUse

MIGRATIONS: tuple[str, ...] = (
    # 1: every entity.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE blueprint_names (name TEXT PRIMARY KEY, archived INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
    CREATE TABLE blueprints (
        name TEXT NOT NULL, version INTEGER NOT NULL, content_hash TEXT NOT NULL, semver TEXT,
        document_json TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (name, version)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX blueprints_hash ON blueprints (name, content_hash);
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY, goal TEXT NOT NULL, blueprint_ref_json TEXT, input_ctx_json TEXT,
        status TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL
    );
    CREATE INDEX tasks_created ON tasks (created_at);
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, task_id TEXT NOT NULL, status TEXT NOT NULL,
        created_at REAL NOT NULL, updated_at REAL NOT NULL, result_json TEXT, input_json TEXT
    );
    CREATE INDEX runs_created ON runs (created_at);
    CREATE INDEX runs_task ON runs (task_id, created_at);
    CREATE TABLE history (
        run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL, step_ref TEXT NOT NULL,
        step_id TEXT, status TEXT, attempt INTEGER, started_at REAL, finished_at REAL,
        stats_json TEXT, stderr_tail TEXT, error_json TEXT,
        input_hash TEXT, occurrence INTEGER, skip INTEGER, value_json TEXT, created_at REAL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE trace (
        run_id TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL,
        step_ref TEXT, attempt INTEGER, payload_json TEXT, PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE outputs (
        run_id TEXT NOT NULL, seq INTEGER NOT NULL, step_id TEXT NOT NULL, attempt INTEGER NOT NULL,
        producer TEXT NOT NULL, event_json TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    """,
    # 2: run ownership, for the orphan sweep.
    """
    ALTER TABLE runs ADD COLUMN owner_host TEXT;
    ALTER TABLE runs ADD COLUMN owner_pid INTEGER;
    ALTER TABLE runs ADD COLUMN owner_started_at REAL;
    ALTER TABLE runs ADD COLUMN heartbeat_at REAL;
    CREATE INDEX runs_status ON runs (status);
    """,
    # 3: `history.kind` 2, a step entry stored with its replay row; releases that do not know it must refuse the file.
    "",
    # 4: operator sessions (the bearer's digest only) and run seats.
    """
    CREATE TABLE operator_sessions (
        sid TEXT PRIMARY KEY, token_digest TEXT NOT NULL, join_desc TEXT, capability_manifest_json TEXT,
        joined_at REAL NOT NULL, last_access REAL NOT NULL, observed_json TEXT, observed_total INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE operator_seats (
        run_id TEXT NOT NULL, slot TEXT NOT NULL, op TEXT, op_desc TEXT, gen INTEGER NOT NULL,
        PRIMARY KEY (run_id, slot)
    ) WITHOUT ROWID;
    """,
    # 5: the flow node that ran each step (`flow.Step.index`); NULL in the rows of earlier versions.
    "ALTER TABLE history ADD COLUMN node_index INTEGER;",
    # 6: history rows with large values, in a rowid table (folded into `history` by 7).
    """
    CREATE TABLE history_big (
        run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL, step_ref TEXT NOT NULL,
        step_id TEXT, status TEXT, attempt INTEGER, started_at REAL, finished_at REAL,
        stats_json TEXT, stderr_tail TEXT, error_json TEXT,
        input_hash TEXT, occurrence INTEGER, skip INTEGER, value_json TEXT, created_at REAL, node_index INTEGER,
        PRIMARY KEY (run_id, seq)
    )
    """,
    # 7: one history table keyed by run number and seq (see the module docstring).
    """
    ALTER TABLE runs ADD COLUMN num INTEGER;
    UPDATE runs SET num = rowid;
    CREATE UNIQUE INDEX runs_num ON runs (num);
    ALTER TABLE history RENAME TO history_v6;
    CREATE TABLE history (
        key INTEGER PRIMARY KEY, kind INTEGER NOT NULL, step_ref TEXT NOT NULL,
        step_id TEXT, status TEXT, attempt INTEGER, started_at REAL, finished_at REAL,
        stats_json TEXT, stderr_tail TEXT, error_json TEXT,
        input_hash TEXT, occurrence INTEGER, skip INTEGER, value_json TEXT, created_at REAL, node_index INTEGER
    );
    INSERT INTO history
    SELECT r.num * 4294967296 + h.seq, h.kind, h.step_ref, h.step_id, h.status, h.attempt, h.started_at,
        h.finished_at, h.stats_json, h.stderr_tail, h.error_json, h.input_hash, h.occurrence, h.skip,
        h.value_json, h.created_at, h.node_index
    FROM (
        SELECT run_id, seq, kind, step_ref, step_id, status, attempt, started_at, finished_at, stats_json,
            stderr_tail, error_json, input_hash, occurrence, skip, value_json, created_at, node_index
        FROM history_v6
        UNION ALL
        SELECT run_id, seq, kind, step_ref, step_id, status, attempt, started_at, finished_at, stats_json,
            stderr_tail, error_json, input_hash, occurrence, skip, value_json, created_at, node_index
        FROM history_big
    ) AS h JOIN runs AS r ON r.id = h.run_id
    ORDER BY 1;
    DROP TABLE history_v6;
    DROP TABLE history_big
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
HISTORY_REKEYED = 7
"""The version whose upgrade replaces `history`, the table older releases write a run's steps into."""
LOUD_UPGRADE_BYTES = 64 << 20
"""A store file at least this large says so before that upgrade copies its history."""
UPGRADE_SECS_PER_MB = 0.02
"""What that copy took here (0.4 s for 19 MB), for the notice's estimate."""


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, path: str, target: int = SCHEMA_VERSION) -> int:
    """Bring the file up to `target` in one transaction; refuse a file written by a newer release.

    Returns the version the file had. The caller's connection must be in autocommit mode.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(conn)
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"store {path} has schema version {found}; this mlua-swarm understands up to {SCHEMA_VERSION}",
                "upgrade mlua-swarm, or point --store / MSE_HOME at another file",
            )
        if found < HISTORY_REKEYED <= target:
            if found >= 2:
                _refuse_older_writer(conn, path)
            _announce_copy(conn, path)
        for version in range(found, target):
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
        if target > found:
            conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def _refuse_older_writer(conn: sqlite3.Connection, path: str) -> None:
    """Refuse to replace `history` while a process of an older release on this host still runs a run
    in the file: its next step would fail against the new table. (Owners on other hosts cannot be
    checked from here; a run left `running` by a dead process does not block the upgrade.)"""
    from .owner import owner_gone  # here: the listing read path imports this module and must stay light
    from .records import RunOwner

    rows = conn.execute(
        "SELECT id, owner_host, owner_pid, owner_started_at FROM runs"
        " WHERE status = 'running' AND owner_host IS NOT NULL AND owner_pid IS NOT NULL"
    )
    for run_id, host, pid, started in rows:
        if owner_gone(RunOwner(host, pid, started or 0.0)) is False:
            raise StoreInUse(
                f"store {path} must upgrade its history table to schema version {HISTORY_REKEYED}, but run"
                f" {run_id} is still running in it, in process {pid} of an older mlua-swarm",
                "let that run finish, or stop its process (the run is kept interrupted and resumes on this"
                " release), then run this again; the file was left untouched",
            )


def _announce_copy(conn: sqlite3.Connection, path: str) -> None:
    """Say on the log (stderr in `mse` commands) that a large file's history is about to be copied."""
    pages, page_size = (conn.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_count", "page_size"))
    size = pages * page_size
    if size < LOUD_UPGRADE_BYTES:
        return
    import logging  # here: the listing read path imports this module and stays light

    megabytes = size / (1 << 20)
    logging.getLogger(__name__).warning(
        "upgrading the store %s to schema version %d: its run history is copied once (a %.0f MB file,"
        " about %.0f s); other mse processes opening it wait",
        path,
        HISTORY_REKEYED,
        megabytes,
        max(1.0, megabytes * UPGRADE_SECS_PER_MB),
    )
