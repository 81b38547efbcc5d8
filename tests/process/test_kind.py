"""The `subprocess` agent kind: spec mode, template mode through runners, and compile-time errors."""

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.core.ctx import Ctx
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.ids import StepId
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker import Worker
from mlua_swarm.worker.adapter import SpawnerAdapter
from mlua_swarm.worker.kinds import InvalidAgentSpec, LinkEnv, agent_kind
from mlua_swarm.worker.process import ProcessSpawner, SubprocessKind

from ..conftest import run_one

PY = sys.executable


class WithWorkDir(SpawnerAdapter):
    """Puts `work_dir` into the runtime context, as the task-input middleware does for a launch."""

    def __init__(self, inner: SpawnerAdapter, work_dir: Path) -> None:
        self.inner = inner
        self.work_dir = work_dir

    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
        ctx = ctx.clone()
        ctx.meta.runtime["work_dir"] = str(self.work_dir)
        return await self.inner.spawn(engine, ctx, task_id, attempt, token)


def build(agent: dict[str, Any], blueprint: dict[str, Any] | None = None, base_dir: Path | None = None) -> Any:
    kind = agent_kind("subprocess")
    assert isinstance(kind, SubprocessKind)
    env = LinkEnv(base_dir=base_dir or Path.cwd(), blueprint=blueprint or {"id": "t", "flow": {}})
    return kind.build(agent, env)


def template_bp(*templates: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "t", "flow": {}, "subprocesses": list(templates), **extra}


ECHO_BOTH = (
    "import json, os, sys; "
    "print(json.dumps({'payload': {'prompt_seen': sys.stdin.read(), "
    "'system_seen': open(os.environ['SYS_FILE']).read(), 'sys_file': os.environ['SYS_FILE']}}))"
)


async def test_template_renders_prompt_and_system_file_and_extracts_the_result(engine: Engine, op: CapToken) -> None:
    blueprint = template_bp(
        {
            "name": "embed",
            "argv": [PY, "-c", ECHO_BOTH],
            "stdin": "{prompt}",
            "env": {"SYS_FILE": "{system_file}"},
            "output": {"format": "json", "result_ptr": "/payload"},
        }
    )
    agent = {
        "name": "writer",
        "kind": "subprocess",
        "spec": {},
        "profile": {"system_prompt": "You write about {{ topic }}."},
        "runner": {"backend": "subprocess", "template": "embed"},
    }
    outcome = await run_one(engine, op, build(agent, blueprint), TaskSpec("writer", {"topic": "owls"}))
    assert outcome.value["prompt_seen"] == '{"topic":"owls"}'
    assert outcome.value["system_seen"] == "You write about owls."
    assert not Path(outcome.value["sys_file"]).exists()


async def test_system_file_without_a_system_prompt_fails_before_exec(engine: Engine, op: CapToken) -> None:
    blueprint = template_bp({"name": "embed", "argv": ["cat", "{system_file}"]})
    agent = {"name": "a", "kind": "subprocess", "runner": {"backend": "subprocess", "template": "embed"}}
    with pytest.raises(DispatchFailed, match=r"\{system_file\} has no value: give the agent a profile.system_prompt"):
        await run_one(engine, op, build(agent, blueprint), TaskSpec("a", "x"))


async def test_a_missing_model_is_an_actionable_spawn_error(engine: Engine, op: CapToken) -> None:
    blueprint = template_bp({"name": "cli", "argv": ["echo", "--model", "{model}"]})
    agent = {"name": "a", "kind": "subprocess", "runner": {"backend": "subprocess", "template": "cli"}}
    with pytest.raises(DispatchFailed, match=r"template 'cli': .*\{model\} has no value: set profile.model"):
        await run_one(engine, op, build(agent, blueprint), TaskSpec("a", "x"))


async def test_template_nonzero_exit_and_undeclared_prose_fail_the_step(engine: Engine, op: CapToken) -> None:
    blueprint = template_bp(
        {"name": "exit7", "argv": ["sh", "-c", "echo '{}'; exit 7"]},
        {"name": "prose", "argv": ["echo", "just words"], "output": {"format": "json"}},
    )
    for template in ("exit7", "prose"):
        agent = {"name": template, "kind": "subprocess", "runner": {"backend": "subprocess", "template": template}}
        outcome = await run_one(engine, op, build(agent, blueprint), TaskSpec(template, "x"))
        assert outcome.kind == "blocked", template


async def test_cwd_work_dir_places_the_child_in_the_launch_work_dir(
    engine: Engine, op: CapToken, tmp_path: Path
) -> None:
    (tmp_path / "input.json").write_text('{"from": "work_dir"}')
    blueprint = template_bp({"name": "reader", "argv": ["cat", "input.json"], "cwd": "{work_dir}"})
    agent = {"name": "r", "kind": "subprocess", "runner": {"backend": "subprocess", "template": "reader"}}
    spawner = WithWorkDir(build(agent, blueprint), tmp_path)
    outcome = await run_one(engine, op, spawner, TaskSpec("r", "x"))
    assert outcome.value == {"from": "work_dir"}


async def test_spec_mode_and_two_templates_coexist_in_one_blueprint(engine: Engine, op: CapToken) -> None:
    blueprint = template_bp(
        {"name": "upper", "argv": ["tr", "a-z", "A-Z"], "stdin": "{prompt}"},
        {"name": "argv", "argv": ["echo", "{task_id}:{attempt}:{tools_csv}"]},
        runners=[{"name": "shout", "runner": {"backend": "subprocess", "template": "upper"}}],
        default_runner="shout",
    )
    agents = [
        {"name": "cat", "kind": "subprocess", "spec": {"program": "cat"}, "runner": {"backend": "ws_operator"}},
        {"name": "shout", "kind": "subprocess", "spec": {}},
        {
            "name": "ids",
            "kind": "subprocess",
            "profile": {"tools": ["read", "grep"]},
            "runner": {"backend": "subprocess", "template": "argv"},
        },
    ]
    spawners = {a["name"]: build(a, blueprint) for a in agents}
    assert (await run_one(engine, op, spawners["cat"], TaskSpec("cat", {"k": 1}))).value == {"k": 1}
    assert (await run_one(engine, op, spawners["shout"], TaskSpec("shout", "hey"))).value == {
        "raw": "HEY",
        "stderr": "",
    }
    step = await engine.start_task(op, TaskSpec("ids", "x"))
    outcome = await engine.dispatch_attempt(op, step, spawners["ids"])
    assert outcome.value == {"raw": f"{step}:1:read,grep", "stderr": ""}


async def test_template_stats_pointers_are_recorded(engine: Engine, op: CapToken) -> None:
    doc = {"result": "r", "usage": {"input_tokens": 3, "output_tokens": 4}, "model": "m-1", "turns": 2, "ok": True}
    blueprint = template_bp(
        {
            "name": "llm",
            "argv": ["echo", json.dumps(doc)],
            "output": {
                "result_ptr": "/result",
                "ok_from": "/ok",
                "stats": {"usage_ptr": "/usage", "model_ptr": "/model", "num_turns_ptr": "/turns"},
            },
        }
    )
    agent = {"name": "llm", "kind": "subprocess", "runner": {"backend": "subprocess", "template": "llm"}}
    step = await engine.start_task(op, TaskSpec("llm", "x"))
    outcome = await engine.dispatch_attempt(op, step, build(agent, blueprint))
    stats = engine.worker_stats(step, 1)
    assert outcome.value == "r"
    assert (stats["usage"], stats["model"], stats["num_turns"]) == ({"input_tokens": 3, "output_tokens": 4}, "m-1", 2)


async def test_streaming_template_with_ok_from_final(engine: Engine, op: CapToken) -> None:
    final = json.dumps({"type": "final", "content": {"kind": "inline", "value": "v"}, "ok": True})
    blueprint = template_bp(
        {"name": "s", "argv": ["sh", "-c", f"echo '{final}'; exit 1"], "stream_mode": "ndjson_lines"}
    )
    runner = {"backend": "subprocess", "template": "s"}
    strict = build({"name": "a", "kind": "subprocess", "runner": runner}, blueprint)
    lenient = build({"name": "b", "kind": "subprocess", "runner": runner, "spec": {"ok_from": "final"}}, blueprint)
    assert (await run_one(engine, op, strict, TaskSpec("a", "x"))).kind == "blocked"
    assert (await run_one(engine, op, lenient, TaskSpec("b", "x"))).kind == "pass"


async def test_spec_cwd_is_relative_to_the_blueprint_folder(engine: Engine, op: CapToken, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.json").write_text("[1, 2]")
    agent = {"name": "a", "kind": "subprocess", "spec": {"program": "cat", "args": ["data.json"], "cwd": "sub"}}
    spawner = build(agent, base_dir=tmp_path)
    assert isinstance(spawner, ProcessSpawner)
    assert (await run_one(engine, op, spawner, TaskSpec("a", "x"))).value == [1, 2]


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ({"name": "a", "kind": "subprocess", "spec": {}}, "needs spec.program"),
        ({"name": "a", "kind": "subprocess", "spec": {"program": "x", "argz": []}}, r"unknown spec key\(s\) argz"),
        ({"name": "a", "kind": "subprocess", "spec": {"program": "x", "args": "a b"}}, "args must be a list"),
        ({"name": "a", "kind": "subprocess", "spec": {"program": "x", "use_stdin": "yes"}}, "use_stdin must be"),
        ({"name": "a", "kind": "subprocess", "spec": {"program": "x", "stream_mode": "lines"}}, "unknown stream_mode"),
        ({"name": "a", "kind": "subprocess", "spec": {"program": "x", "ok_from": "exit"}}, "ok_from must be"),
        ({"name": "a", "kind": "subprocess", "spec": {"program": "x", "kill_grace_secs": -1}}, "kill_grace_secs"),
        ({"name": "a", "kind": "subprocess", "spec": {"program": "x", "max_frame_bytes": 0}}, "max_frame_bytes"),
        ({"name": "a", "kind": "subprocess", "spec": {"program": "x"}, "runner_ref": "nope"}, "runner 'nope' is not"),
        (
            {
                "name": "a",
                "kind": "subprocess",
                "spec": {"program": "x"},
                "runner": {"backend": "subprocess", "template": "t"},
            },
            r"unknown spec key\(s\) program",
        ),
        ({"name": "a", "kind": "subprocess", "runner": {"backend": "subprocess", "template": "zz"}}, "'zz' is not"),
    ],
)
def test_bad_specs_fail_at_build_time_with_a_hint(agent: dict[str, Any], message: str) -> None:
    blueprint = template_bp({"name": "t", "argv": ["true"]})
    with pytest.raises(InvalidAgentSpec, match=message):
        build(agent, blueprint)


def test_the_kind_is_registered_under_subprocess() -> None:
    kind = agent_kind("subprocess")
    assert isinstance(kind, SubprocessKind) and kind.name == "subprocess"
