"""An in-process worker gets its input without a JSON text round trip (issue #14: large step inputs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.core.engine import Engine
from mlua_swarm.ids import StepId
from mlua_swarm.run import Run
from mlua_swarm.worker.adapter import WorkerInvocation


def invocation(directive: Any) -> WorkerInvocation:
    engine = Engine()
    return WorkerInvocation(engine.attach("t"), StepId("ST-1"), 1, "a", directive)


def test_a_value_directive_renders_its_prompt_only_when_read() -> None:
    directive = {"b": [1, 2.5, "é"], "a": None}
    inv = invocation(directive)
    assert inv.input == directive and inv.input is not directive
    assert inv.prompt == '{"b":[1,2.5,"é"],"a":null}'


def test_a_string_directive_is_the_prompt_and_parses_when_it_is_json() -> None:
    assert invocation('{"k": [1]}').input == {"k": [1]}
    assert invocation("plain words").input == "plain words"
    assert invocation("plain words").prompt == "plain words"
    assert isinstance(invocation("NaN").input, float), "Python's json reads NaN, as before"
    big = 2**70
    assert invocation(str(big)).input == big


async def test_a_worker_changing_its_input_never_changes_the_flow_ctx() -> None:
    seen: list[Any] = []

    async def meddle(inv: WorkerInvocation) -> Any:
        value = inv.input
        value["items"].append("added by the worker")
        seen.append(value)
        return len(value["items"])

    raw = {
        "id": "meddle",
        "flow": {
            "kind": "seq",
            "children": [
                {"kind": "step", "ref": "m", "in": {"op": "path", "at": "$.d"}, "out": {"op": "path", "at": "$.first"}},
                {
                    "kind": "step",
                    "ref": "m",
                    "in": {"op": "path", "at": "$.d"},
                    "out": {"op": "path", "at": "$.second"},
                },
            ],
        },
        "agents": [{"name": "m", "kind": "rust_fn", "spec": {"fn_id": "meddle"}}],
    }
    compiled = compile_blueprint(raw, base_dir=Path.cwd(), fns={"meddle": meddle})
    async with Run(compiled) as run:
        result = await run.execute({"d": {"items": ["one"], "huge": 2**70}})
    assert result.status == "done", result.error
    assert result.final_ctx["d"] == {"items": ["one"], "huge": 2**70}
    assert (result.final_ctx["first"], result.final_ctx["second"]) == (2, 2)
    assert seen[0] is not seen[1]


def test_a_prompt_keeps_key_order_and_reads_back_as_the_value() -> None:
    directive = {"z": [1, 2.5, 1e-7, None, True], "a": {"é": '\x00"\\\u2028'}, "m": 2**70}
    assert json.loads(invocation(directive).prompt) == directive
    assert invocation(directive).prompt.startswith('{"z":[1,2.5,')
    assert invocation({1: "int key"}).prompt == '{"1":"int key"}'
