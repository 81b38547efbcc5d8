"""What only the SQLite backend promises: persistence, migrations, batched commits, crash safety, concurrency."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mlua_swarm.ids import RunId
from mlua_swarm.store import (
    Duplicate,
    Durability,
    ReplayRow,
    RunJournal,
    RunStatus,
    SchemaTooNew,
    SqliteStore,
    open_store,
)
from mlua_swarm.store import sqlite as sqlite_backend
from mlua_swarm.store.schema import SCHEMA_VERSION, migrate

from .conftest import LAUNCH, entry, new_run

WRITER = Path(__file__).with_name("writer.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def _writer(db: Path, runs: int, steps: int, *, wait: bool = False) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    args = [sys.executable, str(WRITER), str(db), str(runs), str(steps)] + (["--wait"] if wait else [])
    return subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


async def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    store = SqliteStore(db)
    secret = await store.token_secret()
    run = await new_run(store)
    journal = RunJournal(store, run.run_id)
    await journal.record_step(entry("a"), ReplayRow("a", "h", {"v": 1}))
    await journal.finish(RunStatus.DONE, {"ok": True})
    await store.close()

    again = SqliteStore(db)
    assert await again.token_secret() == secret
    got = await again.get_run(run.run_id)
    assert got.status is RunStatus.DONE and got.result == {"ok": True} and got.input_json == LAUNCH.to_json()
    assert [r.value for r in await again.list_replay(run.run_id)] == [{"v": 1}]
    await again.close()
    assert db.stat().st_mode & 0o777 == 0o600


async def test_writes_in_one_tick_share_one_commit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    runs = [await new_run(store) for _ in range(10)]
    journals = [RunJournal(store, r.run_id) for r in runs]
    commits: list[str] = []
    store._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)

    await asyncio.gather(*(j.record_step(entry("a"), ReplayRow("a", "h", 1)) for j in journals))

    assert commits == ["COMMIT"]
    await store.close()


async def test_sync_durability_commits_at_each_step_with_full_fsync(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3", durability=Durability.SYNC)
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    run = await new_run(store)
    journal = RunJournal(store, run.run_id)
    await journal.record_step(entry("a"), ReplayRow("a", "h", 1))
    assert not store._conn.in_transaction
    await store.close()


async def test_old_schema_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, str(db), target=1)
    conn.execute(
        "INSERT INTO runs (id, task_id, status, created_at, updated_at, input_json)"
        " VALUES ('R-old', 'T-old', 'running', 1.0, 1.0, NULL)"
    )
    conn.execute(
        "INSERT INTO tasks (id, goal, status, created_at, updated_at) VALUES ('T-old', 'g', 'running', 1.0, 1.0)"
    )
    conn.close()

    store = await open_store(str(db))

    assert isinstance(store, SqliteStore)
    assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    run = await store.get_run(RunId("R-old"))
    # No owner and no heartbeat since 1970: the sweep on open took it for an orphan.
    assert run.status is RunStatus.INTERRUPTED and run.owner is None
    await store.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "new.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew) as refused:
        SqliteStore(db)
    assert refused.value.code == "store_schema_too_new"
    assert "upgrade mlua-swarm" in refused.value.hint
    assert str(SCHEMA_VERSION + 1) in str(refused.value)


async def test_fifty_concurrent_runs_lose_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")

    async def one(index: int) -> str:
        run = await new_run(store)
        journal = RunJournal(store, run.run_id)
        for step in range(20):
            journal.trace("core.step_dispatched", f"s{step}", 1)
            await asyncio.sleep(0)
            await journal.record_step(entry(f"s{step}"), ReplayRow(f"s{step}", "h", [index, step]))
        await journal.finish(RunStatus.DONE, {"index": index})
        return run.run_id

    run_ids = await asyncio.gather(*(one(i) for i in range(50)))
    await store.close()

    again = SqliteStore(tmp_path / "s.sqlite3")
    for index, run_id in enumerate(run_ids):
        assert len(await again.list_steps(run_id)) == 20
        assert [r.value for r in await again.list_replay(run_id)] == [[index, s] for s in range(20)]
        assert (await again.get_run(run_id)).status is RunStatus.DONE
    await again.close()


def test_two_processes_write_one_file(tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite3"
    SqliteStore(db).close_sync()
    children = [_writer(db, runs=5, steps=40, wait=True) for _ in range(2)]
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    outputs = [child.communicate(timeout=120) for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        assert "locked" not in err

    async def check() -> None:
        store = SqliteStore(db)
        runs = await store.list_runs()
        assert len(runs) == 10 and all(r.status is RunStatus.DONE for r in runs)
        for run in runs:
            assert len(await store.list_steps(run.run_id)) == 40
        await store.close()

    asyncio.run(check())


async def test_sigkill_never_loses_a_flushed_step(tmp_path: Path) -> None:
    db = tmp_path / "crash.sqlite3"
    child = _writer(db, runs=4, steps=1_000_000)
    assert child.stdout is not None
    flushed: list[tuple[str, int]] = []
    while len(flushed) < 400:
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else "writer died"
        run_id, index = line.split()
        flushed.append((run_id, int(index)))
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    store = await open_store(str(db))
    by_run: dict[RunId, set[int]] = {}
    for run_id, index in flushed:
        by_run.setdefault(RunId(run_id), set()).add(index)
    for run_id, indexes in by_run.items():
        steps = {int(s.step_ref[1:]) for s in await store.list_steps(run_id)}
        replay = {r.value["i"] for r in await store.list_replay(run_id)}
        assert indexes <= steps
        assert indexes <= replay
        # The killed owner is gone, so opening the store swept its runs to interrupted.
        assert (await store.get_run(run_id)).status is RunStatus.INTERRUPTED
    await store.close()


async def test_two_stores_on_one_file_in_one_loop_take_turns(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    first = SqliteStore(db)
    second = SqliteStore(db)
    run_a = await new_run(first)
    run_b = await new_run(second)
    first.append_step(run_a.run_id, entry("a"))  # its commit is still pending
    second.append_step(run_b.run_id, entry("b"))  # would wait for the lock forever without taking turns
    await asyncio.gather(first.flush(), second.flush())
    assert [s.step_ref for s in await second.list_steps(run_a.run_id)] == ["a"]
    assert [s.step_ref for s in await first.list_steps(run_b.run_id)] == ["b"]
    await first.close()
    await second.close()


async def test_trace_appends_from_two_writers_never_reuse_a_seq(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    owner = SqliteStore(db)
    other = SqliteStore(db)
    run = await new_run(owner)  # queues core.run_started as seq 1
    owner.append_trace(run.run_id, "core.a")  # seq 2, not written yet
    other.append_trace(run.run_id, "core.cancel_requested")  # takes seq 1 in the file
    await other.flush(Durability.SYNC)
    await owner.flush(Durability.SYNC)  # clashes, so its events move after the other's
    assert owner.append_trace(run.run_id, "core.b") == 4
    await owner.flush(Durability.SYNC)
    events = await other.list_trace(run.run_id)
    assert [(e.seq, e.kind) for e in events] == [
        (1, "core.cancel_requested"),
        (2, "core.run_started"),
        (3, "core.a"),
        (4, "core.b"),
    ]
    await other.close()
    await owner.close()


async def test_trace_is_written_in_bulk_after_the_step_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_backend, "TRACE_DELAY_SECS", 0.0)
    db = tmp_path / "s.sqlite3"
    store = SqliteStore(db)
    reader = sqlite3.connect(db)
    run = await new_run(store)
    journal = RunJournal(store, run.run_id)
    journal.trace("core.step_completed", "a", 1)
    await journal.record_step(entry("a"), ReplayRow("a", "h", 1))

    def kinds() -> list[str]:
        return [r[0] for r in reader.execute("SELECT kind FROM trace WHERE run_id = ? ORDER BY seq", (run.run_id,))]

    # The step is on disk already, its entry and replay row as one row.
    assert reader.execute("SELECT step_ref, value_json FROM history").fetchall() == [("a", "1")]
    for _ in range(100):
        if kinds():
            break
        await asyncio.sleep(0)
    assert kinds() == ["core.run_started", "core.step_completed"]
    reader.close()
    await store.close()


async def test_a_failed_commit_is_reported_to_the_flush_that_waited_for_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    run = await new_run(store)
    conn = store._conn
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TEMP TABLE child (pid INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")
    journal = RunJournal(store, run.run_id)
    store._write("INSERT INTO child (pid) VALUES (42)")  # only COMMIT notices the dangling reference
    with pytest.raises(sqlite3.IntegrityError):
        await journal.record_step(entry("lost"), ReplayRow("lost", "h", 1))
    await journal.record_step(entry("kept"), ReplayRow("kept", "h", 2))
    store.append_replay(run.run_id, ReplayRow("lost", "h", 3, occurrence=0))  # its rolled-back key is free
    await store.flush()
    assert [s.step_ref for s in await store.list_steps(run.run_id)] == ["kept"]
    assert [r.value for r in await store.list_replay(run.run_id)] == [2, 3]
    await store.close()


async def test_a_sequential_writer_steps_after_rows_another_writer_took(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    owner = SqliteStore(db)
    other = SqliteStore(db)
    run = await new_run(owner)
    journal = RunJournal(owner, run.run_id)
    await journal.record_step(entry("a"), ReplayRow("a", "h", 1))
    await journal.record_step(entry("b"), ReplayRow("b", "h", 2))  # the same task again: one insert, its own commit
    other.append_step(run.run_id, entry("x"))  # takes the seq the owner counts on next
    await other.flush()
    before = owner.commits
    await journal.record_step(entry("c"), ReplayRow("c", "h", 3))
    assert owner.commits == before + 1
    assert [s.step_ref for s in await other.list_steps(run.run_id)] == ["a", "b", "x", "c"]
    assert [r.value for r in await other.list_replay(run.run_id)] == [1, 2, 3]
    await other.close()
    await owner.close()


async def test_a_file_with_separate_step_and_replay_rows_reads_back_after_the_upgrade(tmp_path: Path) -> None:
    db = tmp_path / "v2.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, str(db), target=2)
    conn.execute(
        "INSERT INTO runs (id, task_id, status, created_at, updated_at) VALUES ('R-old', 'T-old', 'done', 1.0, 1.0)"
    )
    conn.execute(
        "INSERT INTO history (run_id, seq, kind, step_ref, step_id, status, attempt)"
        " VALUES ('R-old', 1, 0, 'a', 'ST-a', 'passed', 1)"
    )
    conn.execute(
        "INSERT INTO history (run_id, seq, kind, step_ref, input_hash, occurrence, skip, value_json, created_at)"
        " VALUES ('R-old', 2, 1, 'a', 'h', 0, 0, '{\"v\":1}', 1.0)"
    )
    conn.close()

    store = SqliteStore(db)
    assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    run_id = RunId("R-old")
    store.append_step(run_id, entry("b"), ReplayRow("b", "h", 2, occurrence=0))
    with pytest.raises(Duplicate):
        store.append_step(run_id, entry("a"), ReplayRow("a", "h", 3, occurrence=0))
    await store.flush()
    assert [s.step_ref for s in await store.list_steps(run_id)] == ["a", "b"]
    assert [(r.step_ref, r.value) for r in await store.list_replay(run_id)] == [("a", {"v": 1}), ("b", 2)]
    assert await store.delete_replay_from(run_id, 0) == 2
    assert [s.step_ref for s in await store.list_steps(run_id)] == ["a", "b"]
    assert await store.list_replay(run_id) == []
    await store.close()
