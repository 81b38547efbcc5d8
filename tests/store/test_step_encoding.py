"""The per-step encoding a durable run writes: replay keys, stats texts, values, and the run's finish."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from mlua_swarm.core.state import StepOutcome
from mlua_swarm.run.dispatcher import _SMALL_INPUT, input_hash
from mlua_swarm.store import (
    MemoryStore,
    ReplayRow,
    RunJournal,
    RunNotFound,
    RunStatus,
    SqliteStore,
    StepEntry,
    Store,
)
from mlua_swarm.store import sqlite as sqlite_module
from mlua_swarm.store.base import _STATS_TEXTS, stats_json, step_row
from mlua_swarm.store.records import dumps

from .conftest import new_run


def _sha256_of_sorted(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


@pytest.mark.parametrize(
    "value",
    [
        0,
        "step input",
        {"b": 1, "a": [1, 2, {"z": None, "y": 0.5}]},
        "x" * (_SMALL_INPUT - 2),  # encoded: exactly the last size hashed by CPython's own SHA-256
        "x" * (_SMALL_INPUT - 1),  # one byte past it: hashed by OpenSSL's
        {f"k{i}": "v" * 100 for i in range(200)},
    ],
)
def test_the_replay_key_is_sha256_of_the_sorted_json_whatever_the_input_size(value: Any) -> None:
    # Keys stored by earlier releases must still match: the key is the same function at every size.
    assert input_hash(value) == _sha256_of_sorted(value)


def test_replay_keys_ignore_key_order_and_tell_values_apart() -> None:
    assert input_hash({"a": 1, "b": 2}) == input_hash({"b": 2, "a": 1})
    assert len({input_hash(v) for v in (1, 1.5, "1", [1], {"1": 1}, True, None)}) == 7


@pytest.mark.parametrize(
    "stats",
    [
        {"worker_kind": "python"},
        {"worker_kind": 1},
        {"worker_kind": True},
        {"worker_kind": 1.0},
        {"worker_kind": None},
        {"worker_kind": "python", "pid": 42},
        {"tags": ["a", "b"]},
        {"nested": {"a": 1}},
    ],
)
def test_stats_texts_are_the_stored_json_even_when_remembered(stats: dict[str, Any]) -> None:
    # Twice: the second call may come from the memo; 1, 1.0 and True are equal keys but distinct JSON.
    for _ in range(2):
        for other in ({"worker_kind": 1}, {"worker_kind": True}, {"worker_kind": 1.0}, stats):
            assert json.loads(stats_json(other)) == other
            assert stats_json(other) == dumps(other)


def test_only_string_stats_are_remembered_and_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mlua_swarm.store.base._STATS_TEXTS_MAX", len(_STATS_TEXTS) + 2)
    stats_json({"worker_kind": 7})
    assert (("worker_kind", 7),) not in _STATS_TEXTS
    for n in range(10):
        assert stats_json({"worker_kind": f"kind-{n}"}) == f'{{"worker_kind":"kind-{n}"}}'
    remembered = [key for key in _STATS_TEXTS if key[0][1].startswith("kind-")]
    assert len(remembered) == 2


@pytest.mark.parametrize("value", [0, 7, -3, 2**70, True, False, 1.0, "7", None, [1], {"n": 1}])
def test_a_step_value_is_stored_as_its_json(value: Any) -> None:
    entry = StepEntry("a", "ST-1", StepOutcome.PASSED, 1, 1.0, 2.0, {"worker_kind": "python"})
    row = step_row(entry, ReplayRow("a", "h", value, occurrence=0))
    assert row.value_json == dumps(value)
    assert json.loads(row.value_json) == value
    assert type(json.loads(row.value_json)) is type(value)


async def test_stored_step_values_and_stats_read_back(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "mse.sqlite3")
    try:
        run = await new_run(store)
        journal = RunJournal(store, run.run_id)
        values = [5, 2**70, True, {"k": [1, None]}, "text"]
        stats = [{"worker_kind": "python"}, {"worker_kind": 3}, {"worker_kind": True}, None, {"a": ["b"]}]
        for n, (value, stat) in enumerate(zip(values, stats, strict=True)):
            assert journal.lookup("s", f"h{n}") is None
            await journal.record_step(
                StepEntry("s", f"ST-{n}", StepOutcome.PASSED, 1, 1.0, 2.0, stat), ReplayRow("s", f"h{n}", value)
            )
        assert [r.value for r in await store.list_replay(run.run_id)] == values
        assert [type(r.value) for r in await store.list_replay(run.run_id)] == [type(v) for v in values]
        assert [s.stats for s in await store.list_steps(run.run_id)] == stats
    finally:
        await store.close()


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_run_state_is_the_status_and_task_of_a_run(backend: str, tmp_path: Path) -> None:
    store: Store = MemoryStore() if backend == "memory" else SqliteStore(tmp_path / "mse.sqlite3")
    try:
        run = await new_run(store)
        assert await store.run_state(run.run_id) == (RunStatus.RUNNING, run.task_id)
        await store.try_transition(run.run_id, RunStatus.RUNNING, RunStatus.CANCELLED)
        assert await store.run_state(run.run_id) == (RunStatus.CANCELLED, run.task_id)
        with pytest.raises(RunNotFound):
            await store.run_state(type(run.run_id).new())
    finally:
        await store.close()


async def test_finishing_a_run_does_not_read_its_launch_snapshot_back(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "mse.sqlite3")
    try:
        run = await new_run(store)
        journal = RunJournal(store, run.run_id)

        async def no_get_run(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("finish read the whole run record")

        store.get_run = no_get_run  # type: ignore[method-assign]
        assert await journal.finish(RunStatus.DONE, {"final_ctx": {"n": 1}}) is RunStatus.DONE
        del store.get_run
        stored = await store.get_run(run.run_id)
        assert stored.status is RunStatus.DONE and stored.result == {"final_ctx": {"n": 1}}
        assert (await store.get_task(run.task_id)).status is RunStatus.DONE
    finally:
        await store.close()


async def test_stores_on_one_file_are_counted_open_until_closed(tmp_path: Path) -> None:
    path = tmp_path / "mse.sqlite3"
    first = SqliteStore(path)
    key = first._key
    assert sqlite_module._OPENED[key] == 1
    second = SqliteStore(path)
    assert sqlite_module._OPENED[key] == 2
    try:
        run = await new_run(first)
        # The second store's write must commit the first's open transaction, or it would wait forever.
        first.set_result(run.run_id, {"by": "first"})
        assert first._conn.in_transaction
        other = await new_run(second)
        assert not first._conn.in_transaction
        assert (await second.get_run(run.run_id)).result == {"by": "first"}
        assert (await first.get_run(other.run_id)).status is RunStatus.RUNNING
    finally:
        await second.close()
        assert sqlite_module._OPENED[key] == 1
        await second.close()
        assert sqlite_module._OPENED[key] == 1
        await first.close()
    assert key not in sqlite_module._OPENED
