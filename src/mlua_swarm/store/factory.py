"""Open a store from a URL: `None` (the default SQLite file), `memory://`, `sqlite:///path`, or a path."""

from __future__ import annotations

import os
from pathlib import Path

from .base import DEFAULT_STALE_SECS, DEFAULT_TRACE_CAP, Store
from .errors import BadStoreUrl
from .listing import STORE_FILE
from .memory import MemoryStore
from .records import Durability
from .sqlite import SqliteStore


def mse_home() -> Path:
    """`$MSE_HOME`, or `~/.mse`."""
    return Path(os.environ.get("MSE_HOME") or "~/.mse").expanduser()


def default_store_path() -> Path:
    return mse_home() / STORE_FILE


def store_from_url(
    url: str | None = None, *, durability: Durability | str = Durability.BATCH, trace_cap: int = DEFAULT_TRACE_CAP
) -> Store:
    """Build the backend a URL names, without the orphan sweep (see `open_store`)."""
    mode = Durability(durability)
    if url is None or url == "":
        home = mse_home()
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return SqliteStore(home / STORE_FILE, durability=mode, trace_cap=trace_cap)
    if url in ("memory://", "memory:", "memory"):
        return MemoryStore(durability=mode, trace_cap=trace_cap)
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path:
            raise BadStoreUrl(f"store URL {url!r} names no file", "write sqlite:///absolute/path.sqlite3")
        return SqliteStore(Path(path).expanduser(), durability=mode, trace_cap=trace_cap)
    if url.startswith(("postgres://", "postgresql://")):
        raise BadStoreUrl(
            "the PostgreSQL store is not part of this build",
            "use a SQLite file (sqlite:///path) or memory://",
        )
    if "://" in url:
        raise BadStoreUrl(f"unknown store URL scheme in {url!r}", "use memory://, sqlite:///path, or a file path")
    return SqliteStore(Path(url).expanduser(), durability=mode, trace_cap=trace_cap)


async def open_store(
    url: str | None = None,
    *,
    durability: Durability | str = Durability.BATCH,
    trace_cap: int = DEFAULT_TRACE_CAP,
    stale_after: float = DEFAULT_STALE_SECS,
) -> Store:
    """Open a store and mark runs whose owner is gone as `interrupted` (every open sweeps)."""
    store = store_from_url(url, durability=durability, trace_cap=trace_cap)
    try:
        await store.sweep_orphans(stale_after=stale_after)
    except BaseException:
        await store.close()
        raise
    return store
