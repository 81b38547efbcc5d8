"""Layers that act after the join: senior escalation, after-run audits, attempt events, long holds."""

from __future__ import annotations

import asyncio
from typing import Any

from mlua_swarm.core.ctx import OperatorInfo
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.ids import StepId
from mlua_swarm.middleware import AuditLayer, LayerRegistry, link
from mlua_swarm.middleware.after_run_audit import AUDIT_INSTRUCTION
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker.adapter import InProcSpawner, WorkerInvocation, WorkerResult
from mlua_swarm.worker.output import Artifact, Final, Inline

from ..conftest import run_one
from .helpers import RecordingRun, buffered


class Senior:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.questions: list[tuple[StepId, Any]] = []

    async def ask(self, step_id: StepId, question: Any) -> Any:
        self.questions.append((step_id, question))
        return self.answer


async def judge(inv: WorkerInvocation) -> WorkerResult:
    return WorkerResult({"verdict": "FAIL"}, ok=False)


ESCALATING = {"spawner_hints": {"layers": ["senior_escalation"]}}


async def test_escalation_overrides_a_blocked_step(engine: Engine) -> None:
    senior = Senior("ship it")
    op = engine.attach("op", operator=OperatorInfo(senior_bridge=senior))
    linked, _ = link(InProcSpawner().register("judge", judge), ESCALATING, engine, run=RecordingRun())
    step = await engine.start_task(op, TaskSpec("judge", "review"))
    outcome = await engine.run_step(op, step, linked)
    assert (outcome.kind, outcome.value) == ("pass", {"original": {"verdict": "FAIL"}, "senior_answer": "ship it"})
    assert senior.questions == [(step, {"reason": "worker reported ok=false", "value": {"verdict": "FAIL"}})]
    assert engine.output_tail(step, 1) == [
        Final(Inline({"verdict": "FAIL"}), False),
        Final(Inline({"original": {"verdict": "FAIL"}, "senior_answer": "ship it"}), True),
    ]


async def test_without_a_bridge_or_with_a_failing_one_the_block_stands(engine: Engine) -> None:
    class Broken:
        async def ask(self, step_id: StepId, question: Any) -> Any:
            raise ConnectionError("senior unreachable")

    router = InProcSpawner().register("judge", judge)
    linked, _ = link(router, ESCALATING, engine, run=RecordingRun())
    plain = engine.attach("plain")
    assert (await run_one(engine, plain, linked, TaskSpec("judge"))).kind == "blocked"
    broken = engine.attach("broken", operator=OperatorInfo(senior_bridge=Broken()))
    async with engine.events() as stream:
        outcome = await run_one(engine, broken, linked, TaskSpec("judge"))
        failed = buffered(stream, "mw.escalation_failed")
    assert (outcome.kind, outcome.value) == ("blocked", {"verdict": "FAIL"})
    assert [e.data["error"] for e in failed] == ["senior unreachable"]


def audited_router(auditor_gate: asyncio.Event | None = None) -> InProcSpawner[Any]:
    async def work(inv: WorkerInvocation) -> Any:
        return {"answer": 42}

    async def auditor(inv: WorkerInvocation) -> Any:
        if auditor_gate is not None:
            await auditor_gate.wait()
        seen = inv.input
        return {"finding": "fine", "saw": seen["final_value"], "of": seen["step_ref"], "kind": seen["kind"]}

    return InProcSpawner().register("work", work).register("auditor", auditor)


def audit_blueprint(mode: str, steps: list[str] | None = None) -> dict[str, Any]:
    return {
        "agents": [{"name": "work", "kind": "rust_fn"}, {"name": "auditor", "kind": "rust_fn"}],
        "audits": [{"agent": "auditor", "mode": mode, "steps": steps}],
    }


AUDIT_VALUE = {"finding": "fine", "saw": {"answer": 42}, "of": "work", "kind": "after_run_audit"}


async def test_async_audit_lands_its_artifact_without_changing_the_outcome(engine: Engine, op: CapToken) -> None:
    release = asyncio.Event()
    linked, _ = link(audited_router(release), audit_blueprint("async"), engine, run=RecordingRun())
    async with linked:
        step = await engine.start_task(op, TaskSpec("work"))
        outcome = await engine.run_step(op, step, linked)
        assert (outcome.kind, outcome.value) == ("pass", {"answer": 42})
        assert linked.audits.pending == 1
        assert not [e for e in engine.output_tail(step, 1) if isinstance(e, Artifact)]
        release.set()
    assert linked.audits.pending == 0
    assert engine.output_tail(step, 1) == [Final(Inline({"answer": 42})), Artifact("audit:work", Inline(AUDIT_VALUE))]
    state = engine.read_task_state(op, step)
    assert (state.status, state.last_result) == ("pass", {"answer": 42})


async def test_sync_audit_lands_before_the_step_returns(engine: Engine, op: CapToken) -> None:
    linked, _ = link(audited_router(), audit_blueprint("sync", ["work"]), engine, run=RecordingRun())
    step = await engine.start_task(op, TaskSpec("work"))
    outcome = await engine.run_step(op, step, linked)
    assert outcome.value == {"answer": 42}
    assert engine.output_tail(step, 1)[-1] == Artifact("audit:work", Inline(AUDIT_VALUE))
    await linked.aclose()


async def test_audit_directive_carries_the_instruction(engine: Engine, op: CapToken) -> None:
    directives: list[Any] = []

    async def auditor(inv: WorkerInvocation) -> Any:
        directives.append(inv.input)
        return "ok"

    router = audited_router().register("auditor", auditor)
    linked, _ = link(router, audit_blueprint("sync"), engine, run=RecordingRun())
    step = await engine.start_task(op, TaskSpec("work"))
    await engine.run_step(op, step, linked)
    assert directives == [
        {
            "kind": "after_run_audit",
            "task_id": step,
            "step_ref": "work",
            "attempt": 1,
            "ok": True,
            "final_value": {"answer": 42},
            "instruction": AUDIT_INSTRUCTION,
        }
    ]


async def test_failing_auditor_is_swallowed_and_reported(engine: Engine, op: CapToken) -> None:
    async def broken(inv: WorkerInvocation) -> Any:
        raise RuntimeError("auditor crashed")

    router = audited_router().register("auditor", broken)
    linked, _ = link(router, audit_blueprint("sync"), engine, run=RecordingRun())
    async with engine.events() as stream:
        step = await engine.start_task(op, TaskSpec("work"))
        outcome = await engine.run_step(op, step, linked)
        failed = buffered(stream, "mw.audit_failed")
    assert outcome.value == {"answer": 42}
    assert [e.data["auditor"] for e in failed] == ["auditor"]
    assert "auditor crashed" in failed[0].data["error"]
    assert engine.output_tail(step, 1) == [Final(Inline({"answer": 42}))]


async def test_steps_filter_and_auditors_are_never_audited(engine: Engine, op: CapToken) -> None:
    router = audited_router().register("other", lambda inv: "x")
    linked, _ = link(router, audit_blueprint("sync", ["work"]), engine, run=RecordingRun())
    other = await engine.start_task(op, TaskSpec("other"))
    await engine.run_step(op, other, linked)
    assert engine.output_tail(other, 1) == [Final(Inline("x"))]
    everything, _ = link(router, audit_blueprint("sync", ["*"]), engine, run=RecordingRun())
    auditor_step = await engine.start_task(op, TaskSpec("auditor", {"final_value": 1, "step_ref": "s", "kind": "k"}))
    await engine.run_step(op, auditor_step, everything)
    assert [type(e) for e in engine.output_tail(auditor_step, 1)] == [Final]


async def test_closing_the_link_cancels_outstanding_audits(engine: Engine, op: CapToken) -> None:
    started = asyncio.Event()
    audit_steps: list[StepId] = []

    async def stuck_auditor(inv: WorkerInvocation) -> Any:
        audit_steps.append(inv.task_id)
        started.set()
        await asyncio.Event().wait()

    router = audited_router().register("auditor", stuck_auditor)
    linked, _ = link(router, audit_blueprint("async"), engine, run=RecordingRun())
    step = await engine.start_task(op, TaskSpec("work"))
    await engine.run_step(op, step, linked)
    await started.wait()
    assert linked.audits.pending == 1
    await linked.aclose()
    assert linked.audits.pending == 0
    assert engine.read_task_state(op, audit_steps[0]).status == "cancelled"
    assert engine.output_tail(step, 1) == [Final(Inline({"answer": 42}))]
    assert not linked.audits.start(asyncio.sleep(0))


async def test_audit_layer_publishes_attempt_events_and_long_hold_warns(engine: Engine, op: CapToken) -> None:
    registry = LayerRegistry.default(long_hold_warn_ms=0).add_base(lambda _e: AuditLayer())
    linked, _ = link(InProcSpawner().register("work", lambda inv: 1), {}, engine, run=RecordingRun(), registry=registry)
    async with engine.events() as stream:
        step = await engine.start_task(op, TaskSpec("work"))
        await engine.run_step(op, step, linked)
        events = [e for e in buffered(stream) if e.kind.startswith(("attempt_", "mw."))]
    assert [(e.kind, e.step_id, e.data["attempt"]) for e in events] == [
        ("attempt_started", step, 1),
        ("mw.long_hold_warn", step, 1),
        ("attempt_finished", step, 1),
    ]
    assert events[2].data["error"] is None


async def test_an_auditor_the_policy_denies_is_dropped_with_a_warning(engine: Engine, op: CapToken) -> None:
    blueprint = {**audit_blueprint("sync"), "policy": {"deny": ["auditor"]}}
    linked, diagnostics = link(audited_router(), blueprint, engine, run=RecordingRun())
    assert [(d.code, d.location.json_path) for d in diagnostics] == [("audit-agent-denied", "$.audits[0].agent")]
    assert "after_run_audit" not in linked.layer_names
    step = await engine.start_task(op, TaskSpec("work"))
    await engine.run_step(op, step, linked)
    assert engine.output_tail(step, 1) == [Final(Inline({"answer": 42}))]
