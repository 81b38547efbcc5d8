"""Each step entry keeps the flow node that ran it (`node_index`): through every write path of both
backends, across the migration of a store written before it was kept, and through a real run, its
fanout lanes, a resume and a rerun-from."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from mlua_swarm import WorkerInvocation
from mlua_swarm.core.state import StepOutcome
from mlua_swarm.ids import RunId, StepId
from mlua_swarm.run import Run
from mlua_swarm.store import (
    LaunchSnapshot,
    ReplayRow,
    RunJournal,
    RunOwner,
    RunStatus,
    SqliteStore,
    StepEntry,
    Store,
    open_store,
)
from mlua_swarm.store.owner import current_owner
from mlua_swarm.store.schema import SCHEMA_VERSION

from ..conftest import P, compile_fns
from .conftest import new_run


def _entry(ref: str, node: int | None, **fields: Any) -> StepEntry:
    status = fields.pop("status", StepOutcome.PASSED)
    return StepEntry(ref, StepId.new(), status, 1, 1.0, 1.5, node_index=node, **fields)


async def test_every_write_path_keeps_the_node_index_and_an_entry_without_one_reads_none(store: Store) -> None:
    for durability in ("sync", "batch", "exit"):
        run = await new_run(store)
        journal = RunJournal(store, run.run_id, durability)
        steps = [
            (_entry("bare", 3), ReplayRow("bare", "h1", 1)),
            (_entry("stats", 5, stats={"worker_kind": "python"}), ReplayRow("stats", "h2", {"v": 2})),
            (_entry("failed", 7, status=StepOutcome.FAILED, stderr_tail="boom\n", error="exit 1"), None),
            (_entry("unplaced", None), ReplayRow("unplaced", "h3", 4)),
            (_entry("bare", 0), ReplayRow("bare", "h1", 5)),
        ]
        for entry, replay in steps:
            await journal.record_step(entry, replay)
        await journal.finish("done", None)
        written = [(s.step_ref, s.node_index) for s in await store.list_steps(run.run_id)]
        assert written == [("bare", 3), ("stats", 5), ("failed", 7), ("unplaced", None), ("bare", 0)], durability
        assert [s.to_json()["node_index"] for s in await store.list_steps(run.run_id)] == [3, 5, 7, None, 0]

    # A rerun's cut drops the replay part of a step stored with it; the entry keeps where it ran.
    run = await new_run(store)
    store.append_step(run.run_id, _entry("a", 2), ReplayRow("a", "h", 1, occurrence=0))
    await store.flush()
    assert await store.delete_replay_from(run.run_id, 0) == 1
    assert [(s.step_ref, s.node_index) for s in await store.list_steps(run.run_id)] == [("a", 2)]


OLD_SCHEMA = """
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
    created_at REAL NOT NULL, updated_at REAL NOT NULL, result_json TEXT, input_json TEXT,
    owner_host TEXT, owner_pid INTEGER, owner_started_at REAL, heartbeat_at REAL
);
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_task ON runs (task_id, created_at);
CREATE INDEX runs_status ON runs (status);
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
CREATE TABLE operator_sessions (
    sid TEXT PRIMARY KEY, token_digest TEXT NOT NULL, join_desc TEXT, capability_manifest_json TEXT,
    joined_at REAL NOT NULL, last_access REAL NOT NULL, observed_json TEXT, observed_total INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE operator_seats (
    run_id TEXT NOT NULL, slot TEXT NOT NULL, op TEXT, op_desc TEXT, gen INTEGER NOT NULL,
    PRIMARY KEY (run_id, slot)
) WITHOUT ROWID;
PRAGMA user_version = 4;
"""
"""A store as schema version 4 made it, before step entries kept their node."""


def _history_columns(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(history)")]


async def test_a_store_made_before_node_indexes_gains_the_column_and_its_old_entries_read_none(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute(
            "INSERT INTO runs (id, task_id, status, created_at, updated_at) VALUES ('R-old', 'T-old', 'done', 1, 1)"
        )
        conn.execute(
            "INSERT INTO history (run_id, seq, kind, step_ref, step_id, status, attempt, started_at, finished_at,"
            " input_hash, occurrence, skip, value_json, created_at)"
            " VALUES ('R-old', 1, 2, 'a', 'ST-old', 'passed', 1, 1.0, 1.5, 'h', 0, 0, '1', 1.0)"
        )
    assert "node_index" not in _history_columns(path)

    store = SqliteStore(path)
    try:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert _history_columns(path)[-1] == "node_index"
        run_id = RunId("R-old")
        [old] = await store.list_steps(run_id)
        assert (old.step_ref, old.step_id, old.node_index, old.to_json()["node_index"]) == ("a", "ST-old", None, None)
        journal = RunJournal(store, run_id, "batch")
        await journal.record_step(_entry("b", 4), ReplayRow("b", "h", 2))
        assert [(s.step_ref, s.node_index) for s in await store.list_steps(run_id)] == [("a", None), ("b", 4)]
        assert [(r.step_ref, r.value) for r in await store.list_replay(run_id)] == [("a", 1), ("b", 2)]
    finally:
        await store.close()

    reopened = SqliteStore(path)
    try:
        assert [s.node_index for s in await reopened.list_steps(RunId("R-old"))] == [None, 4]
    finally:
        await reopened.close()


class Parking:
    """While `park` is set, agent `x` given the try's input parks (as a process that died would leave it)."""

    park = False
    parked: asyncio.Event | None = None


async def agent_x(inv: WorkerInvocation) -> Any:
    if Parking.park and isinstance(inv.input, list):
        assert Parking.parked is not None
        Parking.parked.set()
        await asyncio.Event().wait()
    return inv.input


FANOUT_THEN_TRY = {
    "kind": "seq",
    "children": [
        {
            "kind": "fanout",
            "items": P("$.items"),
            "bind": P("$.item"),
            "body": {"kind": "step", "ref": "x", "in": P("$.item"), "out": P("$.lane")},
            "join": "all",
            "out": P("$.lanes"),
            "collect": P("$.lane"),
        },
        {
            "kind": "try",
            "body": {"kind": "step", "ref": "x", "in": P("$.lanes"), "out": P("$.again")},
            "catch": {"kind": "seq", "children": []},
        },
    ],
}
"""Nodes in pre-order: seq 0, fanout 1, its step 2, try 3, its step 4, the catch's seq 5."""


async def test_a_run_records_the_node_each_step_ran_at_and_a_rerun_from_records_the_same(tmp_path: Path) -> None:
    store = await open_store(str(tmp_path / "runs.sqlite3"))
    try:
        compiled = compile_fns(FANOUT_THEN_TRY, {"x": agent_x})
        options = {"fns": {"x": f"{__name__}:agent_x"}}
        run = Run(compiled, store=store, launch=LaunchSnapshot(compiled.raw, {"items": [1, 2, 3]}, options))
        async with run:
            first = await run.execute({"items": [1, 2, 3]})
        assert first.status == "done" and first.final_ctx["again"] == [1, 2, 3]
        placed = [(s.step_ref, s.node_index) for s in await store.list_steps(run.run_id)]
        assert placed == [("x", 2), ("x", 2), ("x", 2), ("x", 4)]

        again = await Run.rerun_from(store, run.run_id, "x")
        async with again:
            second = await again.execute()
        assert second.status == "done"
        placed = [(s.step_ref, s.node_index) for s in await store.list_steps(run.run_id)]
        assert placed == [("x", 2), ("x", 2), ("x", 2), ("x", 4)] * 2
    finally:
        await store.close()


async def test_a_resumed_run_records_its_remaining_steps_at_their_nodes(tmp_path: Path) -> None:
    store = await open_store(str(tmp_path / "runs.sqlite3"))
    Parking.park, Parking.parked = True, asyncio.Event()
    try:
        compiled = compile_fns(FANOUT_THEN_TRY, {"x": agent_x})
        options = {"fns": {"x": f"{__name__}:agent_x"}}
        run = Run(compiled, store=store, launch=LaunchSnapshot(compiled.raw, {"items": [1, 2, 3]}, options))

        async def until_killed() -> None:
            async with run:
                await run.execute({"items": [1, 2, 3]})

        task = asyncio.create_task(until_killed())
        await Parking.parked.wait()
        me = current_owner()
        store.set_owner(run.run_id, RunOwner(me.host, me.pid, me.started_at - 3600))
        assert await store.sweep_orphans() == [run.run_id]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert (await store.get_run(run.run_id)).status is RunStatus.INTERRUPTED
        placed = [(s.step_ref, s.node_index, s.status.value) for s in await store.list_steps(run.run_id)]
        assert placed == [("x", 2, "passed")] * 3 + [("x", 4, "cancelled")]

        Parking.park = False
        resumed = await Run.resume(store, run.run_id)
        async with resumed:
            result = await resumed.execute()
        assert result.status == "done" and result.steps_replayed == 3
        steps = await store.list_steps(run.run_id)
        assert [(s.step_ref, s.node_index, s.status.value) for s in steps] == [*placed, ("x", 4, "passed")]
    finally:
        Parking.park = False
        await store.close()
