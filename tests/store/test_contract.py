"""The store contract, run against the memory and the SQLite backend alike."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace

import pytest

from mlua_swarm.core.state import StepOutcome
from mlua_swarm.ids import RunId
from mlua_swarm.store import (
    TRACE_PAYLOAD_CAP,
    BlueprintNotFound,
    Duplicate,
    InvalidRunTransition,
    OutputRecord,
    ReplayRow,
    RunNotFound,
    RunOwner,
    RunStatus,
    Store,
)
from mlua_swarm.store.base import STDERR_TAIL_CAP
from mlua_swarm.store.owner import current_owner

from .conftest import LAUNCH, entry, new_run

S = RunStatus


async def test_create_run_records_owner_launch_and_task(store: Store) -> None:
    run = await new_run(store)
    got = await store.get_run(run.run_id)
    assert got.status is S.RUNNING
    assert got.owner == current_owner()
    assert got.input_json == LAUNCH.to_json()
    task = await store.get_task(got.task_id)
    assert task.status is RunStatus.RUNNING and task.goal == "test"
    assert (await store.list_trace(run.run_id))[0].kind == "core.run_started"


async def test_unknown_run_raises(store: Store) -> None:
    with pytest.raises(RunNotFound):
        await store.get_run(RunId("R-missing"))
    with pytest.raises(RunNotFound):
        await store.try_transition(RunId("R-missing"), S.RUNNING, S.DONE)


async def test_duplicate_run_refused(store: Store) -> None:
    run = await new_run(store)
    with pytest.raises(Duplicate):
        await store.create_run(run)


async def test_list_runs_newest_first_with_filters(store: Store) -> None:
    first = await new_run(store)
    second = await new_run(store)
    await store.try_transition(first.run_id, S.RUNNING, S.DONE)
    assert [r.run_id for r in await store.list_runs()] == [second.run_id, first.run_id]
    assert [r.run_id for r in await store.list_runs(status=[S.DONE])] == [first.run_id]
    assert [r.run_id for r in await store.list_runs(task_id=second.task_id)] == [second.run_id]
    assert len(await store.list_runs(limit=1)) == 1


async def test_cas_moves_only_from_the_expected_status(store: Store) -> None:
    run = await new_run(store)
    assert await store.try_transition(run.run_id, S.RUNNING, S.CANCELLED)
    assert not await store.try_transition(run.run_id, S.RUNNING, S.DONE)
    assert (await store.get_run(run.run_id)).status is S.CANCELLED
    assert await store.try_transition(run.run_id, [S.DONE, S.CANCELLED], S.RUNNING)
    assert (await store.get_run(run.run_id)).status is S.RUNNING


@pytest.mark.parametrize("target", [S.DONE, S.FAILED])
async def test_cancelled_run_never_becomes_done_or_failed(store: Store, target: RunStatus) -> None:
    run = await new_run(store)
    await store.try_transition(run.run_id, S.RUNNING, S.CANCELLED)
    with pytest.raises(InvalidRunTransition):
        await store.try_transition(run.run_id, S.CANCELLED, target)
    assert (await store.get_run(run.run_id)).status is S.CANCELLED


async def test_step_entries_keep_order_and_fields(store: Store) -> None:
    run = await new_run(store)
    store.append_step(run.run_id, entry("a"))
    failed = replace(
        entry("b", StepOutcome.FAILED, 2), stderr_tail="x" * STDERR_TAIL_CAP + "boom\n", error={"message": "boom"}
    )
    store.append_step(run.run_id, failed)
    await store.flush()
    steps = await store.list_steps(run.run_id)
    assert [(s.step_ref, s.status, s.attempt) for s in steps] == [("a", "passed", 1), ("b", "failed", 2)]
    assert steps[1].stderr_tail == "x" * (STDERR_TAIL_CAP - 5) + "boom\n"
    assert steps[1].error == {"message": "boom"}
    assert steps[0].stats == {"tokens": 3}
    assert steps[0].to_json()["duration_ms"] == 500.0


async def test_replay_log_keeps_pass_and_skip_and_refuses_duplicates(store: Store) -> None:
    run = await new_run(store)
    store.append_replay(run.run_id, ReplayRow("a", "h1", {"v": 1}, occurrence=0))
    store.append_replay(run.run_id, ReplayRow("b", "h2", None, skip=True, occurrence=0))
    store.append_replay(run.run_id, ReplayRow("a", "h1", {"v": 2}, occurrence=1))
    with pytest.raises(Duplicate):
        store.append_replay(run.run_id, ReplayRow("a", "h1", {"v": 3}, occurrence=1))
    await store.flush()
    rows = await store.list_replay(run.run_id)
    assert [(r.step_ref, r.occurrence, r.skip, r.value) for r in rows] == [
        ("a", 0, False, {"v": 1}),
        ("b", 0, True, None),
        ("a", 1, False, {"v": 2}),
    ]


async def test_delete_replay_from_cuts_the_tail(store: Store) -> None:
    run = await new_run(store)
    for i in range(5):
        store.append_replay(run.run_id, ReplayRow(f"s{i}", "h", i, occurrence=0))
    assert await store.delete_replay_from(run.run_id, 7) == 0
    assert await store.delete_replay_from(run.run_id, 2) == 3
    assert [r.step_ref for r in await store.list_replay(run.run_id)] == ["s0", "s1"]
    store.append_replay(run.run_id, ReplayRow("s2", "h", "again", occurrence=0))
    assert [r.value for r in await store.list_replay(run.run_id)] == [0, 1, "again"]


async def test_trace_payload_over_8k_becomes_a_truncation_marker(store: Store) -> None:
    run = await new_run(store)
    big = {"blob": "x" * (TRACE_PAYLOAD_CAP + 100)}
    seq = store.append_trace(run.run_id, "worker.big", step_ref="a", attempt=1, payload=big)
    store.append_trace(run.run_id, "worker.small", payload={"ok": True})
    await store.flush()
    events = {e.seq: e for e in await store.list_trace(run.run_id)}
    marker = events[seq].payload
    assert marker["truncated"] is True
    assert marker["size_bytes"] > TRACE_PAYLOAD_CAP
    assert marker["head"].startswith('{"blob":"xxx')
    assert events[seq + 1].payload == {"ok": True}


async def test_trace_filters(store: Store) -> None:
    run = await new_run(store)
    store.append_trace(run.run_id, "core.step_dispatched", step_ref="a", attempt=1)
    store.append_trace(run.run_id, "mw.rate_limited", step_ref="a")
    store.append_trace(run.run_id, "core.step_completed", step_ref="b", attempt=1)
    kinds = [e.kind for e in await store.list_trace(run.run_id, kind_prefix="core.step")]
    assert kinds == ["core.step_dispatched", "core.step_completed"]
    assert [e.kind for e in await store.list_trace(run.run_id, step_ref="a")] == [
        "core.step_dispatched",
        "mw.rate_limited",
    ]
    assert [e.seq for e in await store.list_trace(run.run_id, after=2, limit=1)] == [3]


async def test_outputs_by_step_and_attempt(store: Store) -> None:
    run = await new_run(store)
    final = {"type": "final", "content": {"kind": "inline", "value": 1}, "ok": True}
    store.put_output(OutputRecord(run.run_id, "ST-a", 1, "agent", {"type": "progress", "stage": "x"}))
    store.put_output(OutputRecord(run.run_id, "ST-a", 2, "agent", final))
    store.put_output(OutputRecord(run.run_id, "ST-b", 1, "other", final))
    await store.flush()
    assert len(await store.list_outputs(run.run_id)) == 3
    assert [o.event for o in await store.list_outputs(run.run_id, step_id="ST-a", attempt=2)] == [final]


async def test_token_secret_is_stable(store: Store) -> None:
    secret = await store.token_secret()
    assert len(secret) == 32
    assert await store.token_secret() == secret


async def test_blueprint_versions_by_content_hash(store: Store) -> None:
    v1 = await store.put_blueprint("review", {"version": "1.0.0", "flow": 1})
    same = await store.put_blueprint("review", {"flow": 1, "version": "1.0.0"})
    v2 = await store.put_blueprint("review", {"version": "1.4.0", "flow": 2})
    v3 = await store.put_blueprint("review", {"version": "2.0.0", "flow": 3})
    assert same.version == v1.version == 1 and same.content_hash == v1.content_hash
    assert [v.version for v in await store.blueprint_history("review")] == [1, 2, 3]
    assert (await store.get_blueprint("review")).document == {"version": "2.0.0", "flow": 3}
    assert (await store.get_blueprint("review", v2.content_hash[:12])).version == 2
    assert (await store.get_blueprint("review", "^1.0")).version == 2
    assert (await store.get_blueprint("review", "~1.0")).version == 1
    assert (await store.get_blueprint("review", ">=1.0 <3")).version == 3
    assert v3.semver == "2.0.0"
    with pytest.raises(BlueprintNotFound):
        await store.get_blueprint("review", "^3")
    with pytest.raises(BlueprintNotFound):
        await store.get_blueprint("nope")


async def test_archived_blueprints_leave_listings_but_stay_readable(store: Store) -> None:
    await store.put_blueprint("a", {"flow": 1})
    await store.put_blueprint("b", {"flow": 2})
    await store.archive_blueprint("a")
    assert [v.name for v in await store.list_blueprints()] == ["b"]
    listed = await store.list_blueprints(include_archived=True)
    assert [(v.name, v.archived) for v in listed] == [("a", True), ("b", False)]
    assert (await store.get_blueprint("a")).document == {"flow": 1}
    await store.archive_blueprint("a", archived=False)
    assert [v.name for v in await store.list_blueprints()] == ["a", "b"]


async def test_prune_by_count_spares_unfinished_runs(store: Store) -> None:
    runs = [await new_run(store) for _ in range(5)]
    for run in runs[:4]:
        await store.try_transition(run.run_id, S.RUNNING, S.DONE)
        store.append_step(run.run_id, entry("a"))
        store.append_trace(run.run_id, "core.x")
    # newest first: runs[4] (running), runs[3], runs[2], runs[1], runs[0]
    assert await store.prune(keep=3) == 2
    left = {r.run_id for r in await store.list_runs()}
    assert left == {runs[4].run_id, runs[3].run_id, runs[2].run_id}
    with pytest.raises(RunNotFound):
        await store.list_steps(runs[0].run_id)
    assert (await store.get_task(runs[2].task_id)).task_id == runs[2].task_id


async def test_prune_by_age(store: Store) -> None:
    old = await new_run(store)
    await store.try_transition(old.run_id, S.RUNNING, S.FAILED)
    await store.flush()
    time.sleep(0.05)
    fresh = await new_run(store)
    await store.try_transition(fresh.run_id, S.RUNNING, S.DONE)
    assert await store.prune(older_than=0.03) == 1
    assert [r.run_id for r in await store.list_runs()] == [fresh.run_id]
    with pytest.raises(ValueError):
        await store.prune()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def test_orphan_sweep_marks_runs_of_dead_owners_interrupted(store: Store) -> None:
    me = current_owner()
    dead = await new_run(store)
    store.set_owner(dead.run_id, RunOwner(me.host, _dead_pid(), me.started_at))
    reused = await new_run(store)
    store.set_owner(reused.run_id, RunOwner(me.host, me.pid, me.started_at - 3600))
    alive = await new_run(store)
    # Its start time as another process reads it after the wall clock moved: still this process.
    drifted = await new_run(store)
    store.set_owner(drifted.run_id, RunOwner(me.host, me.pid, me.started_at + 3))
    far_stale = await new_run(store)
    store.set_owner(far_stale.run_id, RunOwner("another-host", 1, 0.0))
    store.beat(far_stale.run_id, time.time() - 3600)
    far_fresh = await new_run(store)
    store.set_owner(far_fresh.run_id, RunOwner("another-host", 1, 0.0))
    await store.flush()

    swept = await store.sweep_orphans(stale_after=60)

    assert set(swept) == {dead.run_id, reused.run_id, far_stale.run_id}
    for run_id in swept:
        run = await store.get_run(run_id)
        assert run.status is S.INTERRUPTED
        assert (await store.get_task(run.task_id)).status is RunStatus.INTERRUPTED
        assert (await store.list_trace(run_id, kind_prefix="core.run_interrupted"))[0].payload["reason"]
    for run in (alive, drifted, far_fresh):
        assert (await store.get_run(run.run_id)).status is S.RUNNING


async def test_a_step_stored_with_its_replay_row_reads_back_as_both(store: Store) -> None:
    run = await new_run(store)
    store.append_step(run.run_id, entry("a"), ReplayRow("a", "h", {"v": 1}, occurrence=0))
    store.append_replay(run.run_id, ReplayRow("x", "h", "alone", occurrence=0))
    store.append_step(run.run_id, entry("b", StepOutcome.FAILED))
    store.append_step(run.run_id, entry("c"), ReplayRow("c", "h", None, skip=True, occurrence=0))
    await store.flush()
    assert [(s.step_ref, s.status, s.stats) for s in await store.list_steps(run.run_id)] == [
        ("a", "passed", {"tokens": 3}),
        ("b", "failed", {"tokens": 3}),
        ("c", "passed", {"tokens": 3}),
    ]
    assert [(r.step_ref, r.value, r.skip) for r in await store.list_replay(run.run_id)] == [
        ("a", {"v": 1}, False),
        ("x", "alone", False),
        ("c", None, True),
    ]


async def test_a_step_with_a_taken_or_foreign_replay_key_is_refused_and_not_stored(store: Store) -> None:
    run = await new_run(store)
    store.append_replay(run.run_id, ReplayRow("a", "h", 1, occurrence=0))
    with pytest.raises(Duplicate):
        store.append_step(run.run_id, entry("a"), ReplayRow("a", "h", 2, occurrence=0))
    with pytest.raises(ValueError, match="replay row of 'b'"):
        store.append_step(run.run_id, entry("a"), ReplayRow("b", "h", 2, occurrence=0))
    with pytest.raises(ValueError, match="occurrence"):
        store.append_step(run.run_id, entry("a"), ReplayRow("a", "h", 2))
    await store.flush()
    assert await store.list_steps(run.run_id) == []
    assert [r.value for r in await store.list_replay(run.run_id)] == [1]


async def test_cutting_the_replay_log_keeps_the_step_entries(store: Store) -> None:
    run = await new_run(store)
    for i in range(4):
        store.append_step(run.run_id, entry(f"s{i}"), ReplayRow(f"s{i}", "h", i, occurrence=0))
    assert await store.delete_replay_from(run.run_id, 1) == 3
    assert [r.step_ref for r in await store.list_replay(run.run_id)] == ["s0"]
    assert [s.step_ref for s in await store.list_steps(run.run_id)] == ["s0", "s1", "s2", "s3"]
    store.append_step(run.run_id, entry("s1"), ReplayRow("s1", "h", "again", occurrence=0))
    await store.flush()
    assert [r.value for r in await store.list_replay(run.run_id)] == [0, "again"]
    assert len(await store.list_steps(run.run_id)) == 5


async def test_get_run_without_its_result_reads_everything_else(store: Store) -> None:
    run = await new_run(store)
    store.set_result(run.run_id, {"final_ctx": {"big": "x" * 1000}})
    await store.flush()
    full = await store.get_run(run.run_id)
    bare = await store.get_run(run.run_id, with_result=False)
    assert full.result == {"final_ctx": {"big": "x" * 1000}} and bare.result is None
    assert (bare.status, bare.task_id, bare.input_json, bare.owner) == (
        full.status,
        full.task_id,
        full.input_json,
        full.owner,
    )
    with pytest.raises(RunNotFound):
        await store.get_run(RunId("R-missing"), with_result=False)


async def test_a_run_taken_back_with_its_new_owner_is_not_swept_for_its_old_one(store: Store) -> None:
    me = current_owner()
    run = await new_run(store)
    store.set_owner(run.run_id, RunOwner(me.host, _dead_pid(), me.started_at))
    assert await store.try_transition(run.run_id, S.RUNNING, S.INTERRUPTED)
    # The compare-and-set that takes the run records its owner too: no sweep sees the dead one.
    assert await store.try_transition(run.run_id, S.INTERRUPTED, S.RUNNING, owner=me)
    assert await store.sweep_orphans(stale_after=60) == []
    got = await store.get_run(run.run_id)
    assert got.status is S.RUNNING and got.owner == me and got.heartbeat_at is not None
    assert not await store.try_transition(run.run_id, S.INTERRUPTED, S.RUNNING, owner=me)
