"""What a durable step stores, through the journal's per-step path: every field read back as recorded,
each step committed (visible to another connection) before `record_step` returns."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from mlua_swarm.core.state import StepOutcome
from mlua_swarm.ids import RunId, StepId
from mlua_swarm.store import (
    LaunchSnapshot,
    ReplayRow,
    RunJournal,
    RunStatus,
    SqliteStore,
    StepEntry,
    Store,
    create_run,
)
from mlua_swarm.store.errors import InvalidRunTransition, RunNotFound
from mlua_swarm.store.records import dumps

from .conftest import LAUNCH


def _committed_rows(path: Path) -> int:
    """Rows of `history` another connection sees: only committed ones."""
    with sqlite3.connect(path) as other:
        return int(other.execute("SELECT COUNT(*) FROM history").fetchone()[0])


async def test_each_kind_of_step_reads_back_as_recorded_and_is_committed_on_return(tmp_path: Path) -> None:
    path = tmp_path / "mse.sqlite3"
    store = SqliteStore(path)
    run = await create_run(store, LAUNCH, goal="test")
    journal = RunJournal(store, run.run_id, "batch")
    steps: list[tuple[StepEntry, ReplayRow | None]] = [
        (
            StepEntry("a", StepId.new(), StepOutcome.PASSED, 1, 1.0, 1.5, {"worker_kind": "python"}),
            ReplayRow("a", "h1", {"i": 1}),
        ),
        (StepEntry("b", StepId.new(), StepOutcome.PASSED, 1, 2.0, 2.5), ReplayRow("b", "h2", [None, 2])),
        (
            StepEntry("c", StepId.new(), StepOutcome.SKIPPED, 2, 3.0, 3.5, {"n": 1}),
            ReplayRow("c", "h3", "skipped", True),
        ),
        (StepEntry("d", StepId.new(), StepOutcome.FAILED, 3, 4.0, 4.5, None, "boom\n", "timed out"), None),
        (StepEntry("e", StepId.new(), StepOutcome.PASSED, 1, 5.0, 5.5, {"k": 1}, "warn\n"), ReplayRow("e", "h5", 7)),
        (
            StepEntry("a", StepId.new(), StepOutcome.PASSED, 1, 6.0, None, {"worker_kind": "python"}),
            ReplayRow("a", "h1", 8),
        ),
    ]
    try:
        for n, (entry, replay) in enumerate(steps, start=1):
            assert journal.lookup(entry.step_ref, replay.input_hash if replay else "-") is None
            await journal.record_step(entry, replay)
            assert _committed_rows(path) == n, f"step {n} was not committed when record_step returned"
        assert store.commits >= len(steps) - 1
        entries = await store.list_steps(run.run_id)
        replay_rows = await store.list_replay(run.run_id)
    finally:
        await store.close()
    assert [e.to_json() for e in entries] == [e.to_json() for e, _ in steps]
    assert all(type(e.step_id) is str for e in entries)
    expected = [(r.step_ref, r.input_hash, r.value, r.skip, r.occurrence) for _, r in steps if r is not None]
    assert [(r.step_ref, r.input_hash, r.value, r.skip, r.occurrence) for r in replay_rows] == expected
    assert [r.occurrence for r in replay_rows] == [0, 0, 0, 0, 1], "the second a/h1 is occurrence 1"
    assert [type(r.skip) for r in replay_rows] == [bool] * 5


async def test_step_values_keep_null_nan_and_big_integers(tmp_path: Path) -> None:
    values: list[Any] = [
        None,
        {"a": None, "b": [1, None]},
        {"x": math.nan, "y": [math.inf, -math.inf]},
        2**70,
        {"big": -(2**80), "f": 0.1, "tiny": 1e-7, "s": "null"},
        {"text": "a\u2028b\u00e9\U0001f600"},
    ]
    store = SqliteStore(tmp_path / "mse.sqlite3")
    run = await create_run(store, LaunchSnapshot({"flow": None}, {"init": None, "nan": math.nan}, {"o": None}))
    journal = RunJournal(store, run.run_id, "batch")
    try:
        for n, value in enumerate(values):
            assert journal.lookup("s", f"h{n}") is None
            await journal.record_step(
                StepEntry("s", f"ST-{n}", StepOutcome.PASSED, 1, 1.0, 2.0), ReplayRow("s", f"h{n}", value)
            )
        stored = [r.value for r in await store.list_replay(run.run_id)]
        launch = (await store.get_run(run.run_id, with_result=False)).input_json
    finally:
        await store.close()
    assert [dumps(v) for v in stored] == [dumps(v) for v in values]
    assert math.isnan(stored[2]["x"]) and stored[2]["y"] == [math.inf, -math.inf]
    assert stored[3] == 2**70 and stored[4]["big"] == -(2**80)
    assert launch is not None
    snapshot = LaunchSnapshot.from_json(launch)
    assert snapshot.blueprint == {"flow": None} and snapshot.options == {"o": None}
    assert snapshot.init["init"] is None and math.isnan(snapshot.init["nan"])


async def test_settling_a_run_stores_its_result_and_moves_it_once(store: Store) -> None:
    done = await create_run(store, LAUNCH, goal="test")
    assert await store.settle_run(done.run_id, {"out": [1, None]}, RunStatus.DONE)
    kept = await store.get_run(done.run_id)
    assert (kept.status, kept.result, kept.input_json) == (RunStatus.DONE, {"out": [1, None]}, LAUNCH.to_json())

    cancelled = await create_run(store, LAUNCH, goal="test")
    assert await store.try_transition(cancelled.run_id, RunStatus.RUNNING, RunStatus.CANCELLED)
    assert not await store.settle_run(cancelled.run_id, {"partial": 1}, RunStatus.DONE)
    after = await store.get_run(cancelled.run_id)
    assert (after.status, after.result) == (RunStatus.CANCELLED, {"partial": 1}), "a cancelled run stays cancelled"

    with pytest.raises(RunNotFound):
        await store.settle_run(RunId.new(), None, RunStatus.DONE)
    with pytest.raises(InvalidRunTransition):
        await store.settle_run(done.run_id, None, RunStatus.PENDING)


def test_a_launch_snapshot_encodes_its_parts_apart_and_reads_back_whole() -> None:
    init = {"ratio": 1e-7, "items": [{"n": i, "text": "é"} for i in range(3)]}
    launch = LaunchSnapshot({"flow": {"kind": "step"}, "meta": None}, init, {"base_dir": None, "fns": {}})
    text = launch.to_json()
    assert json.loads(text) == {"blueprint": launch.blueprint, "init": init, "options": {"base_dir": None, "fns": {}}}
    assert '"init":' + orjson.dumps(init).decode() in text, "a null elsewhere does not send the init ctx to the stdlib"
    assert LaunchSnapshot.from_json(text) == launch
