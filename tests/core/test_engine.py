import asyncio
import gc
import sys
import threading
from typing import Any

import pytest

from mlua_swarm.core.config import EngineConfig
from mlua_swarm.core.ctx import Ctx
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.errors import (
    AttemptClosed,
    DispatchFailed,
    InvalidTransition,
    PollTimeout,
    RoleViolation,
    SpawnDepthExceeded,
    TokenTaskMismatch,
)
from mlua_swarm.ids import StepId
from mlua_swarm.tokens import CapToken, Role
from mlua_swarm.worker import Worker, wrap_join
from mlua_swarm.worker.adapter import (
    InProcSpawner,
    NotRegistered,
    SpawnerAdapter,
    SpawnInternalError,
    WorkerInvocation,
    WorkerResult,
)
from mlua_swarm.worker.errors import WorkerCancelled
from mlua_swarm.worker.output import Artifact, Final, Inline, Progress

from ..conftest import run_one


async def echo(inv: WorkerInvocation) -> Any:
    return {"got": inv.input}


async def test_pass_outcome_carries_the_value_and_one_final(engine: Engine, op: CapToken) -> None:
    spawner = InProcSpawner().register("echo", echo)
    step = await engine.start_task(op, TaskSpec("echo", {"n": 1}))
    outcome = await engine.dispatch_attempt(op, step, spawner)
    assert (outcome.kind, outcome.value, outcome.attempt) == ("pass", {"got": {"n": 1}}, 1)
    finals = [e for e in engine.output_tail(step, 1) if isinstance(e, Final)]
    assert finals == [Final(Inline({"got": {"n": 1}}), True)]
    assert engine.read_task_state(op, step).status == "pass"
    assert engine.worker_stats(step, 1)["worker_kind"] == "rust_fn"


async def test_not_registered_fails_the_step(engine: Engine, op: CapToken) -> None:
    step = await engine.start_task(op, TaskSpec("ghost", "x"))
    with pytest.raises(DispatchFailed, match="worker not registered: ghost"):
        await engine.dispatch_attempt(op, step, InProcSpawner())
    assert engine.read_task_state(op, step).status == "failed"


async def test_spawn_raises_not_registered_and_fetch_prompt_failure_is_internal(engine: Engine, op: CapToken) -> None:
    spawner = InProcSpawner().register("echo", echo)
    step = await engine.start_task(op, TaskSpec("echo", "x"))
    other = await engine.start_task(op, TaskSpec("echo", "y"))
    foreign = engine._tokens.mint("w", Role.WORKER, 60, step_id=other)
    with pytest.raises(NotRegistered):
        await spawner.spawn(engine, Ctx(step, 1, "nobody"), step, 1, foreign)
    with pytest.raises(SpawnInternalError, match=r"^internal: fetch_prompt: token is bound to step"):
        await spawner.spawn(engine, Ctx(step, 1, "echo"), step, 1, foreign)


async def test_plain_functions_run_in_a_thread_and_blocked_results_block(engine: Engine, op: CapToken) -> None:
    loop_thread = threading.get_ident()

    def judge(inv: WorkerInvocation) -> WorkerResult:
        assert threading.get_ident() != loop_thread
        return WorkerResult({"verdict": "FAIL"}, ok=False)

    outcome = await run_one(engine, op, InProcSpawner().register("judge", judge), TaskSpec("judge", "x"))
    assert outcome.kind == "blocked" and outcome.value == {"verdict": "FAIL"}


async def test_raising_worker_fails_with_its_message(engine: Engine, op: CapToken) -> None:
    async def boom(inv: WorkerInvocation) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(DispatchFailed, match="worker fn returned error: RuntimeError: disk on fire"):
        await run_one(engine, op, InProcSpawner().register("boom", boom), TaskSpec("boom"))


async def test_sink_events_land_on_the_tail_in_order_and_parts_fold(engine: Engine, op: CapToken) -> None:
    async def writer(inv: WorkerInvocation) -> str:
        assert inv.sink is not None
        await inv.sink.emit(Progress("plan", "thinking"))
        await inv.sink.emit(Artifact("notes", Inline("v1")))
        await inv.sink.emit(Artifact("notes", Inline('{"v": 2}')))
        await inv.sink.emit(Artifact("code", Inline("print()")))
        return '```json\n{"answer": 42}\n```'

    spawner = InProcSpawner().register("writer", writer)
    step = await engine.start_task(op, TaskSpec("writer"))
    # An artifact from another producer (an audit) shares the tail but is not a part.
    outcome = await engine.dispatch_attempt(op, step, spawner)
    tail = engine.output_tail(step, 1)
    assert [type(e).__name__ for e in tail] == ["Progress", "Artifact", "Artifact", "Artifact", "Final"]
    assert outcome.value == {"out": {"answer": 42}, "parts": {"notes": {"v": 2}, "code": "print()"}}


async def test_foreign_artifacts_are_not_parts(engine: Engine, op: CapToken) -> None:
    gate = asyncio.Event()

    async def slow(inv: WorkerInvocation) -> str:
        await gate.wait()
        return "done"

    step = await engine.start_task(op, TaskSpec("slow"))
    task = asyncio.create_task(engine.dispatch_attempt(op, step, InProcSpawner().register("slow", slow)))
    while engine.read_task_state(op, step).status != "running" or engine._steps[step].token is None:
        await asyncio.sleep(0)
    wtoken = engine._steps[step].token
    assert wtoken is not None
    await engine.submit_output(wtoken, step, 1, Artifact("audit:x", Inline("looked fine")))
    gate.set()
    outcome = await task
    assert outcome.value == "done"


async def test_scalars_stay_strings_and_text_format_keeps_raw(engine: Engine, op: CapToken) -> None:
    async def say(inv: WorkerInvocation) -> str:
        return inv.prompt

    spawner = InProcSpawner().register("say", say)
    assert (await run_one(engine, op, spawner, TaskSpec("say", "42"))).value == "42"
    assert (await run_one(engine, op, spawner, TaskSpec("say", '{"a":1}'))).value == {"a": 1}
    raw = await run_one(engine, op, spawner, TaskSpec("say", '{"a":1}', submit_format="text"))
    assert raw.value == '{"a":1}'


async def test_skip_marker_gives_a_skip_outcome(engine: Engine, op: CapToken) -> None:
    async def skipper(inv: WorkerInvocation) -> Any:
        return {"__mse_skip": True, "value": "nothing to do"}

    step = await engine.start_task(op, TaskSpec("s"))
    outcome = await engine.dispatch_attempt(op, step, InProcSpawner().register("s", skipper))
    assert (outcome.kind, outcome.value) == ("skip", "nothing to do")
    assert engine.read_task_state(op, step).status == "pass"


async def test_body_verdict_violation_names_value_and_allowed(engine: Engine, op: CapToken) -> None:
    async def judge(inv: WorkerInvocation) -> str:
        return "MAYBE"

    spec = TaskSpec("judge", verdict={"channel": "body", "values": ["PASS", "FAIL"]})
    with pytest.raises(DispatchFailed) as info:
        await run_one(engine, op, InProcSpawner().register("judge", judge), spec)
    message = str(info.value)
    assert "Final rejected before output_tail" in message and "'MAYBE'" in message and "'PASS', 'FAIL'" in message


async def test_part_verdict_needs_a_staged_verdict(engine: Engine, op: CapToken) -> None:
    async def silent(inv: WorkerInvocation) -> str:
        return "done"

    async def staged(inv: WorkerInvocation) -> str:
        assert inv.sink is not None
        await inv.sink.emit(Artifact("verdict", Inline("PASS")))
        return "done"

    engine.register_verdict_contract("a", {"channel": "part", "values": ["PASS"]})
    with pytest.raises(DispatchFailed, match="no staged 'verdict' part"):
        await run_one(engine, op, InProcSpawner().register("a", silent), TaskSpec("a"))
    outcome = await run_one(engine, op, InProcSpawner().register("a", staged), TaskSpec("a"))
    assert outcome.value == {"out": "done", "parts": {"verdict": "PASS"}}


async def test_ok_false_bypasses_the_verdict_check(engine: Engine, op: CapToken) -> None:
    async def judge(inv: WorkerInvocation) -> WorkerResult:
        return WorkerResult("anything", ok=False)

    spec = TaskSpec("j", verdict={"channel": "body", "values": ["PASS"]})
    assert (await run_one(engine, op, InProcSpawner().register("j", judge), spec)).kind == "blocked"


async def test_cancel_fires_the_worker_token_and_the_step_stays_cancelled(engine: Engine, op: CapToken) -> None:
    started = asyncio.Event()
    seen: dict[str, Any] = {}

    async def waits(inv: WorkerInvocation) -> str:
        seen["token"] = inv.cancel_token
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen["cancelled_inside"] = True
            raise
        return "never"

    step = await engine.start_task(op, TaskSpec("w"))
    task = asyncio.create_task(engine.dispatch_attempt(op, step, InProcSpawner().register("w", waits)))
    await started.wait()
    await engine.cancel_task(op, step)
    outcome = await task
    assert outcome.kind == "cancelled"
    assert seen["token"].is_cancelled() and seen["cancelled_inside"]
    assert engine.read_task_state(op, step).status == "cancelled"
    with pytest.raises(InvalidTransition):
        await engine.dispatch_attempt(op, step, InProcSpawner())


async def test_cancelled_worker_join_raises_worker_cancelled(engine: Engine, op: CapToken) -> None:
    started = asyncio.Event()

    async def waits(inv: WorkerInvocation) -> None:
        started.set()
        await asyncio.Event().wait()

    step = await engine.start_task(op, TaskSpec("w"))
    token = engine._tokens.mint("w", Role.WORKER, 60, step_id=step)
    worker = await InProcSpawner().register("w", waits).spawn(engine, Ctx(step, 1, "w"), step, 1, token)
    await started.wait()
    worker.cancel_token().cancel()
    with pytest.raises(WorkerCancelled, match="cancelled"):
        await worker.join()


async def test_late_completion_never_overwrites_cancelled(engine: Engine, op: CapToken) -> None:
    entered, release, returned = threading.Event(), threading.Event(), threading.Event()

    def stubborn(inv: WorkerInvocation) -> str:
        entered.set()
        try:
            release.wait(10)
            return "late"
        finally:
            returned.set()

    step = await engine.start_task(op, TaskSpec("s"))
    task = asyncio.create_task(engine.dispatch_attempt(op, step, InProcSpawner().register("s", stubborn)))
    assert await asyncio.to_thread(entered.wait, 10)
    await engine.cancel_task(op, step)
    assert (await task).kind == "cancelled"
    release.set()
    assert await asyncio.to_thread(returned.wait, 10)
    await asyncio.sleep(0)
    state = engine.read_task_state(op, step)
    assert state.status == "cancelled" and state.last_result is None


async def test_timeout_ends_the_step_as_timeout(engine: Engine, op: CapToken) -> None:
    async def forever(inv: WorkerInvocation) -> None:
        await asyncio.Event().wait()

    step = await engine.start_task(op, TaskSpec("f", timeout_secs=0.05))
    outcome = await engine.run_step(op, step, InProcSpawner().register("f", forever))
    assert outcome.kind == "timeout"
    assert engine.read_task_state(op, step).status == "timeout"


async def test_owner_cancellation_cancels_the_worker_and_propagates(engine: Engine, op: CapToken) -> None:
    started = asyncio.Event()
    seen: list[str] = []

    async def waits(inv: WorkerInvocation) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            seen.append("worker ended")

    step = await engine.start_task(op, TaskSpec("w"))
    task = asyncio.create_task(engine.dispatch_attempt(op, step, InProcSpawner().register("w", waits)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["worker ended"]
    assert engine.read_task_state(op, step).status == "cancelled"


class ExplodingSpawner(SpawnerAdapter):
    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
        raise ValueError("bug in spawner")


async def test_a_crashing_spawner_fails_the_step_instead_of_leaving_it_running(engine: Engine, op: CapToken) -> None:
    step = await engine.start_task(op, TaskSpec("x"))
    with pytest.raises(DispatchFailed, match="internal: spawner crashed"):
        await engine.dispatch_attempt(op, step, ExplodingSpawner())
    assert engine.read_task_state(op, step).status == "failed"


async def test_retries_are_new_attempts_with_fresh_tokens_and_backoff(engine: Engine, op: CapToken) -> None:
    tokens: list[str] = []
    attempts: list[int] = []

    async def flaky(inv: WorkerInvocation) -> str:
        tokens.append(inv.token.nonce)
        attempts.append(inv.attempt)
        if inv.attempt < 3:
            raise RuntimeError("try again")
        return "ok"

    spec = TaskSpec("f", retry={"max_attempts": 4, "backoff_ms": 20, "backoff_factor": 2})
    step = await engine.start_task(op, spec)
    async with engine.events() as events:
        loop = asyncio.get_running_loop()
        began = loop.time()
        outcome = await engine.run_step(op, step, InProcSpawner().register("f", flaky))
        elapsed = loop.time() - began
        delays = []
        while (event := events.get_nowait()) is not None:
            if event.kind == "task_retry_scheduled":
                delays.append(event.data["delay_ms"])
    assert (outcome.kind, outcome.value, outcome.attempt) == ("pass", "ok", 3)
    assert attempts == [1, 2, 3] and len(set(tokens)) == 3
    assert delays == [20, 40]
    assert elapsed >= 0.06


async def test_retry_stops_at_max_attempts_and_ignores_unlisted_outcomes(engine: Engine, op: CapToken) -> None:
    calls: list[int] = []

    async def always_fails(inv: WorkerInvocation) -> str:
        calls.append(inv.attempt)
        raise RuntimeError("no")

    with pytest.raises(DispatchFailed):
        await run_one(engine, op, InProcSpawner().register("a", always_fails), TaskSpec("a", retry={"max_attempts": 2}))
    assert calls == [1, 2]

    async def blocks(inv: WorkerInvocation) -> WorkerResult:
        calls.append(inv.attempt)
        return WorkerResult("no", ok=False)

    calls.clear()
    outcome = await run_one(engine, op, InProcSpawner().register("b", blocks), TaskSpec("b", retry={"max_attempts": 3}))
    assert outcome.kind == "blocked" and calls == [1]


async def test_cancel_during_backoff_stops_retrying(engine: Engine, op: CapToken) -> None:
    failed_once = asyncio.Event()

    async def fails(inv: WorkerInvocation) -> str:
        failed_once.set()
        raise RuntimeError("no")

    step = await engine.start_task(op, TaskSpec("a", retry={"max_attempts": 5, "backoff_ms": 60_000}))
    task = asyncio.create_task(engine.run_step(op, step, InProcSpawner().register("a", fails)))
    await failed_once.wait()
    while engine._steps[step].backoff is None:
        await asyncio.sleep(0)
    await engine.cancel_task(op, step)
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.kind == "cancelled" and outcome.attempt == 1


async def test_tokens_are_checked_on_every_worker_call(engine: Engine, op: CapToken) -> None:
    step = await engine.start_task(op, TaskSpec("x", "hello"))
    other = await engine.start_task(op, TaskSpec("x", "other"))
    wrong = engine._tokens.mint("w", Role.WORKER, 60, step_id=other)
    with pytest.raises(TokenTaskMismatch):
        await engine.fetch_prompt(wrong, step)
    with pytest.raises(RoleViolation):
        await engine.fetch_prompt(op, step)
    observer = engine.attach("watcher", Role.OBSERVER)
    with pytest.raises(RoleViolation):
        await engine.start_task(observer, TaskSpec("x"))
    right = engine._tokens.mint("w", Role.WORKER, 60, step_id=step)
    assert await engine.fetch_prompt(right, step) == "hello"
    with pytest.raises(AttemptClosed):
        await engine.submit_output(right, step, 1, Final(Inline("sneaky")))


async def test_spawn_depth_is_bounded(op: CapToken) -> None:
    engine = Engine(EngineConfig(max_spawn_depth=2))
    op = engine.attach("op")
    root = await engine.start_task(op, TaskSpec("a"))
    child_token = engine._tokens.mint("w", Role.WORKER, 60, step_id=root)
    child = await engine.start_task(child_token, TaskSpec("b"))
    grandchild_token = engine._tokens.mint("w", Role.WORKER, 60, step_id=child)
    with pytest.raises(SpawnDepthExceeded):
        await engine.start_task(grandchild_token, TaskSpec("c"))


async def test_poll_waits_for_settlement_and_times_out(engine: Engine, op: CapToken) -> None:
    gate = asyncio.Event()

    async def waits(inv: WorkerInvocation) -> str:
        await gate.wait()
        return "done"

    step = await engine.start_task(op, TaskSpec("w"))
    with pytest.raises(PollTimeout):
        await engine.poll_task(op, step, 0.01)
    task = asyncio.create_task(engine.dispatch_attempt(op, step, InProcSpawner().register("w", waits)))
    poller = asyncio.create_task(engine.poll_task(op, step, 5))
    await asyncio.sleep(0)
    assert not poller.done()
    gate.set()
    await task
    assert (await poller).status == "pass"


async def test_senior_query_suspends_and_resume_continues(engine: Engine, op: CapToken) -> None:
    asked = asyncio.Event()
    keys: list[Any] = []

    async def asks(inv: WorkerInvocation) -> Any:
        keys.append(await engine.query_senior(op, inv.task_id, "which way?"))
        asked.set()
        return {"answer": await engine.await_resume(keys[0], 5)}

    step = await engine.start_task(op, TaskSpec("a"))
    task = asyncio.create_task(engine.dispatch_attempt(op, step, InProcSpawner().register("a", asks)))
    await asked.wait()
    assert engine.read_task_state(op, step).status == "suspended"
    engine.resume(keys[0], "left")
    assert (await task).value == {"answer": "left"}


async def test_event_stream_sees_the_lifecycle(engine: Engine, op: CapToken) -> None:
    async with engine.events() as events:
        await run_one(engine, op, InProcSpawner().register("e", echo), TaskSpec("e", 1))
        kinds = []
        while (event := events.get_nowait()) is not None:
            kinds.append(event.kind)
    assert kinds == ["task_created", "task_attempt_started", "worker_output", "task_attempt_completed"]
    assert not engine.has_subscribers


async def test_slow_subscriber_loses_oldest_events_and_is_told() -> None:
    engine = Engine(EngineConfig(event_queue_size=3))
    stream = engine.events()
    for i in range(5):
        engine.publish("tick", None, i=i)
    first = await anext(stream)
    assert first.kind == "events_dropped" and first.data == {"count": 2}
    assert [(await anext(stream)).data["i"] for _ in range(3)] == [2, 3, 4]
    stream.close()


async def test_wrap_join_keeps_id_and_cancel_token(engine: Engine, op: CapToken) -> None:
    step = await engine.start_task(op, TaskSpec("e", 1))
    token = engine._tokens.mint("w", Role.WORKER, 60, step_id=step)
    engine._steps[step].status = engine._steps[step].status.RUNNING
    engine._steps[step].attempt = 1
    inner = await InProcSpawner().register("e", echo).spawn(engine, Ctx(step, 1, "e"), step, 1, token)
    seen: list[Any] = []

    async def post(err: Any) -> Any:
        seen.append(err)
        return None

    outer = wrap_join(inner, post)
    assert outer.id == inner.id and outer.cancel_token() is inner.cancel_token()
    await outer.join()
    assert seen == [None]


async def test_memory_stays_flat_over_many_steps() -> None:
    engine = Engine(EngineConfig(retain_finished_steps=100))
    op = engine.attach("op")
    spawner = InProcSpawner().register("e", echo)

    async def steps(n: int) -> None:
        for i in range(n):
            step = await engine.start_task(op, TaskSpec("e", i))
            await engine.dispatch_attempt(op, step, spawner)

    await steps(10_000)
    gc.collect()
    blocks_after_10k = sys.getallocatedblocks()
    await steps(90_000)
    gc.collect()
    assert engine.live_step_count() <= 100
    assert engine.token_count() == 1
    assert sys.getallocatedblocks() - blocks_after_10k < 2_000


def test_invocation_input_parses_json_or_keeps_text() -> None:
    step = StepId.new()
    token = Engine().attach("x")
    assert WorkerInvocation(token, step, 1, "a", '{"k": [1]}').input == {"k": [1]}
    assert WorkerInvocation(token, step, 1, "a", "plain words").input == "plain words"


async def test_resources_sessions_and_late_delivery_tokens(engine: Engine, op: CapToken) -> None:
    from mlua_swarm.errors import ResourceNotFound, TokenNotFound

    step = await engine.start_task(op, TaskSpec("x", "hello"))
    worker = engine._tokens.mint("worker-of-x", Role.WORKER, 60, step_id=step)
    engine.set_resource("glossary", {"mse": "mlua swarm engine"})
    assert await engine.fetch_data(worker, "glossary") == {"mse": "mlua swarm engine"}
    with pytest.raises(ResourceNotFound):
        await engine.fetch_data(worker, "missing")
    fresh = engine.remint_worker_token(worker)
    assert fresh.nonce != worker.nonce and await engine.fetch_prompt(fresh, step) == "hello"

    session = engine.attach("short-lived")
    engine.detach(session)
    assert (await engine.start_task(session, TaskSpec("x"))).startswith("ST-")
    engine.close_session(session)
    with pytest.raises(TokenNotFound):
        await engine.start_task(session, TaskSpec("x"))
