"""The read path of `mse runs list`: one query on the SQLite file, without opening the store.

Opening a store (`open_store`) migrates its schema, sweeps runs whose owner is gone and sets up the
writer; it needs the backends, the journal and asyncio, most of the command's start-up. A listing
needs none of that when the file is this release's schema and no run is `running` (the only runs a
sweep could change): then it reads the runs in one read transaction and returns the documents
`RunRecord.to_json()` gives, without `result`. In every other case it answers None and the caller
opens the store as before, so migrations, sweeps and every error keep their one place.

Importing this module loads `sqlite3` and nothing of the store's write path.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Sequence
from typing import Any

from .schema import SCHEMA_VERSION

STORE_FILE = "mse.sqlite3"
"""The store file under `$MSE_HOME`."""

RUN_STATUSES: tuple[str, ...] = ("pending", "running", "done", "failed", "interrupted", "cancelled")
"""The values of `RunStatus`, in its order (a test keeps them equal), for parsers that must not import it."""

_BUSY_TIMEOUT_SECS = 30.0
"""As long as the store waits for another process's lock."""


def mse_home_path() -> str:
    """`$MSE_HOME`, or `~/.mse`, with `~` expanded."""
    return os.path.expanduser(os.environ.get("MSE_HOME") or "~/.mse")


def local_store_file(url: str | None) -> str | None:
    """The SQLite file a store URL names, read as `store_from_url` reads it; None for any URL that
    names no file (`memory://`, an unknown scheme, `sqlite://` with no path)."""
    if not url:
        return os.path.join(mse_home_path(), STORE_FILE)
    if url in ("memory://", "memory:", "memory"):
        return None
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        return os.path.expanduser(path) if path else None
    if "://" in url:
        return None
    return os.path.expanduser(url)


def _run_document(row: tuple[Any, ...]) -> dict[str, Any] | None:
    run_id, task_id, status, created, updated, has_launch, host, pid, started, heartbeat = row
    if status not in RUN_STATUSES:
        return None
    try:
        owner = None if host is None else {"host": host, "pid": int(pid), "started_at": float(started or 0.0)}
    except (TypeError, ValueError):
        return None  # a damaged row: opening the store reports it
    return {
        "run_id": run_id,
        "task_id": task_id,
        "status": status,
        "created_at": created,
        "updated_at": updated,
        "owner": owner,
        "heartbeat_at": heartbeat,
        "resumable": status == "interrupted" and bool(has_launch),
    }


def quick_run_list(
    url: str | None, *, statuses: Sequence[str] | None = None, limit: int | None = None
) -> list[dict[str, Any]] | None:
    """The runs `list_runs(status=..., limit=..., with_result=False)` returns, newest first, as JSON
    documents without `result`; None when only opening the store can answer (see the module doc):
    no such regular, non-empty file, another schema version, a `running` run, or any SQLite error."""
    path = local_store_file(url)
    if path is None:
        return None
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        return None
    where = ""
    params: list[object] = []
    if statuses is not None:
        where = f" WHERE status IN ({', '.join('?' * len(statuses))})" if statuses else " WHERE 0"
        params.extend(statuses)
    params.append(-1 if limit is None else limit)
    # `input_json IS NOT NULL` reads the column's type from the row header, never its launch snapshot.
    query = (
        "SELECT id, task_id, status, created_at, updated_at, input_json IS NOT NULL,"
        f" owner_host, owner_pid, owner_started_at, heartbeat_at FROM runs{where}"
        " ORDER BY created_at DESC, rowid DESC LIMIT ?"
    )
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_SECS)
    except sqlite3.Error:
        return None
    try:
        conn.execute("BEGIN")
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            return None
        if conn.execute("SELECT 1 FROM runs WHERE status = 'running' LIMIT 1").fetchone() is not None:
            return None
        rows = conn.execute(query, params).fetchall()
    except (sqlite3.Error, ValueError, TypeError):
        return None
    finally:
        conn.close()
    documents = []
    for row in rows:
        document = _run_document(row)
        if document is None:
            return None
        documents.append(document)
    return documents
