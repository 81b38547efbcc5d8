"""The run journal and lifecycle helpers, against both backends."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from mlua_swarm.core.state import StepOutcome
from mlua_swarm.store import (
    Durability,
    ReplayRow,
    RunJournal,
    RunNotResumable,
    RunStatus,
    Store,
    cancel_run,
    durable_run,
    heartbeat,
    load_launch,
    prepare_rerun_from,
    prepare_resume,
)
from mlua_swarm.store.owner import current_owner

from .conftest import LAUNCH, entry, new_run

S = RunStatus


async def test_record_step_assigns_occurrences_in_lookup_order(store: Store) -> None:
    run = await new_run(store)
    journal = RunJournal(store, run.run_id)
    assert journal.lookup("a", "h") is None
    assert journal.lookup("a", "h") is None
    # The second lane finishes first: it takes the lowest unrecorded occurrence; both rows are unique.
    await journal.record_step(entry("a"), ReplayRow("a", "h", "second"))
    await journal.record_step(entry("a"), ReplayRow("a", "h", "first"))
    await journal.record_step(entry("b"), ReplayRow("b", "h", "unlooked"))
    rows = await store.list_replay(run.run_id)
    assert [(r.step_ref, r.occurrence, r.value) for r in rows] == [
        ("a", 0, "second"),
        ("a", 1, "first"),
        ("b", 0, "unlooked"),
    ]
    assert len(await store.list_steps(run.run_id)) == 3


async def test_record_stores_what_record_step_stores_from_the_same_fields(store: Store) -> None:
    runs = [await new_run(store), await new_run(store)]
    by_records, by_fields = (RunJournal(store, run.run_id) for run in runs)
    steps = [entry("a"), entry("gate", StepOutcome.SKIPPED), entry("b", StepOutcome.FAILED, attempt=2)]
    for step in steps:
        replay = None if step.status is StepOutcome.FAILED else ReplayRow(step.step_ref, "h", {"v": [1]})
        if replay is not None:
            replay.skip = step.status is StepOutcome.SKIPPED
            replay.created_at = step.finished_at or 0.0
        await by_records.record_step(replace(step, error=None if replay else {"why": "no"}), replay)
        await by_fields.record(
            step.step_ref, step.step_id, step.status, step.attempt, step.started_at, step.finished_at,
            step.stats, step.stderr_tail, None if replay else {"why": "no"}, step.node_index,
            None if replay is None else "h", None if replay is None else {"v": [1]},
        )  # fmt: skip
    stored = [(await store.list_steps(r.run_id), await store.list_replay(r.run_id)) for r in runs]
    assert stored[0][0] == stored[1][0] and len(stored[0][0]) == 3
    assert [(r.step_ref, r.input_hash, r.value, r.skip, r.occurrence) for r in stored[0][1]] == [
        (r.step_ref, r.input_hash, r.value, r.skip, r.occurrence) for r in stored[1][1]
    ]
    assert [r.skip for r in stored[1][1]] == [False, True]


async def test_replayed_journal_hits_pass_and_skip_then_misses(store: Store) -> None:
    run = await new_run(store)
    first = RunJournal(store, run.run_id)
    for value in ("v0", "v1"):
        first.lookup("a", "h")
        await first.record_step(entry("a"), ReplayRow("a", "h", value))
    first.lookup("gate", "g")
    await first.record_step(entry("gate", StepOutcome.SKIPPED), ReplayRow("gate", "g", None, skip=True))

    again = RunJournal(store, run.run_id, replay=await store.list_replay(run.run_id))
    hit0, hit1 = again.lookup("a", "h"), again.lookup("a", "h")
    assert hit0 is not None and (hit0.value, hit0.skip, hit0.occurrence) == ("v0", False, 0)
    assert hit1 is not None and hit1.value == "v1"
    gate = again.lookup("gate", "g")
    assert gate is not None and gate.skip
    assert again.lookup("a", "h") is None
    assert again.lookup("a", "other-input") is None
    assert again.replayed == 3
    await again.record_step(entry("a"), ReplayRow("a", "h", "v2"))
    assert (await store.list_replay(run.run_id))[-1].occurrence == 2


async def test_finish_records_result_status_and_task(store: Store) -> None:
    run = await new_run(store)
    journal = RunJournal(store, run.run_id)
    journal.trace("core.step_dispatched", "a", 1, {"agent": "x"})
    assert await journal.finish(S.DONE, {"final_ctx": {"a": 1}}) is S.DONE
    got = await store.get_run(run.run_id)
    assert got.status is S.DONE and got.result == {"final_ctx": {"a": 1}}
    assert (await store.get_task(run.task_id)).status is RunStatus.DONE
    kinds = [e.kind for e in await store.list_trace(run.run_id)]
    assert kinds == ["core.run_started", "core.step_dispatched", "core.run_finished"]


async def test_finish_after_cancel_keeps_cancelled(store: Store) -> None:
    run = await new_run(store)
    journal = RunJournal(store, run.run_id)
    assert await cancel_run(store, run.run_id)
    assert await journal.finish(S.DONE, {"late": True}) is S.CANCELLED
    got = await store.get_run(run.run_id)
    assert got.status is S.CANCELLED and got.result == {"late": True}
    assert not await cancel_run(store, run.run_id)


async def test_exit_durability_writes_nothing_until_finish(store: Store) -> None:
    run = await new_run(store)
    journal = RunJournal(store, run.run_id, Durability.EXIT)
    stats = {"tokens": 1}
    value = {"out": [1]}
    step = replace(entry("a"), stats=stats)
    await journal.record_step(step, ReplayRow("a", "h", value))
    journal.trace("core.step_completed", "a", 1, value)
    stats["tokens"] = 99
    value["out"].append(2)
    assert await store.list_steps(run.run_id) == []
    assert await store.list_replay(run.run_id) == []
    await journal.finish(S.DONE, None)
    assert (await store.list_steps(run.run_id))[0].stats == {"tokens": 1}
    assert (await store.list_replay(run.run_id))[0].value == {"out": [1]}
    trace = await store.list_trace(run.run_id, kind_prefix="core.step_completed")
    assert trace[0].payload == {"out": [1]}


async def test_trace_retention_keeps_the_newest(store: Store) -> None:
    store.trace_cap = 5
    run = await new_run(store)
    journal = RunJournal(store, run.run_id)
    for i in range(12):
        journal.trace("core.tick", payload={"i": i})
    await store.flush()
    events = await store.list_trace(run.run_id)
    # 1 core.run_started + 12 ticks = seq 1..13; the newest five stay and seqs are never reused.
    assert [e.seq for e in events] == [9, 10, 11, 12, 13]
    assert [e.payload["i"] for e in events] == [7, 8, 9, 10, 11]


async def test_resume_takes_an_interrupted_run_with_its_log(store: Store) -> None:
    run = await new_run(store)
    journal = RunJournal(store, run.run_id)
    await journal.record_step(entry("a"), ReplayRow("a", "h", 1))
    with pytest.raises(RunNotResumable) as not_yet:
        await prepare_resume(store, run.run_id)
    assert not_yet.value.reason == "status"
    await store.try_transition(run.run_id, S.RUNNING, S.INTERRUPTED)

    plan = await prepare_resume(store, run.run_id)

    assert plan.run.status is S.RUNNING and plan.previous_status is S.INTERRUPTED
    assert plan.launch == LAUNCH
    assert [r.value for r in plan.replay] == [1]
    assert plan.run.owner == current_owner()
    assert (await store.get_task(run.task_id)).status is RunStatus.RUNNING
    with pytest.raises(RunNotResumable):
        await prepare_resume(store, run.run_id)


async def test_resume_needs_a_launch_snapshot(store: Store) -> None:
    run = await new_run(store, launch=None)
    await store.try_transition(run.run_id, S.RUNNING, S.INTERRUPTED)
    with pytest.raises(RunNotResumable) as refused:
        await prepare_resume(store, run.run_id)
    assert refused.value.reason == "no_snapshot"
    assert (await store.get_run(run.run_id)).status is S.INTERRUPTED


async def test_rerun_from_cuts_the_log_at_the_first_row_of_the_step(store: Store) -> None:
    run = await new_run(store)
    journal = RunJournal(store, run.run_id)
    for ref in ("a", "b", "c", "b"):
        await journal.record_step(entry(ref), ReplayRow(ref, "h", ref))
    with pytest.raises(RunNotResumable) as running:
        await prepare_rerun_from(store, run.run_id, "b")
    assert running.value.reason == "status"
    await journal.finish(S.FAILED, {"error": "x"})
    assert await load_launch(store, run.run_id) == LAUNCH

    with pytest.raises(RunNotResumable) as missing:
        await prepare_rerun_from(store, run.run_id, "zzz")
    assert missing.value.reason == "step" and "a, b, c" in missing.value.hint
    plan = await prepare_rerun_from(store, run.run_id, "b")

    assert [r.step_ref for r in plan.replay] == ["a"]
    assert [r.step_ref for r in await store.list_replay(run.run_id)] == ["a"]
    assert plan.previous_status is S.FAILED
    assert (await store.get_run(run.run_id)).status is S.RUNNING
    rerun = await store.list_trace(run.run_id, kind_prefix="core.run_rerun")
    assert rerun[0].payload == {"from_step": "b", "kept": 1, "dropped": 3}


async def test_rerun_from_with_entries_but_no_log(store: Store) -> None:
    run = await new_run(store)
    store.append_step(run.run_id, entry("a"))
    await store.try_transition(run.run_id, S.RUNNING, S.DONE)
    with pytest.raises(RunNotResumable) as refused:
        await prepare_rerun_from(store, run.run_id, "a")
    assert refused.value.reason == "empty_log"


async def test_heartbeat_beats_and_reports_a_cancel(store: Store) -> None:
    run = await new_run(store)
    before = (await store.get_run(run.run_id)).heartbeat_at
    assert before is not None
    cancelled = asyncio.Event()
    async with heartbeat(store, run.run_id, interval=0.01, on_cancel=cancelled.set):
        await cancel_run(store, run.run_id)
        async with asyncio.timeout(10):
            await cancelled.wait()
    after = (await store.get_run(run.run_id)).heartbeat_at
    assert after is not None and after > before


async def test_durable_run_creates_beats_and_finishes(store: Store) -> None:
    async with durable_run(store, LAUNCH, goal="g", heartbeat_secs=60) as journal:
        await journal.record_step(entry("a"), ReplayRow("a", "h", 1))
        await journal.finish(S.DONE, {"final_ctx": {}})
    run = await store.get_run(journal.run_id)
    assert run.status is S.DONE and run.input_json == LAUNCH.to_json()
    assert (await store.get_task(run.task_id)).goal == "g"


async def test_durable_run_fails_the_run_on_an_error_and_cancels_on_cancellation(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with durable_run(store, LAUNCH) as failing:
            raise RuntimeError("flow exploded")
    run = await store.get_run(failing.run_id)
    assert run.status is S.FAILED and run.result["error"]["message"] == "flow exploded"

    with pytest.raises(asyncio.CancelledError):
        async with durable_run(store, LAUNCH) as cancelled:
            raise asyncio.CancelledError
    assert (await store.get_run(cancelled.run_id)).status is S.CANCELLED

    async with durable_run(store, LAUNCH) as forgotten:
        pass
    assert (await store.get_run(forgotten.run_id)).status is S.FAILED


async def test_durable_run_continues_a_resume_plan(store: Store) -> None:
    async with durable_run(store, LAUNCH) as first:
        first.lookup("a", "h")
        await first.record_step(entry("a"), ReplayRow("a", "h", "logged"))
        await first.finish(S.INTERRUPTED, None)
    plan = await prepare_resume(store, first.run_id)
    async with durable_run(store, plan=plan) as again:
        hit = again.lookup("a", "h")
        assert hit is not None and hit.value == "logged"
        await again.finish(S.DONE, {"final_ctx": {"a": "logged"}})
    assert (await store.get_run(first.run_id)).status is S.DONE
