"""Open a store from a URL: `None` (the default SQLite file), `memory://`, `sqlite:///path`, a path, or
`postgresql://…` (`postgres://…`).
"""

from __future__ import annotations

from pathlib import Path

from .base import DEFAULT_STALE_SECS, DEFAULT_TRACE_CAP, Store
from .errors import UNREADABLE_ROW_ERRORS, BadStoreUrl, StoreUnusable
from .listing import STORE_FILE, local_store_file, mse_home_path
from .memory import MemoryStore
from .records import Durability
from .sqlite import SqliteStore


def mse_home() -> Path:
    """`$MSE_HOME`, or `~/.mse`."""
    return Path(mse_home_path())


def default_store_path() -> Path:
    return mse_home() / STORE_FILE


def store_from_url(
    url: str | None = None, *, durability: Durability | str = Durability.BATCH, trace_cap: int = DEFAULT_TRACE_CAP
) -> Store:
    """Build the backend a URL names, without the orphan sweep (see `open_store`); the file a URL
    names is read in one place, `listing.local_store_file`, which the listing's read path shares."""
    mode = Durability(durability)
    if url in ("memory://", "memory:", "memory"):
        return MemoryStore(durability=mode, trace_cap=trace_cap)
    path = local_store_file(url)
    if path is None:
        if url is not None and url.startswith("sqlite://"):
            raise BadStoreUrl(f"store URL {url!r} names no file", "write sqlite:///absolute/path.sqlite3")
        if url is not None and url.startswith(("postgres://", "postgresql://")):
            return _postgres_store(url, mode, trace_cap)
        raise BadStoreUrl(
            f"unknown store URL scheme in {url!r}", "use memory://, sqlite:///path, postgresql://…, or a file path"
        )
    if not url:
        home = mse_home()
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnusable(
                f"MSE_HOME {home} cannot hold the store: {exc.strerror or exc}",
                "point MSE_HOME at a folder you may write (default ~/.mse), or pass --store",
            ) from None
    return SqliteStore(Path(path), durability=mode, trace_cap=trace_cap)


def _postgres_store(url: str, durability: Durability, trace_cap: int) -> Store:
    """The PostgreSQL backend, which needs the optional psycopg package."""
    try:
        from .postgres import PostgresStore
    except ImportError as exc:
        raise StoreUnusable(
            f"the PostgreSQL store needs psycopg, which is not installed ({exc})",
            "pip install 'mlua-swarm[postgres]'",
        ) from None
    return PostgresStore(url, durability=durability, trace_cap=trace_cap)


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
        await store.open()
        await store.sweep_orphans(stale_after=stale_after)
    except UNREADABLE_ROW_ERRORS as exc:
        await store.close()
        raise StoreUnusable.unreadable(local_store_file(url), exc) from None
    except BaseException:
        await store.close()
        raise
    return store
