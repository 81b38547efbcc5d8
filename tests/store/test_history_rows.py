"""A run's history rows in the SQLite store (schema 7): one rowid table keyed by run number and seq.

The migrations from files of versions 6, 5 and 1 (rows of two tables, of several runs, moved and
read back identical), values of every size, the page a sequential run's commit writes, pruning and
rerun-from, and the limits of the key (run numbers past the largest, seqs past 2**32 - 1)."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.core.state import StepOutcome
from mlua_swarm.ids import RunId
from mlua_swarm.store import ReplayRow, RunStatus, SqliteStore, StepEntry, Store, StoreInUse, StoreWriteFailed, schema
from mlua_swarm.store import sqlite as sqlite_store
from mlua_swarm.store.base import RUN_COLUMNS, step_row
from mlua_swarm.store.owner import process_start_time
from mlua_swarm.store.records import dumps
from mlua_swarm.store.schema import SCHEMA_VERSION, migrate
from mlua_swarm.store.sqlite import SEQ_LIMIT

from ..conftest import run_mse
from .conftest import new_run

SIZES = (2, 200, 1_000, 4_000, 16_000, 100_000, 1_500_000)
OLD_COLUMNS = (
    "run_id, seq, kind, step_ref, step_id, status, attempt, started_at, finished_at, stats_json, stderr_tail,"
    " error_json, input_hash, occurrence, skip, value_json, created_at"
)
"""A `history` row's columns before version 7 (version 5 added `node_index` after them)."""


@pytest.fixture
async def file_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A SQLite store in a fresh file."""
    store = SqliteStore(tmp_path / "s.sqlite3")
    yield store
    await store.close()


def text(size: int, char: str = "x") -> str:
    """A JSON string whose encoding is `size` bytes, made of `char` (one to four bytes) and `y`s."""
    width = len(char.encode())
    body = char * ((size - 2) // width)
    return body + "y" * (size - 2 - len(body.encode()))


def entry(ref: str, index: int) -> StepEntry:
    return StepEntry(ref, f"ST-{index}", StepOutcome.PASSED, 1, 1.0, 1.5, {"worker_kind": "python"}, None, None, index)


def replay(ref: str, value: Any, occurrence: int = 0) -> ReplayRow:
    return ReplayRow(ref, "ab" * 32, value, False, occurrence, 2.0)


def keys(path: Path) -> list[tuple[int, int]]:
    """Every `history` row as (run number, seq), in key order."""
    with closing(sqlite3.connect(path)) as conn:
        return [(key >> 32, key & SEQ_LIMIT) for (key,) in conn.execute("SELECT key FROM history ORDER BY key")]


def tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def add_old_run(conn: sqlite3.Connection, run_id: str) -> None:
    conn.execute(
        f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, 'T-old', 'done', 1.0, 2.0, '{{}}', NULL, NULL, NULL, NULL, NULL)",
        (run_id,),
    )


def insert_old_step(
    conn: sqlite3.Connection, table: str, run_id: str, seq: int, kind: int, row: tuple[Any, ...]
) -> None:
    """A step row as versions 5 and 6 wrote it (`row` is a `StepRow`, `node_index` last)."""
    conn.execute(
        f"INSERT INTO {table} ({OLD_COLUMNS}, node_index) VALUES ({', '.join('?' * 18)})", (run_id, seq, kind, *row)
    )


def insert_old_replay(conn: sqlite3.Connection, table: str, run_id: str, seq: int, value: Any) -> None:
    conn.execute(
        f"INSERT INTO {table} (run_id, seq, kind, step_ref, input_hash, occurrence, skip, value_json, created_at)"
        " VALUES (?, ?, 1, 'lone', 'h', 0, 1, ?, 3.0)",
        (run_id, seq, dumps(value)),
    )


async def test_a_version_6_store_moves_both_tables_into_one_and_reads_back_identical(tmp_path: Path) -> None:
    """Two runs whose rows are split between `history` and `history_big` (large values), and a row of
    a run that no longer exists."""
    path = tmp_path / "v6.sqlite3"
    first = [text(200), text(5_000), {"n": 2**70, "é": text(3_000, "é")}, text(30), text(100_000)]
    second = ["only", text(700)]
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn, str(path), target=6)
        for run_id in ("R-first", "R-second"):
            add_old_run(conn, run_id)
        # Interleaved as two runs write them; each value in the table version 6 chose for it.
        for run_id, values in (("R-first", first), ("R-second", second)):
            for seq, value in enumerate(values, start=1):
                table = "history_big" if len(dumps(value)) > 640 else "history"
                row = step_row(entry(f"s{seq}", seq), replay(f"s{seq}", value))
                insert_old_step(conn, table, run_id, seq, 2, row)
        insert_old_step(conn, "history", "R-first", len(first) + 1, 0, step_row(entry("bare", 9)))
        insert_old_replay(conn, "history_big", "R-first", len(first) + 2, {"lone": text(5_000)})
        insert_old_step(conn, "history", "R-gone", 1, 0, step_row(entry("orphan", 1)))

    store = SqliteStore(path)
    try:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        assert "history_big" not in tables(path) and "history_v6" not in tables(path)
        nums = dict(store._conn.execute("SELECT id, num FROM runs").fetchall())
        assert nums == {"R-first": 1, "R-second": 2}
        assert keys(path) == [(1, seq) for seq in range(1, len(first) + 3)] + [(2, 1), (2, 2)]

        run_id = RunId("R-first")
        steps = await store.list_steps(run_id)
        assert [s.step_ref for s in steps] == [f"s{i}" for i in range(1, len(first) + 1)] + ["bare"]
        assert steps[1] == entry("s2", 2)
        assert [r.value for r in await store.list_replay(run_id)] == [*first, {"lone": text(5_000)}]
        assert [r.value for r in await store.list_replay(RunId("R-second"))] == second
        assert await store.count_history(RunId("R-second")) == (2, 2)

        # New rows are numbered after the old ones, in the run's own key range.
        store.append_step(run_id, entry("new", 99), replay("new", text(4_000)))
        await store.flush()
        assert keys(path)[len(first) + 2] == (1, len(first) + 3)
        assert [r.value for r in await store.list_replay(run_id)][-2:] == [{"lone": text(5_000)}, text(4_000)]
        # A new run takes the next number.
        fresh = await new_run(store)
        store.append_step(fresh.run_id, entry("a", 1), replay("a", 1))
        await store.flush()
        assert keys(path)[-1] == (3, 1)
    finally:
        await store.close()


async def test_upgrading_a_large_file_says_so_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Copying the history of a large file takes a while (~20 s a GB), so it is announced; a small
    file (the other migration tests) upgrades quietly."""
    quiet, loud = tmp_path / "quiet.sqlite3", tmp_path / "loud.sqlite3"
    for path in (quiet, loud):
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            migrate(conn, str(path), target=6)
    SqliteStore(quiet).close_sync()
    assert not caplog.records
    size = loud.stat().st_size
    monkeypatch.setattr(schema, "LOUD_UPGRADE_BYTES", size)
    SqliteStore(loud).close_sync()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            f"upgrading the store {loud} to schema version 7: its run history is copied once (a 0 MB file,"
            " about 1 s); other mse processes opening it wait",
        )
    ]


async def test_a_version_5_store_with_small_and_large_values_migrates_and_reads_back_identical(tmp_path: Path) -> None:
    path = tmp_path / "v5.sqlite3"
    values: list[Any] = [text(size) for size in SIZES] + [
        {"answer": text(3_000, "é"), "n": 2**70},
        [1.5, None, True, "\u2028\U0001f600"],
    ]
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn, str(path), target=5)
        add_old_run(conn, "R-old")
        for seq, value in enumerate(values, start=1):
            insert_old_step(conn, "history", "R-old", seq, 2, step_row(entry(f"s{seq}", seq), replay(f"s{seq}", value)))
        insert_old_replay(conn, "history", "R-old", len(values) + 1, {"lone": text(5_000)})

    store = SqliteStore(path)
    try:
        run_id = RunId("R-old")
        assert [r.value for r in await store.list_replay(run_id)] == [*values, {"lone": text(5_000)}]
        assert (await store.list_steps(run_id))[0] == entry("s1", 1)
        assert await store.count_history(run_id) == (len(values), len(values) + 1)
    finally:
        await store.close()


async def test_a_store_from_before_version_5_migrates_and_keeps_its_large_values(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        migrate(conn, str(path), target=1)
        conn.execute(
            "INSERT INTO runs (id, task_id, status, created_at, updated_at) VALUES ('R-1', 'T-1', 'done', 1, 1)"
        )
        conn.execute(
            "INSERT INTO history (run_id, seq, kind, step_ref, input_hash, occurrence, skip, value_json, created_at)"
            " VALUES ('R-1', 1, 1, 'a', 'h', 0, 0, ?, 1.0)",
            (dumps(text(20_000)),),
        )
    store = SqliteStore(path)
    try:
        assert [r.value for r in await store.list_replay(RunId("R-1"))] == [text(20_000)]
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        await store.close()


CHARS = ["x", "é", "\u20ac", "\U0001f600"]
"""One to four bytes each in UTF-8."""


@pytest.mark.parametrize("char", CHARS)
async def test_values_of_every_size_round_trip(store: Store, char: str) -> None:
    run = await new_run(store)
    values = [text(size, char) for size in (20, 640, 1_000, 1_100, 4_000, 4_100, 70_000)]
    for i, value in enumerate(values):
        store.append_step(run.run_id, entry(f"s{i}", i), replay(f"s{i}", value))
    store.append_replay(run.run_id, replay("lone", text(5_000, char)))
    await store.flush()
    assert [r.value for r in await store.list_replay(run.run_id)] == [*values, text(5_000, char)]
    assert [s.step_ref for s in await store.list_steps(run.run_id)] == [f"s{i}" for i in range(len(values))]


async def test_a_batch_of_rows_of_mixed_sizes_keeps_its_order(store: Store) -> None:
    run = await new_run(store)
    values = ["a", text(5_000), "b", text(70_000, "é"), text(700), "c"]
    rows = [step_row(entry(f"s{i}", i), replay(f"s{i}", v)) for i, v in enumerate(values)]
    rows.insert(2, step_row(entry("no-replay", 9)))
    store.append_step_rows(run.run_id, rows)
    await store.flush()
    assert [r.value for r in await store.list_replay(run.run_id)] == values
    assert [s.step_ref for s in await store.list_steps(run.run_id)] == [r.step_ref for r in rows]
    assert await store.count_history(run.run_id) == (7, 6)
    # The journal's path, one step at a time, after the batch.
    await store.commit_step(run.run_id, step_row(entry("last", 10), replay("last", text(9_000))), store.durability)
    assert (await store.list_replay(run.run_id))[-1].value == text(9_000)


def page_count(store: SqliteStore) -> int:
    return int(store._conn.execute("PRAGMA page_count").fetchone()[0])


async def test_kilobyte_values_take_no_overflow_page_each(file_store: SqliteStore) -> None:
    """200 steps with 1 KB values fill ~70 pages; in version 5, each of these rows overflowed onto a
    page of its own (over 200 pages)."""
    store = file_store
    run = await new_run(store)
    before = page_count(store)
    for i in range(200):
        store.append_step(run.run_id, entry(f"s{i}", i), replay(f"s{i}", text(1_000)))
    await store.flush()
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert page_count(store) - before < 100


def wal_frames(path: Path, page_size: int) -> int:
    wal = path.with_name(path.name + "-wal")
    return max(0, wal.stat().st_size - 32) // (page_size + 24)


async def test_a_sequential_run_writes_about_one_page_a_step(file_store: SqliteStore) -> None:
    """The commit of each step of a lone run (the journal's path) appends to the table's last leaf;
    a full leaf starts a new one. With the layout of version 6, ~1.7 pages a step."""
    store, path = file_store, file_store.path
    store._conn.execute("PRAGMA wal_autocheckpoint = 0")
    page_size = int(store._conn.execute("PRAGMA page_size").fetchone()[0])
    run = await new_run(store)
    await store.commit_step(run.run_id, step_row(entry("s0", 0), replay("s0", 0)), store.durability)
    before, commits = wal_frames(path, page_size), store.commits
    for i in range(1, 601):
        row = step_row(entry(f"s{i}", i), ReplayRow(f"s{i}", f"{i:064x}", i, False, 0, 2.0))
        await store.commit_step(run.run_id, row, store.durability)
    assert store.commits - commits == 600
    per_step = (wal_frames(path, page_size) - before) / 600
    assert per_step < 1.25, per_step
    assert [r.value for r in await store.list_replay(run.run_id)] == list(range(601))


async def _fill(store: SqliteStore, sizes: list[int]) -> RunId:
    run = await new_run(store)
    for i, size in enumerate(sizes):
        store.append_step(run.run_id, entry(f"s{i}", i), replay(f"s{i}", text(size)))
    await store.flush()
    assert await store.try_transition(run.run_id, RunStatus.RUNNING, RunStatus.DONE)
    return run.run_id


async def test_prune_leaves_no_row_of_a_deleted_run_and_gives_the_space_back(file_store: SqliteStore) -> None:
    store, path = file_store, file_store.path
    await _fill(store, [200] * 3)
    for _ in range(3):
        await _fill(store, [100_000, 200] * 10)
    kept = await _fill(store, [2_000, 20])
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    grown = path.stat().st_size
    assert await store.prune(keep=1) == 4
    assert keys(path) == [(5, 1), (5, 2)]
    assert [r.value for r in await store.list_replay(kept)] == [text(2_000), text(20)]
    assert store._conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert path.stat().st_size < grown // 20
    # The space given back (VACUUM) keeps run numbers: the next run is numbered after the kept one.
    assert (await store.list_replay(await _fill(store, [30])))[0].value == text(30)
    assert keys(path)[-1] == (6, 1)


async def test_rerun_from_cuts_the_log_of_that_run_only(file_store: SqliteStore) -> None:
    store, path = file_store, file_store.path
    run_id = await _fill(store, [50_000, 20, 50_000, 20, 50_000, 20])
    store.append_replay(run_id, replay("lone", text(3_000)))
    store.append_replay(run_id, replay("lone-small", text(30)))
    other = await _fill(store, [20, 20])
    await store.flush()
    assert await store.delete_replay_from(run_id, 3) == 5
    assert [r.value for r in await store.list_replay(run_id)] == [text(50_000), text(20), text(50_000)]
    assert [s.step_ref for s in await store.list_steps(run_id)] == [f"s{i}" for i in range(6)]
    assert await store.count_history(run_id) == (6, 3)
    with closing(sqlite3.connect(path)) as conn:
        kept = [
            (key & SEQ_LIMIT, value is None)
            for key, value in conn.execute("SELECT key, value_json FROM history WHERE key >> 32 = 1")
        ]
    assert kept == [(1, False), (2, False), (3, False), (4, True), (5, True), (6, True)]
    assert [r.value for r in await store.list_replay(other)] == [text(20), text(20)]


async def test_past_the_largest_run_number_a_new_run_takes_a_free_one(
    file_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = file_store
    monkeypatch.setattr(sqlite_store, "RUN_NUM_LIMIT", 3)
    runs = [await _fill(store, [20 + i]) for i in range(3)]
    with pytest.raises(StoreWriteFailed, match="holds 3 runs") as caught:
        await new_run(store)
    assert "mse runs prune" in caught.value.hint
    await store.delete_run(runs[1])
    fresh = await _fill(store, [99])
    assert store._conn.execute("SELECT num FROM runs WHERE id = ?", (fresh,)).fetchone()[0] == 2
    assert [(await store.list_replay(r))[0].value for r in (runs[0], fresh, runs[2])] == [
        text(20),
        text(99),
        text(22),
    ]


async def test_a_run_past_the_last_seq_stops_with_a_clear_error(file_store: SqliteStore) -> None:
    store = file_store
    run = await new_run(store)
    store._conn.execute(
        "INSERT INTO history (key, kind, step_ref, step_id, status, attempt)"
        " VALUES ((SELECT num FROM runs WHERE id = ?) * 4294967296 + ?, 0, 'top', 'ST-top', 'passed', 1)",
        (run.run_id, SEQ_LIMIT),
    )
    with pytest.raises(StoreWriteFailed, match="4,294,967,295 history rows"):
        await store.commit_step(run.run_id, step_row(entry("next", 1)), store.durability)
    other = await _fill(store, [20])
    assert [r.value for r in await store.list_replay(other)] == [text(20)]
    assert [s.step_ref for s in await store.list_steps(run.run_id)] == ["top"]


async def test_the_upgrade_waits_for_an_older_release_still_running_a_run_in_the_file(tmp_path: Path) -> None:
    """The upgrade to version 7 replaces the table an older release writes steps into: while a
    process of that release still runs a run here, opening the file is refused and changes nothing;
    once that process is gone, it upgrades."""
    path = tmp_path / "mse.sqlite3"
    older = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn, str(path), target=6)
            conn.execute(
                f"INSERT INTO runs ({RUN_COLUMNS})"
                " VALUES ('R-live', 'T-1', 'running', 1.0, 2.0, NULL, NULL, ?, ?, ?, NULL)",
                (socket.gethostname(), older.pid, process_start_time(older.pid)),
            )
            insert_old_step(conn, "history", "R-live", 1, 2, step_row(entry("s1", 1), replay("s1", "kept")))

        with pytest.raises(StoreInUse, match=rf"run R-live is still running in it, in process {older.pid}") as caught:
            SqliteStore(path)
        assert "left untouched" in caught.value.hint
        refused = run_mse(["runs", "list"], env={"MSE_HOME": str(tmp_path)})
        assert refused.returncode == 2, refused.stderr
        assert "store_in_use" in refused.stderr and "Traceback" not in refused.stderr
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 6
            assert conn.execute("SELECT COUNT(*) FROM history").fetchone()[0] == 1
    finally:
        assert older.stdin is not None
        older.stdin.close()
        older.wait()

    store = SqliteStore(path)
    try:
        assert [r.value for r in await store.list_replay(RunId("R-live"))] == ["kept"]
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        await store.close()
