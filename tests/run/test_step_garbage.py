"""A finished step leaves nothing for the cyclic garbage collector: its token and token record are
freed by reference counting, and a released token still signs what it was minted with. A finished
run's own engine, and every step record it retained, go the same way when the run returns."""

from __future__ import annotations

import gc
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.core.engine import Engine, _Step
from mlua_swarm.core.output import Artifact, Inline
from mlua_swarm.core.state import StepStatus
from mlua_swarm.ids import StepId
from mlua_swarm.run import Run, run_blueprint
from mlua_swarm.store import open_store
from mlua_swarm.tokens import CapToken, Role, TokenBook, TokenRecord

STEPS = 40


def sequence(n: int) -> dict[str, object]:
    return {
        "id": "garbage",
        "flow": {
            "kind": "loop",
            "counter": {"op": "path", "at": "$.round"},
            "cond": {"op": "lt", "lhs": {"op": "path", "at": "$.i"}, "rhs": {"op": "lit", "value": n}},
            "body": {
                "kind": "step",
                "ref": "inc",
                "in": {"op": "path", "at": "$.i"},
                "out": {"op": "path", "at": "$.i"},
            },
            "max": n + 1,
        },
        "agents": [{"name": "inc", "kind": "python", "spec": {"callable": "garbage_agents:inc"}}],
        "default_init_ctx": {"i": 0},
    }


AGENTS = "async def inc(inv):\n    return inv.input + 1\n"


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """What a full collection finds unreachable while the test runs (the collector itself paused)."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()


async def test_finished_steps_leave_no_token_cycles(saved_garbage: list[object], tmp_path: Path) -> None:
    (tmp_path / "garbage_agents.py").write_text(AGENTS)
    engine = Engine()  # shared, so the run's own engine is not part of what is collected
    compiled = compile_blueprint(sequence(STEPS), base_dir=tmp_path, fns={})
    result = await run_blueprint(compiled, engine=engine)
    assert result.status == "done" and result.final_ctx["i"] == STEPS
    gc.collect()
    kinds = Counter(type(o).__name__ for o in saved_garbage)
    # The run's own session token (and its record) may go with the run's objects; no step's does.
    step_records = [r for r in saved_garbage if isinstance(r, TokenRecord) and r.step_id is not None]
    assert step_records == [], kinds.most_common(8)
    assert [t for t in saved_garbage if isinstance(t, CapToken) and t.role is Role.WORKER] == []


@pytest.mark.parametrize("stored", [False, True], ids=["in_memory", "sqlite"])
async def test_a_finished_run_is_freed_by_reference_counting(
    saved_garbage: list[object], tmp_path: Path, stored: bool
) -> None:
    """With the collector off, nothing of the run's engine is left once the run returns: a cycle in
    it would keep every retained step until a full collection (which scans the host's whole heap)."""
    (tmp_path / "garbage_agents.py").write_text(AGENTS)
    compiled = compile_blueprint(sequence(STEPS), base_dir=tmp_path, fns={})

    def left() -> Counter[str]:
        return Counter(type(o).__name__ for o in gc.get_objects() if type(o) in (Engine, _Step))

    before = left()
    if stored:
        store = await open_store(str(tmp_path / "runs.sqlite3"))
        try:
            async with Run(compiled, store=store) as run:
                result = await run.execute()
            engine = weakref.ref(run.engine)
            del run
        finally:
            await store.close()
        assert engine() is None
    else:
        result = await run_blueprint(compiled)
    assert result.status == "done" and result.final_ctx["i"] == STEPS
    assert left() == before
    gc.collect()
    assert saved_garbage == []


class StepIds:
    """An observer keeping the id of every step the run started."""

    def __init__(self) -> None:
        self.ids: list[StepId] = []

    def step_started(self, step_ref: str, step_id: StepId | None, node_index: int | None) -> None:
        assert step_id is not None
        self.ids.append(step_id)

    def step_finished(self, step_ref: str, step_id: StepId | None, status: str, elapsed: float, detail: Any) -> None:
        return None


async def test_a_retained_finished_step_holds_only_its_id_and_spec(tmp_path: Path) -> None:
    """What the collector scans per retained step stays small; the step stays readable and annotatable."""
    (tmp_path / "garbage_agents.py").write_text(AGENTS)
    engine = Engine()
    seen = StepIds()
    compiled = compile_blueprint(sequence(5), base_dir=tmp_path, fns={})
    result = await run_blueprint(compiled, engine=engine, observer=seen)
    assert result.status == "done" and len(seen.ids) == 5
    op = engine.attach("reader")
    for step_id in seen.ids:
        record = engine._steps[step_id]
        held = [o for o in gc.get_referents(record) if gc.is_tracked(o) and not isinstance(o, type | StepStatus)]
        assert sorted(type(o).__name__ for o in held) == ["StepId", "TaskSpec"], held
        state = engine.read_task_state(op, step_id)
        assert state.status == "pass" and state.agent == "inc" and state.attempt == 1
    audit = Artifact("audit", Inline({"ok": True}))
    assert engine.annotate_attempt(seen.ids[0], 1, audit)
    assert engine.output_tail(seen.ids[0], 1) == [audit]


def test_a_forgotten_token_still_signs_its_minted_fields() -> None:
    book = TokenBook(b"k" * 32)
    signed = book.mint("a", Role.WORKER, 60)
    assert signed.sig_hex  # signed while its record was known
    unsigned = book.mint("b", Role.WORKER, 60)
    book.forget(signed)
    book.forget(unsigned)
    other = TokenBook(b"k" * 32)
    assert unsigned.sig_hex == other.sign(unsigned.signing_input())
    assert signed.sig_hex == other.sign(signed.signing_input())
