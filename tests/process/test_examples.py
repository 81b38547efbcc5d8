"""The example Blueprints under examples/subprocess build, and each agent runs its real program."""

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker.adapter import SpawnerAdapter
from mlua_swarm.worker.kinds import LinkEnv, agent_kind
from mlua_swarm.worker.output import Progress

from ..conftest import run_one
from .helpers import SRC

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "subprocess"


@pytest.fixture(autouse=True)
def python3_is_this_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """`python3` in the examples resolves to the interpreter under test, which can import mlua_swarm."""
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))


def spawners(name: str) -> tuple[dict[str, Any], dict[str, SpawnerAdapter]]:
    blueprint = json.loads((EXAMPLES / name).read_text())
    env = LinkEnv(base_dir=EXAMPLES, blueprint=blueprint)
    built = {}
    for agent in blueprint["agents"]:
        kind = agent_kind(agent["kind"])
        assert kind is not None
        built[agent["name"]] = kind.build(agent, env)
    return blueprint, built


async def test_plain_example(engine: Engine, op: CapToken) -> None:
    blueprint, built = spawners("plain.json")
    words = await run_one(engine, op, built["count"], TaskSpec("count", blueprint["default_init_ctx"]["text"]))
    assert words.value == 9
    report = await run_one(engine, op, built["report"], TaskSpec("report", words.value))
    assert report.value == {"words": 9, "verdict": "long"}


async def test_streaming_example_reports_progress_per_item(engine: Engine, op: CapToken) -> None:
    blueprint, built = spawners("streaming.json")
    step = await engine.start_task(op, TaskSpec("measure", blueprint["default_init_ctx"]["task"]))
    outcome = await engine.dispatch_attempt(op, step, built["measure"])
    assert outcome.value == {
        "out": {"lengths": {"alpha": 5, "beta": 4, "gamma-delta": 11}, "total": 20},
        "parts": {"longest": "gamma-delta"},
    }
    notes = [e.note for e in engine.output_tail(step, 1) if isinstance(e, Progress)]
    assert notes == ["3 items", "1/3: alpha", "2/3: beta", "3/3: gamma-delta"]


async def test_templates_example_with_jq_and_a_system_file(engine: Engine, op: CapToken) -> None:
    blueprint, built = spawners("templates.json")
    total = await run_one(engine, op, built["sum"], TaskSpec("sum", blueprint["default_init_ctx"]["data"]))
    assert total.value == {"total": 12, "count": 3}
    step = await engine.start_task(op, TaskSpec("brief", total.value))
    brief = await engine.dispatch_attempt(op, step, built["brief"])
    assert brief.value == {"system": "Summarise 3 numbers adding up to 12.", "prompt": '{"total":12,"count":3}'}
    assert engine.worker_stats(step, 1)["usage"] == {"total_tokens": 0}
