"""Listing runs never reads their results (issue #14: `mse runs list` beside a huge result)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mlua_swarm.core.state import StepOutcome
from mlua_swarm.store import MemoryStore, ReplayRow, RunStatus, SqliteStore, Store

from ..conftest import run_mse
from ..store.conftest import entry, new_run


@pytest.fixture(params=["memory", "sqlite"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    store: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "mse.sqlite3")
    yield store
    await store.close()


async def test_a_listing_without_results_leaves_them_unread(backend: Store) -> None:
    store = backend
    run = await new_run(store)
    store.set_result(run.run_id, {"items": list(range(1000))})
    await store.try_transition(run.run_id, RunStatus.RUNNING, RunStatus.DONE)
    [listed] = await store.list_runs(with_result=False)
    assert listed.run_id == run.run_id and listed.status is RunStatus.DONE and listed.result is None
    assert listed.to_json()["resumable"] is False
    [full] = await store.list_runs()
    assert full.result == {"items": list(range(1000))}
    assert (await store.get_run(run.run_id)).result == {"items": list(range(1000))}


async def test_mse_runs_list_never_parses_a_stored_result(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "mse.sqlite3")
    run = await new_run(store)
    store.set_result(run.run_id, {"ok": True})
    await store.flush()
    # A result no JSON parser accepts: any listing that reads it fails.
    store._conn.execute("UPDATE runs SET result_json = 'not json at all' WHERE id = ?", (run.run_id,))
    store._conn.commit()
    await store.close()
    listed = run_mse(["runs", "list", "--json", "--store", str(tmp_path / "mse.sqlite3")])
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["run_id"] == run.run_id and "result" not in row
    # Commands that only need the run to exist (or its status) do not read its result either.
    for command in ("steps", "trace", "cancel"):
        shown = run_mse(["runs", command, run.run_id, "--json", "--store", str(tmp_path / "mse.sqlite3")])
        assert shown.returncode in (0, 1) and "Traceback" not in shown.stderr, (command, shown.stderr)
        assert "not json" not in shown.stderr and "damaged" not in shown.stderr.lower(), (command, shown.stderr)


async def test_history_is_counted_without_loading_it(backend: Store) -> None:
    run = await new_run(backend)
    assert await backend.count_history(run.run_id) == (0, 0)
    backend.append_step(run.run_id, entry("a"), ReplayRow("a", "h1", {"v": 1}, occurrence=0))
    backend.append_step(run.run_id, entry("b", status=StepOutcome.FAILED))
    backend.append_replay(run.run_id, ReplayRow("c", "h2", None, skip=True, occurrence=0))
    await backend.flush()
    counted = await backend.count_history(run.run_id)
    assert counted == (len(await backend.list_steps(run.run_id)), len(await backend.list_replay(run.run_id)))
    assert counted == (2, 2)
