"""Step values of every size in the SQLite store (schema 6): rows whose value is over
`BIG_VALUE_BYTES` go whole into the rowid table `history_big`, the others stay in the WITHOUT ROWID
`history`. The migration from a version-5 file, values a byte either side of the threshold, runs
mixing both kinds of rows, and pruning and rerun-from leaving no row behind in either table."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.core.state import StepOutcome
from mlua_swarm.ids import RunId
from mlua_swarm.store import ReplayRow, RunStatus, SqliteStore, StepEntry, Store
from mlua_swarm.store.base import RUN_COLUMNS, step_row
from mlua_swarm.store.records import dumps
from mlua_swarm.store.schema import SCHEMA_VERSION, migrate
from mlua_swarm.store.sqlite import _HISTORY_INSERT, BIG_VALUE_BYTES

from .conftest import new_run

SIZES = (2, 200, 1_000, 4_000, 16_000, 100_000, 1_500_000)


def text(size: int, char: str = "x") -> str:
    """A JSON string whose encoding is `size` bytes, made of `char` (one to four bytes) and `y`s."""
    width = len(char.encode())
    body = char * ((size - 2) // width)
    return body + "y" * (size - 2 - len(body.encode()))


def entry(ref: str, index: int) -> StepEntry:
    return StepEntry(ref, f"ST-{index}", StepOutcome.PASSED, 1, 1.0, 1.5, {"worker_kind": "python"}, None, None, index)


def replay(ref: str, value: Any, occurrence: int = 0) -> ReplayRow:
    return ReplayRow(ref, "ab" * 32, value, False, occurrence, 2.0)


def seqs(path: Path, table: str) -> list[int]:
    with closing(sqlite3.connect(path)) as conn:
        return [row[0] for row in conn.execute(f"SELECT seq FROM {table} ORDER BY seq")]


def write_version_5(path: Path, run_id: str, values: list[Any]) -> None:
    """A store file as schema version 5 left it, every row in `history`: one step per value (a step
    with its replay row), then a step without one and a replay row on its own."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn, str(path), target=5)
        conn.execute(
            f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, 'T-old', 'done', 1.0, 2.0, '{{}}', NULL, NULL, NULL, NULL,"
            " NULL)",
            (run_id,),
        )
        seq = 0
        for seq, value in enumerate(values, start=1):
            row = step_row(entry(f"s{seq}", seq), replay(f"s{seq}", value))
            conn.execute(_HISTORY_INSERT, (run_id, seq, 2, *row))
        conn.execute(_HISTORY_INSERT, (run_id, seq + 1, 0, *step_row(entry("bare", seq + 1))))
        conn.execute(
            "INSERT INTO history (run_id, seq, kind, step_ref, input_hash, occurrence, skip, value_json, created_at)"
            " VALUES (?, ?, 1, 'lone', 'h', 0, 1, ?, 3.0)",
            (run_id, seq + 2, dumps({"lone": text(5_000)})),
        )
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
        assert "history_big" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}


async def test_a_version_5_store_with_small_and_large_values_migrates_and_reads_back_identical(tmp_path: Path) -> None:
    path = tmp_path / "v5.sqlite3"
    values: list[Any] = [text(size) for size in SIZES] + [
        {"answer": text(3_000, "é"), "n": 2**70},
        [1.5, None, True, "\u2028\U0001f600"],
    ]
    write_version_5(path, "R-old", values)

    store = SqliteStore(path)
    try:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        run_id = RunId("R-old")
        old = len(values) + 2
        assert seqs(path, "history") == list(range(1, old + 1))
        assert seqs(path, "history_big") == []
        steps = await store.list_steps(run_id)
        assert [s.step_ref for s in steps] == [f"s{i}" for i in range(1, len(values) + 1)] + ["bare"]
        assert steps[0] == entry("s1", 1)
        rows = await store.list_replay(run_id)
        assert [r.value for r in rows] == [*values, {"lone": text(5_000)}]
        assert [(r.step_ref, r.occurrence, r.skip) for r in rows[-2:]] == [
            (f"s{len(values)}", 0, False),
            ("lone", 0, True),
        ]
        # New steps are numbered after the old ones, the large one in the new table.
        store.append_step(run_id, entry("new-big", 99), replay("new-big", text(4_000)))
        store.append_step(run_id, entry("new-small", 100), replay("new-small", "ok"))
        await store.flush()
        assert (seqs(path, "history")[-1], seqs(path, "history_big")) == (old + 2, [old + 1])
        assert [r.value for r in await store.list_replay(run_id)][-3:] == [{"lone": text(5_000)}, text(4_000), "ok"]
        assert [s.step_ref for s in await store.list_steps(run_id)][-3:] == ["bare", "new-big", "new-small"]
        assert await store.count_history(run_id) == (len(values) + 3, len(values) + 3)
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


EDGES = [BIG_VALUE_BYTES - 1, BIG_VALUE_BYTES, BIG_VALUE_BYTES + 1]
CHARS = ["x", "é", "\u20ac", "\U0001f600"]
"""One to four bytes each in UTF-8: a text of N characters is over the threshold in bytes long before
it is in characters."""


@pytest.mark.parametrize("char", CHARS)
async def test_values_a_byte_either_side_of_the_threshold_round_trip(store: Store, char: str) -> None:
    run = await new_run(store)
    values = [text(size, char) for size in EDGES] + [text(size, char) for size in reversed(EDGES)]
    for i, value in enumerate(values):
        store.append_step(run.run_id, entry(f"s{i}", i), replay(f"s{i}", value))
    await store.flush()
    assert [r.value for r in await store.list_replay(run.run_id)] == values
    assert [s.step_ref for s in await store.list_steps(run.run_id)] == [f"s{i}" for i in range(len(values))]


@pytest.mark.parametrize("char", CHARS)
async def test_only_values_over_the_threshold_go_to_the_big_table(tmp_path: Path, char: str) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    try:
        run = await new_run(store)
        for i, size in enumerate(EDGES, start=1):
            value = text(size, char)
            assert len(dumps(value).encode()) == size
            store.append_step(run.run_id, entry(f"s{i}", i), replay(f"s{i}", value))
        store.append_replay(run.run_id, replay("lone", text(BIG_VALUE_BYTES + 1, char)))
        store.append_replay(run.run_id, replay("lone-small", text(BIG_VALUE_BYTES, char)))
        await store.flush()
        assert (seqs(path, "history"), seqs(path, "history_big")) == ([1, 2, 5], [3, 4])
    finally:
        await store.close()


async def test_a_batch_of_rows_mixing_both_tables_keeps_its_order(store: Store) -> None:
    run = await new_run(store)
    values = ["a", text(5_000), "b", text(70_000, "é"), text(BIG_VALUE_BYTES + 1), "c"]
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


async def test_kilobyte_values_take_no_overflow_page_each(tmp_path: Path) -> None:
    """200 steps with 1 KB values fill ~70 pages; in version 5, each of these rows overflowed onto a
    page of its own (over 200 pages)."""
    store = SqliteStore(tmp_path / "s.sqlite3")
    try:
        run = await new_run(store)
        before = page_count(store)
        for i in range(200):
            store.append_step(run.run_id, entry(f"s{i}", i), replay(f"s{i}", text(1_000)))
        await store.flush()
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert page_count(store) - before < 100
    finally:
        await store.close()


async def _fill(store: SqliteStore, sizes: list[int]) -> RunId:
    run = await new_run(store)
    for i, size in enumerate(sizes):
        store.append_step(run.run_id, entry(f"s{i}", i), replay(f"s{i}", text(size)))
    await store.flush()
    assert await store.try_transition(run.run_id, RunStatus.RUNNING, RunStatus.DONE)
    return run.run_id


async def test_prune_leaves_no_row_of_a_deleted_run_and_gives_the_space_back(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    try:
        await _fill(store, [200] * 3)
        for _ in range(3):
            await _fill(store, [100_000, 200] * 10)
        kept = await _fill(store, [2_000, 20])
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        grown = path.stat().st_size
        assert await store.prune(keep=1) == 4
        assert (len(seqs(path, "history")), len(seqs(path, "history_big"))) == (1, 1)
        assert [r.value for r in await store.list_replay(kept)] == [text(2_000), text(20)]
        assert store._conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert path.stat().st_size < grown // 20
    finally:
        await store.close()


async def test_rerun_from_cuts_the_log_in_both_tables(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    try:
        run_id = await _fill(store, [50_000, 20, 50_000, 20, 50_000, 20])
        store.append_replay(run_id, replay("lone", text(3_000)))
        store.append_replay(run_id, replay("lone-small", text(30)))
        await store.flush()
        assert await store.delete_replay_from(run_id, 3) == 5
        assert [r.value for r in await store.list_replay(run_id)] == [text(50_000), text(20), text(50_000)]
        assert [s.step_ref for s in await store.list_steps(run_id)] == [f"s{i}" for i in range(6)]
        assert await store.count_history(run_id) == (6, 3)
        with closing(sqlite3.connect(path)) as conn:
            kept = {
                table: [(r[0], r[1] is None) for r in conn.execute(f"SELECT seq, value_json FROM {table} ORDER BY seq")]
                for table in ("history", "history_big")
            }
        assert kept == {
            "history": [(2, False), (4, True), (6, True)],
            "history_big": [(1, False), (3, False), (5, True)],
        }
    finally:
        await store.close()
