"""Bytes a SQLite database really occupies once its WAL is folded back into the main file."""

from __future__ import annotations

import os
import sqlite3


def db_bytes(path: str) -> int:
    """Checkpoint the WAL into the database, then the size of the main file plus whatever WAL remains."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    wal = path + "-wal"
    return os.path.getsize(path) + (os.path.getsize(wal) if os.path.exists(wal) else 0)
