"""`collect` on a fanout (ours): each lane joins as what it produced, not as its whole ctx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.diagnostics import DiagnosticError
from mlua_swarm.flow.nodes import parse_node
from mlua_swarm.run import Run


async def double(inv: Any) -> Any:
    if inv.input == 3:
        raise ValueError("three is refused")
    return inv.input * 2


def fanout(join: str, collect: Any = None) -> dict[str, Any]:
    node: dict[str, Any] = {
        "kind": "fanout",
        "items": {"op": "path", "at": "$.items"},
        "bind": {"op": "path", "at": "$.item"},
        "body": {"kind": "step", "ref": "d", "in": {"op": "path", "at": "$.item"}, "out": {"op": "path", "at": "$.r"}},
        "join": join,
        "out": {"op": "path", "at": "$.lanes"},
    }
    if collect is not None:
        node["collect"] = collect
    return node


async def run(flow: dict[str, Any], items: list[Any]) -> Any:
    raw = {"id": "fan", "flow": flow, "agents": [{"name": "d", "kind": "rust_fn", "spec": {"fn_id": "d"}}]}
    async with Run(compile_blueprint(raw, base_dir=Path.cwd(), fns={"d": double})) as r:
        return await r.execute({"items": items, "big": list(range(100))})


async def test_without_collect_each_lane_joins_as_its_whole_ctx() -> None:
    result = await run(fanout("all"), [1, 2])
    assert [lane["r"] for lane in result.final_ctx["lanes"]] == [2, 4]
    assert all(lane["big"] == list(range(100)) and lane["items"] == [1, 2] for lane in result.final_ctx["lanes"])


async def test_collect_joins_only_what_the_lane_produced() -> None:
    result = await run(fanout("all", {"op": "path", "at": "$.r"}), [1, 2, 5])
    assert result.final_ctx["lanes"] == [2, 4, 10]


async def test_collect_with_all_settled_wraps_the_collected_value() -> None:
    result = await run(fanout("all_settled", {"op": "path", "at": "$.r"}), [1, 3])
    fulfilled, rejected = result.final_ctx["lanes"]
    assert fulfilled == {"status": "fulfilled", "value": 2}
    assert rejected["status"] == "rejected" and "three is refused" in rejected["reason"]


def test_collect_round_trips_and_a_bad_one_is_located() -> None:
    node = fanout("all", {"op": "path", "at": "$.r"})
    assert parse_node(node).to_json() == node
    raw = {
        "id": "fan",
        "flow": fanout("all", {"op": "nonsense"}),
        "agents": [{"name": "d", "kind": "rust_fn", "spec": {"fn_id": "d"}}],
    }
    with pytest.raises(DiagnosticError) as info:
        compile_blueprint(raw, base_dir=Path.cwd(), fns={"d": double})
    [diag] = info.value.diagnostics
    assert diag.code == "invalid-flow" and "collect" in (diag.location.json_path or "")


def test_the_lua_dsl_passes_collect_through() -> None:
    from mlua_swarm.dsl.runner import build_bp_lua_source

    script = """local F = require "flow_dsl"
return { id = "f", flow = F.fanout { items = F.p "$.items", bind = F.p "$.item", join = "all", out = F.p "$.lanes",
  body = F.step { agent = "d", input = F.p "$.item", out = F.p "$.r" }, collect = F.p "$.r" },
  agents = { { name = "d", kind = "rust_fn", spec = { fn_id = "d" } } } }
"""
    flow = build_bp_lua_source(script, "f.bp.lua").value["flow"]
    assert flow["collect"] == {"op": "path", "at": "$.r"}
    assert "collect" not in build_bp_lua_source(script.replace(', collect = F.p "$.r"', ""), "f.bp.lua").value["flow"]
