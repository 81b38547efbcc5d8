"""The operator hub with a real engine and real runs: spawns, parking, seats, hints, persistence."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from mlua_swarm import tokens
from mlua_swarm.core.engine import Engine
from mlua_swarm.diagnostics import DiagnosticError
from mlua_swarm.ids import RunId
from mlua_swarm.operator.frames import AskFrame, CancelFrame, HookBeforeFrame, SpawnFrame
from mlua_swarm.operator.hub import OperatorHub, OperatorHubConfig, SeatMoved, SeatVacant
from mlua_swarm.operator.layers import operator_layers
from mlua_swarm.run import Run, RunResult, run_blueprint
from mlua_swarm.store.memory import MemoryStore
from mlua_swarm.store.sqlite import SqliteStore
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker.output import Final, Inline

from .helpers import LoopbackOperator, compile_with, operator_blueprint

FAST = OperatorHubConfig(ping_secs=0.05, dead_after_secs=0.2, sweep_secs=0)


@pytest.fixture
async def hub() -> OperatorHub:
    hub = OperatorHub(Engine(), MemoryStore(), base_url="http://127.0.0.1:1", config=FAST)
    await hub.start()
    return hub


async def joined(hub: OperatorHub, desc: str = "tester") -> LoopbackOperator:
    session, _ = await hub.join(desc)
    return LoopbackOperator(hub, session)


def launch(hub: OperatorHub, raw: dict, run_id: RunId, **kwargs: object) -> asyncio.Task[RunResult]:
    compiled = compile_with(hub, raw)
    return asyncio.create_task(
        run_blueprint(compiled, {}, engine=hub.engine, run_id=run_id, registry=operator_layers(hub), **kwargs)
    )


async def pinned(hub: OperatorHub, operator: LoopbackOperator, seats: list[str] | None = None) -> RunId:
    run_id = RunId.new()
    await hub.pin(run_id, operator.session.sid, "pinned by the test", None, seats or ["main-ai"])
    return run_id


async def test_a_spawn_ack_without_a_submit_writes_its_value_as_the_final(hub: OperatorHub) -> None:
    op = await joined(hub)
    op.attach()
    run_id = await pinned(hub, op)
    task = launch(hub, operator_blueprint("write"), run_id)
    frame = await op.next()
    assert isinstance(frame, SpawnFrame)
    assert frame.agent == "write" and frame.worker is not None and frame.worker.variant == "claude"
    assert frame.worker_handle and frame.worker_handle.startswith("wh-")
    assert f"/v1/worker/prompt?task_id={frame.task_id}" in frame.directive and "do write" in frame.directive
    op.reply(type="spawn_ack", req_id=frame.req_id, value={"text": "done"})
    result = await task
    assert result.status == "done", result.error
    assert result.final_ctx["write"] == {"text": "done"}


class LateClock:
    """`time` for mlua_swarm.tokens: the real clock, or that plus `ahead` seconds once moved."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def time(self) -> float:
        return time.time() + self.ahead


async def test_an_ack_after_the_worker_token_expired_still_writes_the_final(
    hub: OperatorHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = LateClock()
    monkeypatch.setattr(tokens, "time", clock)
    op = await joined(hub)
    op.attach()
    task = launch(hub, operator_blueprint("write"), await pinned(hub, op))
    frame = await op.next()
    assert isinstance(frame, SpawnFrame)
    issued = CapToken.decode(frame.capability_token)
    clock.ahead = issued.expire_at - time.time() + 60
    assert issued.is_expired(clock.time())
    op.reply(type="spawn_ack", req_id=frame.req_id, value="late but kept")
    result = await task
    assert result.status == "done", result.error
    assert result.final_ctx["write"] == "late but kept"


async def test_the_sub_agents_submit_wins_over_the_ack_value(hub: OperatorHub) -> None:
    op = await joined(hub)
    op.attach()
    run_id = await pinned(hub, op)
    task = launch(hub, operator_blueprint("write"), run_id)
    frame = await op.next()
    assert isinstance(frame, SpawnFrame)
    token = CapToken.decode(frame.capability_token)
    await hub.engine.submit_output(token, frame.task_id, frame.attempt, Final(Inline("from the sub-agent"), True))
    op.reply(type="spawn_ack", req_id=frame.req_id, value={})
    assert (await task).final_ctx["write"] == "from the sub-agent"


async def test_a_spawn_for_a_disconnected_operator_waits_and_goes_out_with_a_fresh_token(hub: OperatorHub) -> None:
    op = await joined(hub)
    run_id = await pinned(hub, op)
    task = launch(hub, operator_blueprint("write"), run_id)
    while not op.session.pending:
        await asyncio.sleep(0.01)
    (parked,) = op.session.pending.values()
    assert not parked.delivered
    issued = parked.token
    op.attach()
    frame = await op.next()
    assert isinstance(frame, SpawnFrame)
    fresh = CapToken.decode(frame.capability_token)
    assert issued is not None and fresh.fingerprint != issued.fingerprint
    assert hub.engine.resolve_handle(frame.worker_handle or "").token.fingerprint == fresh.fingerprint
    await hub.engine.submit_output(fresh, frame.task_id, frame.attempt, Final(Inline(42), True))
    op.reply(type="spawn_ack", req_id=frame.req_id)
    assert (await task).final_ctx["write"] == 42
    assert hub.engine.token_count() <= 1, "the re-minted token is forgotten when the step ends"


async def test_a_reconnect_resends_what_is_still_unanswered(hub: OperatorHub) -> None:
    op = await joined(hub)
    op.attach()
    run_id = await pinned(hub, op)
    task = launch(hub, operator_blueprint("write"), run_id)
    first = await op.next()
    op.detach()
    op.attach()
    again = await op.next()
    assert again.req_id == first.req_id
    op.reply(type="spawn_ack", req_id=again.req_id, value="ok")
    op.reply(type="spawn_ack", req_id=again.req_id, value="duplicate reply is ignored")
    assert (await task).final_ctx["write"] == "ok"


async def test_tearing_down_a_session_fails_its_parked_spawn_loudly(hub: OperatorHub) -> None:
    op = await joined(hub)
    run_id = await pinned(hub, op)
    task = launch(hub, operator_blueprint("write"), run_id)
    while not op.session.pending:
        await asyncio.sleep(0.01)
    await hub.teardown(op.session.sid, "deleted by its owner")
    result = await task
    assert result.status == "failed"
    assert "torn down" in result.error["message"]
    assert hub.assignees(run_id)["seats"][0]["vacant"] is True


async def test_a_vacant_seat_fails_the_step_naming_the_seat(hub: OperatorHub) -> None:
    result = await launch(hub, operator_blueprint("write", seats=("reviewer",)), RunId.new())
    assert result.status == "failed"
    assert "operator seat 'reviewer'" in result.error["message"] and "vacant" in result.error["message"]
    assert "internal" not in result.error["message"]  # the launch left it vacant, not an engine fault


async def test_acquire_moves_a_waiting_spawn_and_the_displaced_token_is_refused(hub: OperatorHub) -> None:
    old = await joined(hub, "old")
    old.attach()
    new = await joined(hub, "new")
    run_id = await pinned(hub, old)
    task = launch(hub, operator_blueprint("write"), run_id)
    first = await old.next()
    assert isinstance(first, SpawnFrame)
    result = await hub.acquire(run_id, new.session.sid, "taking over")
    assert result["gen"] == 2 and result["previous"]["op"] == old.session.sid and result["moved"] == 1
    told = await old.next()
    assert isinstance(told, CancelFrame) and told.req_id == first.req_id
    with pytest.raises(SeatMoved):
        hub.check_submit(CapToken.decode(first.capability_token))
    new.attach()
    moved = await new.next()
    assert isinstance(moved, SpawnFrame) and moved.task_id == first.task_id and moved.req_id != first.req_id
    hub.check_submit(CapToken.decode(moved.capability_token))
    new.reply(type="spawn_ack", req_id=moved.req_id, value="new holder")
    assert (await task).final_ctx["write"] == "new holder"


async def test_a_launch_pin_auto_seats_the_other_declared_seats(hub: OperatorHub) -> None:
    op = await joined(hub)
    run_id = RunId.new()
    await hub.pin(run_id, op.session.sid, "main", "writer", ["reviewer", "writer"])
    seats = {row["slot"]: row["holder"] for row in hub.assignees(run_id)["seats"]}
    assert seats["writer"]["gen"] == 1 and seats["writer"]["desc"] == "main"
    assert seats["reviewer"]["op"] == op.session.sid and seats["reviewer"]["desc"].startswith("auto-seated")


async def test_cancelling_the_run_sends_cancel_and_ends_the_step_cancelled(hub: OperatorHub) -> None:
    op = await joined(hub)
    op.attach()
    run_id = await pinned(hub, op)
    run = Run(compile_with(hub, operator_blueprint("write")), engine=hub.engine, run_id=run_id)

    async def execute() -> RunResult:
        async with run:
            return await run.execute({})

    task = asyncio.create_task(execute())
    frame = await op.next()
    run.cancel("stop")
    told = await op.next()
    assert isinstance(told, CancelFrame) and told.req_id == frame.req_id and told.task_id == frame.task_id
    assert (await task).status == "cancelled"
    assert not op.session.pending
    assert hub.engine.read_task_state(hub.engine.attach("x"), frame.task_id).status.value == "cancelled"


async def test_senior_escalation_asks_the_operator_and_the_answer_lands_in_the_step(hub: OperatorHub) -> None:
    op = await joined(hub)
    op.attach()
    run_id = await pinned(hub, op)
    raw = operator_blueprint("write", spawner_hints={"layers": ["senior_escalation"]})
    task = launch(hub, raw, run_id)
    spawn = await op.next()
    op.reply(type="spawn_ack", req_id=spawn.req_id, value="could not", ok=False)
    ask = await op.next()
    assert isinstance(ask, AskFrame) and ask.task_id == spawn.task_id
    assert ask.question == {"reason": "worker reported ok=false", "value": "could not"}
    op.reply(type="answer", req_id=ask.req_id, value="ship it anyway")
    result = await task
    assert result.final_ctx["write"] == {"original": "could not", "senior_answer": "ship it anyway"}


async def test_main_ai_hook_before_can_refuse_and_hook_after_reports(hub: OperatorHub) -> None:
    op = await joined(hub)
    op.attach()
    run_id = await pinned(hub, op)
    task = launch(hub, operator_blueprint("one", "two", spawner_hints={"layers": ["main_ai"]}), run_id)
    gate = await op.next()
    assert isinstance(gate, HookBeforeFrame) and gate.agent == "one"
    op.reply(type="hook_ack", req_id=gate.req_id, ok=True)
    spawn = await op.next()
    op.reply(type="spawn_ack", req_id=spawn.req_id, value=1)
    after = await op.next()
    assert after.type == "hook_after" and after.result == 1
    gate = await op.next()
    op.reply(type="hook_ack", req_id=gate.req_id, ok=False, reason="not now")
    result = await task
    assert result.status == "failed" and "not now" in result.error["message"]


async def test_sessions_and_seats_survive_a_restart_and_only_the_digest_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "mse.sqlite3"
    store = SqliteStore(path)
    hub = OperatorHub(Engine(), store, config=FAST)
    await hub.start()
    session, token = await hub.join("survivor")
    run_id = RunId.new()
    await hub.pin(run_id, session.sid, "pinned", None, ["main-ai"])
    await hub.aclose()
    await store.close()
    assert token.encode() not in path.read_bytes()

    store = SqliteStore(path)
    again = OperatorHub(Engine(), store, config=FAST)
    await again.start()
    restored = await again.session(session.sid, token)
    assert restored.desc == "survivor" and not restored.connected
    # Seats are read from the store when asked for, and come back into memory when the run runs again.
    assert run_id not in again.seats
    assert again.assignees(run_id, await again.seats_of(run_id))["seats"][0]["holder"]["op"] == session.sid
    assert run_id not in again.seats
    await again.restore(run_id)
    assert again.holder(run_id, "main-ai")[1].op == session.sid
    await again.teardown(session.sid, "bye")
    await again.aclose()
    await store.close()
    store = SqliteStore(path)
    third = OperatorHub(Engine(), store, config=FAST)
    await third.start()
    assert session.sid not in third.sessions
    await third.restore(run_id)
    with pytest.raises(SeatVacant):
        third.holder(run_id, "main-ai")
    await store.close()


async def test_a_run_that_ended_is_forgotten_and_its_seats_read_from_the_store() -> None:
    hub = OperatorHub(Engine(), MemoryStore(), config=FAST)
    await hub.start()
    kept, _ = await hub.join("kept")
    gone, _ = await hub.join("gone")
    first, second = RunId.new(), RunId.new()
    await hub.pin(first, kept.sid, "pinned", None, ["main-ai"])
    await hub.pin(second, gone.sid, "pinned", None, ["main-ai"])
    hub.forget_run(first)
    hub.forget_run(second)
    assert hub.seats == {}
    # The holder of a forgotten run's seat leaves: the seat reads vacant, as teardown makes live seats.
    await hub.teardown(gone.sid, "bye")
    (held,) = hub.assignees(first, await hub.seats_of(first))["seats"]
    (left,) = hub.assignees(second, await hub.seats_of(second))["seats"]
    assert held["holder"]["op"] == kept.sid and left["vacant"] is True
    assert hub.seats == {}
    # Taking a seat of a run that is not in memory brings its seats back first.
    taken = await hub.acquire(second, kept.sid, "took over")
    assert taken["slot"] == "main-ai" and hub.holder(second, "main-ai")[1].op == kept.sid
    await hub.aclose()


async def test_the_sweep_releases_a_session_past_the_horizon() -> None:
    hub = OperatorHub(Engine(), MemoryStore(), config=OperatorHubConfig(session_ttl_secs=0.05, sweep_secs=0.02))
    await hub.start()
    session, _ = await hub.join()
    while session.sid in hub.sessions:
        await asyncio.sleep(0.02)
    assert hub.sweeps >= 1
    await hub.aclose()


def test_operator_agents_compile_without_a_hub_and_refuse_to_run() -> None:
    compiled = compile_with(None, operator_blueprint("write"))
    spawner = compiled.agents["write"].spawner
    assert "needs an operator hub" in (getattr(spawner, "unavailable_reason", None) or "")


def test_an_operator_agent_without_a_binding_is_a_compile_error() -> None:
    raw = operator_blueprint("write")
    del raw["agents"][0]["runner"]
    with pytest.raises(DiagnosticError) as err:
        compile_with(None, raw)
    assert [d.code for d in err.value.diagnostics] == ["worker-binding-missing"]


def test_the_legacy_worker_binding_is_a_binding() -> None:
    raw = operator_blueprint("write")
    del raw["agents"][0]["runner"]
    raw["agents"][0]["profile"] = {"worker_binding": "reviewer", "tools": ["Read"]}
    spawner = compile_with(None, raw).agents["write"].spawner
    assert spawner.binding.variant == "reviewer" and spawner.binding.tools == ["Read"]


def test_an_unknown_seat_is_a_compile_error() -> None:
    raw = operator_blueprint("write")
    raw["agents"][0]["spec"]["operator_ref"] = "main-al"
    with pytest.raises(DiagnosticError) as err:
        compile_with(None, raw)
    (diag,) = err.value.diagnostics
    assert diag.code == "unresolved-operator-ref" and "did you mean 'main-ai'" in (diag.hint or "")
