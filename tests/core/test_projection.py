from pathlib import Path
from typing import Any

import pytest

from mlua_swarm import Engine, InProcSpawner, TaskSpec, WorkerInvocation
from mlua_swarm.core.config import CheckPolicy
from mlua_swarm.core.projection import Projection
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.worker.output import Artifact, Inline

from ..conftest import json_of, run_mse


async def writer(inv: WorkerInvocation) -> Any:
    assert inv.sink is not None
    await inv.sink.emit(Artifact("notes.txt", Inline("raw notes")))
    await inv.sink.emit(Artifact("../escape", Inline("nope")))
    return {"answer": 42}


async def test_final_and_parts_are_written_under_the_step_directory(tmp_path: Path) -> None:
    engine = Engine()
    op = engine.attach("op")
    spec = TaskSpec("writer", projection=Projection(tmp_path, "review"))
    step = await engine.start_task(op, spec)
    await engine.run_step(op, step, InProcSpawner().register("writer", writer))
    directory = tmp_path / "workspace" / "tasks" / step / "ctx"
    text = (directory / "review.md").read_text()
    assert text.startswith(f'---\nstep: "review"\ntask_id: {step}\nattempt: 1\nok: true\n---\n```json\n')
    assert '"answer": 42' in text
    assert (directory / "notes.txt").read_text() == "raw notes"
    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt", "review.md"]
    assert not (tmp_path / "workspace" / "tasks" / step / "escape").exists()


async def test_strict_policy_turns_a_refused_part_into_a_failure(tmp_path: Path) -> None:
    engine = Engine()
    op = engine.attach("op")
    spec = TaskSpec("writer", projection=Projection(tmp_path, "w", policy=CheckPolicy.STRICT))
    step = await engine.start_task(op, spec)
    with pytest.raises(DispatchFailed, match="part name"):
        await engine.run_step(op, step, InProcSpawner().register("writer", writer))


def test_mse_run_projects_step_outputs_into_the_work_dir(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    proc = run_mse(["run", str(examples / "pipeline.json"), "--json", "--ephemeral", "--work-dir", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in tmp_path.glob("workspace/tasks/*/ctx/*.md"))
    assert files == ["draft.md", "outline.md", "polish.md"]
    assert json_of(proc)["final_ctx"]["length"] == 70


def test_strict_check_policy_without_a_work_dir_is_invalid_input(tmp_path: Path) -> None:
    bp = tmp_path / "bp.json"
    bp.write_text('{"id": "s", "check_policy": "strict", "flow": {"kind": "seq", "children": []}}')
    proc = run_mse(["run", str(bp), "--ephemeral"])
    assert proc.returncode == 2 and "[projection-root-missing]" in proc.stderr and "--work-dir" in proc.stderr
