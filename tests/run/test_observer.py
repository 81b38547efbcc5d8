"""What a run's observer hears: each dispatched step starting and finishing, with its status, time and
value (or error), whether the run records a journal or runs in memory only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlua_swarm import WorkerInvocation
from mlua_swarm.blueprint.compiler import CompiledBlueprint
from mlua_swarm.ids import StepId
from mlua_swarm.run import Run, run_blueprint
from mlua_swarm.store import open_store

from ..conftest import PREP_THEN_WORK, compile_fns


class Heard:
    """A `RunObserver` that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def step_started(self, step_ref: str, step_id: StepId | None, node_index: int | None) -> None:
        self.calls.append(("started", step_ref, step_id))

    def step_finished(self, step_ref: str, step_id: StepId | None, status: str, elapsed: float, detail: Any) -> None:
        assert isinstance(elapsed, float) and elapsed >= 0
        self.calls.append(("finished", step_ref, step_id, str(status), detail))


async def _inc(inv: WorkerInvocation) -> Any:
    return inv.input + 1


async def _broken(inv: WorkerInvocation) -> Any:
    raise RuntimeError("worker crashed")


def _two_steps(work: Any) -> CompiledBlueprint:
    compiled: CompiledBlueprint = compile_fns(PREP_THEN_WORK, {"prep": _inc, "work": work})
    return compiled


def _expected(heard: Heard, last: tuple[str, Any]) -> list[tuple[Any, ...]]:
    ids = [call[2] for call in heard.calls if call[0] == "started"]
    assert len(ids) == 2 and all(isinstance(i, str) and i for i in ids) and ids[0] != ids[1]
    return [
        ("started", "prep", ids[0]),
        ("finished", "prep", ids[0], "passed", 2),
        ("started", "work", ids[1]),
        ("finished", "work", ids[1], *last),
    ]


async def test_in_memory_the_observer_hears_every_pass() -> None:
    heard = Heard()
    result = await run_blueprint(_two_steps(_inc), {"n": 1}, observer=heard)
    assert result.status == "done" and result.final_ctx == {"n": 2, "out": 3}
    assert heard.calls == _expected(heard, ("passed", 3))


async def test_in_memory_the_observer_hears_a_failure_with_its_error() -> None:
    heard = Heard()
    result = await run_blueprint(_two_steps(_broken), {"n": 1}, observer=heard)
    assert result.status == "failed"
    *_, last = heard.calls
    assert last[:4] == ("finished", "work", heard.calls[2][2], "failed")
    assert "worker crashed" in last[4]


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
async def test_a_recorded_run_tells_its_observer_the_same(url: str, tmp_path: Path) -> None:
    store = await open_store(str(tmp_path / "runs.sqlite3") if url == "sqlite" else url)
    try:
        heard = Heard()
        async with Run(_two_steps(_inc), store=store, observer=heard) as run:
            result = await run.execute({"n": 1})
        assert result.status == "done"
        assert heard.calls == _expected(heard, ("passed", 3))
    finally:
        await store.close()
