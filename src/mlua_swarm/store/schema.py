"""The SQLite schema as numbered migrations; `PRAGMA user_version` records how many have run.

Per-run tables are clustered by `(run_id, seq)` (WITHOUT ROWID). A run's step entries (`kind` 0),
replay rows (`kind` 1) and steps stored with their replay row (`kind` 2, one insert per step) share
one table: a commit costs about one page write per run that moved. Replay-key uniqueness is kept by
the store, not an index.

Since version 6, a row whose value is large goes whole into `history_big`, a rowid table with the
same columns (`run_id` and `seq` numbered with the run's other history rows). A WITHOUT ROWID table
keeps ~1 KB of a row on its page (4 KiB) and moves the rest to overflow pages, which made KB-sized
values cost a page more each and large ones far slower to write and to read; a rowid table keeps
~4 KB, but writes a second b-tree (its key index) per row, which small rows should not pay.
Rows written before version 6 stay where they are; readers read both tables.
"""

from __future__ import annotations

import sqlite3

from .errors import SchemaTooNew

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
    # 6: history rows with large values (see the module docstring).
    """
    CREATE TABLE history_big (
        run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL, step_ref TEXT NOT NULL,
        step_id TEXT, status TEXT, attempt INTEGER, started_at REAL, finished_at REAL,
        stats_json TEXT, stderr_tail TEXT, error_json TEXT,
        input_hash TEXT, occurrence INTEGER, skip INTEGER, value_json TEXT, created_at REAL, node_index INTEGER,
        PRIMARY KEY (run_id, seq)
    )
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


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
