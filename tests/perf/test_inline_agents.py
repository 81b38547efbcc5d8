"""A plain `def` agent may opt into running on the event loop (`spec.inline`), saving the thread hop."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.diagnostics import DiagnosticError
from mlua_swarm.run import Run

ran_on: list[int] = []


def where(inv: Any) -> int:
    """A plain function that records the thread it ran on."""
    ran_on.append(threading.get_ident())
    value: int = inv.input
    return value + 1


def blueprint(kind: str, inline: object) -> dict[str, Any]:
    spec: dict[str, Any] = (
        {"callable": "tests.perf.test_inline_agents:where"} if kind == "python" else {"fn_id": "where"}
    )
    if inline is not None:
        spec["inline"] = inline
    return {
        "id": "inline",
        "flow": {
            "kind": "seq",
            "children": [
                {"kind": "step", "ref": "a", "in": {"op": "path", "at": "$.i"}, "out": {"op": "path", "at": "$.i"}},
                {"kind": "step", "ref": "a", "in": {"op": "path", "at": "$.i"}, "out": {"op": "path", "at": "$.i"}},
            ],
        },
        "agents": [{"name": "a", "kind": kind, "spec": spec}],
    }


@pytest.mark.parametrize("kind", ["python", "rust_fn"])
@pytest.mark.parametrize("inline", [True, False, None])
async def test_inline_runs_on_the_loop_thread_and_the_default_on_a_worker_thread(
    kind: str, inline: bool | None
) -> None:
    ran_on.clear()
    root = Path(__file__).resolve().parents[2]
    compiled = compile_blueprint(blueprint(kind, inline), base_dir=root, fns={"where": where})
    async with Run(compiled) as run:
        result = await run.execute({"i": 0})
    assert result.status == "done" and result.final_ctx["i"] == 2
    loop_thread = threading.get_ident()
    assert len(ran_on) == 2
    if inline:
        assert ran_on == [loop_thread, loop_thread]
    else:
        assert loop_thread not in ran_on


def test_inline_must_be_a_boolean() -> None:
    with pytest.raises(DiagnosticError) as info:
        compile_blueprint(blueprint("rust_fn", "yes"), base_dir=Path.cwd(), fns={"where": where})
    [diag] = info.value.diagnostics
    assert diag.code == "invalid-agent-spec" and "spec.inline must be true or false" in diag.message
