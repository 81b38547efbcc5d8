"""Store fixtures: every contract test runs against each backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mlua_swarm.core.state import StepOutcome
from mlua_swarm.store import LaunchSnapshot, MemoryStore, RunRecord, SqliteStore, StepEntry, Store, create_run
from mlua_swarm.store.postgres import PostgresStore

LAUNCH = LaunchSnapshot({"name": "demo", "flow": {"kind": "step", "ref": "a"}}, {"topic": "x"}, {"timeout": 5})


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: Store
    if request.param == "memory":
        backend = MemoryStore()
    elif request.param == "sqlite":
        backend = SqliteStore(tmp_path / "mse.sqlite3")
    else:
        backend = PostgresStore(request.getfixturevalue("pg_url"))
    yield backend
    await backend.close()


async def new_run(store: Store, launch: LaunchSnapshot | None = LAUNCH) -> RunRecord:
    return await create_run(store, launch, goal="test")


def entry(ref: str, status: StepOutcome = StepOutcome.PASSED, attempt: int = 1) -> StepEntry:
    return StepEntry(ref, f"ST-{ref}", status, attempt, 1.0, 1.5, {"tokens": 3}, None, None)
