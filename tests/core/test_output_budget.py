"""The per-attempt output budget: what one attempt's tail keeps may weigh `max_attempt_output_bytes`."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from mlua_swarm.core.budget import event_bytes, value_bytes
from mlua_swarm.core.config import EngineConfig
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.errors import DispatchFailed, OutputBudgetExceeded
from mlua_swarm.worker.adapter import InProcSpawner, WorkerInvocation
from mlua_swarm.worker.output import Artifact, FileRef, Final, Inline, Partial, Progress
from tests.process.helpers import SAFETY_SECS, py

KIB = 1024


def small_engine(limit: int, **config: Any) -> Engine:
    return Engine(EngineConfig(max_attempt_output_bytes=limit, **config))


def artifacts(count: int, size: int, refusals: list[OutputBudgetExceeded]) -> Any:
    """A worker emitting `count` artifacts of `size` characters each (distinct strings), noting any refusal."""

    async def worker(inv: WorkerInvocation) -> Any:
        for i in range(count):
            try:
                await inv.sink.emit(Artifact(f"part{i}", Inline(chr(65 + i % 26) * size)))
            except OutputBudgetExceeded as exc:
                refusals.append(exc)
                raise
        return "done"

    return worker


async def test_an_attempt_past_its_budget_fails_with_the_code_and_the_worker_is_told() -> None:
    engine = small_engine(64 * KIB)
    op = engine.attach("op")
    refusals: list[OutputBudgetExceeded] = []
    spawner = InProcSpawner().register("big", artifacts(100, 16 * KIB, refusals))
    step = await engine.start_task(op, TaskSpec("big", "x"))
    with pytest.raises(DispatchFailed) as failed:
        await engine.dispatch_attempt(op, step, spawner)
    message = str(failed.value)
    assert message.startswith("output_budget_exceeded: attempt 1 of @big")
    assert f"limit of {64 * KIB} bytes per attempt (max_attempt_output_bytes)" in message
    assert "the 3 events it had kept are dropped with the failed attempt" in message
    assert "raise max_attempt_output_bytes" in message
    # The worker's fourth emit was the one refused, with the code, the limit and what was held.
    assert len(refusals) == 1
    refusal = refusals[0]
    assert refusal.code == "output_budget_exceeded"
    assert refusal.limit == 64 * KIB
    assert 3 * 16 * KIB < refusal.held <= 64 * KIB
    state = engine.read_task_state(op, step)
    assert state.status == "failed" and state.last_result == {"error": message}
    # Nothing past the budget was kept.
    tail = engine.output_tail(step, 1)
    assert len(tail) == 3
    assert sum(event_bytes(e) for e in tail) <= 64 * KIB


async def test_output_under_the_budget_is_unaffected() -> None:
    engine = small_engine(64 * KIB)
    op = engine.attach("op")
    spawner = InProcSpawner().register("fits", artifacts(3, 16 * KIB, []))
    step = await engine.start_task(op, TaskSpec("fits", "x"))
    outcome = await engine.dispatch_attempt(op, step, spawner)
    assert outcome.kind == "pass"
    assert outcome.value["out"] == "done"
    assert sorted(outcome.value["parts"]) == ["part0", "part1", "part2"]
    assert all(len(part) == 16 * KIB for part in outcome.value["parts"].values())


async def test_each_retry_starts_with_a_fresh_budget() -> None:
    engine = small_engine(64 * KIB)
    op = engine.attach("op")
    attempts: list[int] = []

    async def worker(inv: WorkerInvocation) -> Any:
        attempts.append(inv.attempt)
        # 48 KiB a time: once fits, twice does not; the first attempt then emits past the budget.
        for i in range(3):
            await inv.sink.emit(Artifact(f"p{i}", Inline("x" * 16 * KIB)))
        if inv.attempt == 1:
            await inv.sink.emit(Artifact("more", Inline("y" * 32 * KIB)))
        return inv.attempt

    spawner = InProcSpawner().register("w", worker)
    step = await engine.start_task(op, TaskSpec("w", "x", retry={"max_attempts": 3}))
    outcome = await engine.run_step(op, step, spawner)
    assert attempts == [1, 2]
    assert (outcome.kind, outcome.attempt, outcome.value["out"]) == ("pass", 2, 2)


async def test_a_worker_that_swallows_the_refusal_still_fails_and_later_events_are_refused() -> None:
    engine = small_engine(8 * KIB)
    op = engine.attach("op")
    refused: list[str] = []

    async def stubborn(inv: WorkerInvocation) -> Any:
        for event in (Artifact("a", Inline("x" * 6 * KIB)), Artifact("b", Inline("x" * 6 * KIB)), Progress("p")):
            try:
                await inv.sink.emit(event)
            except OutputBudgetExceeded as exc:
                refused.append(type(event).__name__ + ": " + exc.code)
        return "a small Final that would fit on its own"

    step = await engine.start_task(op, TaskSpec("stubborn", "x"))
    with pytest.raises(DispatchFailed, match=r"^output_budget_exceeded: attempt 1 of @stubborn"):
        await engine.dispatch_attempt(op, step, InProcSpawner().register("stubborn", stubborn))
    assert refused == ["Artifact: output_budget_exceeded", "Progress: output_budget_exceeded"]
    assert [type(e).__name__ for e in engine.output_tail(step, 1)] == ["Artifact"]


async def test_a_final_past_the_budget_fails_the_attempt() -> None:
    engine = small_engine(4 * KIB)
    op = engine.attach("op")

    async def big_final(inv: WorkerInvocation) -> Any:
        return {"text": "z" * 8 * KIB}

    step = await engine.start_task(op, TaskSpec("bf", "x"))
    with pytest.raises(
        DispatchFailed, match=r"^output_budget_exceeded: attempt 1 of @bf emitted an event of \d+ bytes"
    ):
        await engine.dispatch_attempt(op, step, InProcSpawner().register("bf", big_final))
    assert engine.output_tail(step, 1) == []


async def test_dropped_progress_gives_its_weight_back() -> None:
    """A long stream of Progress events stays under the budget: only the newest are kept, and only
    they count."""
    engine = small_engine(64 * KIB, tail_transient_events=64)
    op = engine.attach("op")

    async def chatty(inv: WorkerInvocation) -> Any:
        for i in range(5000):
            await inv.sink.emit(Progress("tick", f"{i:08d}" + "." * 200))
        return "ok"

    step = await engine.start_task(op, TaskSpec("chatty", "x"))
    outcome = await engine.dispatch_attempt(op, step, InProcSpawner().register("chatty", chatty))
    assert outcome.kind == "pass"
    tail = engine.output_tail(step, 1)
    assert 32 <= len(tail) <= 65
    # What the attempt holds is what its tail keeps (the Final counted by its value's size), not the
    # ~1 MB all 5,000 events weighed.
    progress = sum(event_bytes(e) for e in tail if isinstance(e, Progress))
    assert engine._steps[step].held == progress + len("ok")


async def test_a_size_the_caller_knows_is_what_counts() -> None:
    """A body's size given by the caller (the HTTP routes) is what the event weighs."""
    engine = small_engine(4 * KIB)
    op = engine.attach("op")

    async def waits(inv: WorkerInvocation) -> Any:
        engine.emit(inv.token, inv.task_id, inv.attempt, Artifact("a", Inline({"k": 1})), stage=True, size=3 * KIB)
        with pytest.raises(OutputBudgetExceeded):
            engine.emit(inv.token, inv.task_id, inv.attempt, Artifact("b", Inline({"k": 2})), stage=True, size=2 * KIB)
        return "unreached"

    step = await engine.start_task(op, TaskSpec("waits", "x"))
    with pytest.raises(DispatchFailed, match="emitted an event of 2048 bytes on top of the 3072 bytes"):
        await engine.dispatch_attempt(op, step, InProcSpawner().register("waits", waits))


def test_value_bytes_is_close_to_the_json_text_and_stops_past_its_cap() -> None:
    samples: list[Any] = [
        "x" * 1000,
        {"a": "b" * 500, "n": [1, 2.5, None, True, {"deep": ["s" * 300]}]},
        [{"k": "v" * 40} for _ in range(100)],
        42,
        None,
    ]
    for value in samples:
        exact = len(json.dumps(value, separators=(",", ":")))
        assert exact * 0.8 <= value_bytes(value) <= exact * 1.25 + 16, value
    wide = [["x" * 100] for _ in range(10_000)]
    assert 10_000 < value_bytes(wide, cap=10_000) < 20_000
    assert value_bytes(wide) > 1_000_000


def test_event_bytes_counts_the_payload_of_every_kind() -> None:
    assert event_bytes(Artifact("name", Inline("x" * 5000))) > 5000
    assert event_bytes(Final(Inline("x" * 5000))) > 5000
    assert event_bytes(Partial(Inline("x" * 5000))) > 5000
    assert event_bytes(Progress("stage", "x" * 5000)) > 5000
    # A file reference weighs its path: the file itself is not held.
    assert event_bytes(Artifact("f", FileRef("/tmp/big.bin", "application/octet-stream", 10**9))) < 100


ENDLESS_ARTIFACTS = """
import time
emit({"type": "progress", "stage": "started"})
i = 0
while True:
    emit({"type": "artifact", "name": f"p{i}", "content": {"kind": "inline", "value": {"blob": "q" * 16384}}})
    i += 1
    if i > 10_000:  # past any budget here: slow down, so a regression fails at the timeout, not out of memory
        time.sleep(0.1)
"""


async def test_a_streaming_child_past_the_budget_is_stopped_and_its_attempt_fails() -> None:
    """A child writing artifacts without end is stopped at the budget, long before its timeout."""
    engine = small_engine(256 * KIB)
    op = engine.attach("op")
    step = await engine.start_task(op, TaskSpec("endless", "x", timeout_secs=SAFETY_SECS))
    started = time.monotonic()
    with pytest.raises(DispatchFailed, match=r"^output_budget_exceeded: attempt 1 of @endless"):
        await engine.dispatch_attempt(op, step, py(ENDLESS_ARTIFACTS, stream_mode="ndjson_lines"))
    assert time.monotonic() - started < SAFETY_SECS / 2
    tail = engine.output_tail(step, 1)
    assert 10 <= len(tail) <= 17
    assert sum(event_bytes(e) for e in tail) <= 256 * KIB
