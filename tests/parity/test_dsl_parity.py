"""Upstream parity of the DSL and the step naming table (issue #13, items 1-3).

Each test states upstream's behaviour as the reference notes describe it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.diagnostics import DiagnosticError
from mlua_swarm.flow.nodes import parse_node

from ..lua.dsl_helpers import build, path, value_of


def pipeline(body: str) -> Any:
    flow = value_of(f"B.pipeline {{ {body} }}")
    parse_node(flow)
    return flow


# -- item 1: B.from inside a fanout lane's input ------------------------------------------------------


def test_b_from_in_a_lane_input_resolves_to_that_stage_out() -> None:
    flow = pipeline(
        'B.stage "prep" { agent = "prep", out = "$.prepared" },'
        ' B.stage "fan" { fanout = { lanes = { { lane = "lint", input = B.from "prep" }, "test" } } }'
    )
    body = flow["children"][1]["children"][0]["body"]
    assert body["then"]["in"] == path("$.prepared")
    assert body["else"]["in"] == path("$.d.test")


def test_b_from_in_a_lane_input_may_point_forward() -> None:
    flow = pipeline(
        'B.stage "fan" { fanout = { lanes = { { lane = "a", input = B.from "after" } } } },'
        ' B.stage "after" { agent = "w" }'
    )
    assert flow["children"][0]["body"]["in"] == path("$.after")


def test_b_from_an_unknown_stage_in_a_lane_names_it() -> None:
    with pytest.raises(DiagnosticError) as raised:
        build(
            'return { flow = B.pipeline { B.stage "f" {'
            ' fanout = { lanes = { { lane = "a", input = B.from "nope" } } } } } }'
        )
    assert "'nope'" in raised.value.diagnostics[0].message


def test_a_lane_input_that_is_neither_a_path_nor_b_from_is_an_error() -> None:
    with pytest.raises(DiagnosticError) as raised:
        build('return { flow = B.pipeline { B.stage "f" { fanout = { lanes = { { lane = "a", input = 42 } } } } } }')
    message = raised.value.diagnostics[0].message
    assert "lane 'a'" in message and "B.from" in message


# -- item 2: strong and weak step-name claims ---------------------------------------------------------


def compile_flow(tmp_path: Path, flow: dict[str, Any], agents: list[str], **extra: Any) -> Any:
    raw = {
        "id": "naming",
        "flow": flow,
        "agents": [
            {"name": name, "kind": "rust_fn", "spec": {"fn_id": "identity"}, **extra.get(name, {})} for name in agents
        ],
    }
    return compile_blueprint(raw, base_dir=tmp_path)


def step(ref: str, out: str) -> dict[str, Any]:
    return {"kind": "step", "ref": ref, "in": path("$.x"), "out": path(out)}


def seq(*children: Any) -> dict[str, Any]:
    return {"kind": "seq", "children": list(children)}


def naming_codes(compiled: Any) -> list[str]:
    return [d.code for d in compiled.diagnostics if d.code == "step-naming-collision"]


def test_lanes_writing_under_one_root_contest_it_weakly_and_silently(tmp_path: Path) -> None:
    flow = lanes_of_the_fanout_template()
    compiled = compile_blueprint(flow, base_dir=tmp_path)
    assert naming_codes(compiled) == []
    assert compiled.step_names.resolve("lane") is None
    assert compiled.step_names.resolve("lint") == "lint"
    assert "lane" not in compiled.step_names.entries["lint"].aliases


def lanes_of_the_fanout_template() -> dict[str, Any]:
    built = build(
        'return B.bp { id = "lanes",'
        ' flow = B.pipeline { B.stage "checks" { fanout = { lanes = { "lint", "test", "build" } } } },'
        ' agents = { { name = "lint", kind = "rust_fn", spec = { fn_id = "identity" } },'
        ' { name = "test", kind = "rust_fn", spec = { fn_id = "identity" } },'
        ' { name = "build", kind = "rust_fn", spec = { fn_id = "identity" } } } }'
    )
    return built.value


def test_a_shared_one_level_out_is_a_strong_clash_and_warns(tmp_path: Path) -> None:
    compiled = compile_flow(tmp_path, seq(step("a", "$.shared"), step("b", "$.shared")), ["a", "b"])
    assert naming_codes(compiled) == ["step-naming-collision"]
    assert compiled.step_names.resolve("shared") == "a"


def test_a_weak_claim_yields_to_a_step_whose_ref_is_the_name(tmp_path: Path) -> None:
    compiled = compile_flow(tmp_path, seq(step("r", "$.out_r"), step("b", "$.r.x")), ["r", "b"])
    assert naming_codes(compiled) == []
    assert compiled.step_names.resolve("r") == "r"


def test_a_weak_claim_yields_to_a_declared_projection_name_without_an_error(tmp_path: Path) -> None:
    compiled = compile_flow(
        tmp_path, seq(step("a", "$.a_out"), step("b", "$.r.x")), ["a", "b"], a={"meta": {"projection_name": "r"}}
    )
    assert naming_codes(compiled) == []
    assert compiled.step_names.resolve("r") == "r"
    assert compiled.step_names.canonical_of("a") == "r"


def test_an_uncontested_weak_claim_stays_an_alias(tmp_path: Path) -> None:
    compiled = compile_flow(tmp_path, step("only", "$.r.a"), ["only"])
    assert compiled.step_names.resolve("r") == "only"
    assert compiled.step_names.entries["only"].aliases == frozenset({"only", "r"})


def test_a_strong_clash_with_a_declared_projection_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DiagnosticError) as raised:
        compile_flow(
            tmp_path, seq(step("a", "$.a"), step("b", "$.p")), ["a", "b"], a={"meta": {"projection_name": "p"}}
        )
    assert [d.code for d in raised.value.diagnostics] == ["step-naming-collision"]


# -- item 3: the dead-halt warning names the stages and the halt values ---------------------------------


def test_dead_halt_warning_names_the_stages_and_the_halt_values() -> None:
    result = build(
        'return { flow = B.pipeline { B.stage "draft" { agent = "d" }, B.stage "review" { agent = "r" },'
        ' halt_on = { "BLOCKED", "REJECT" } } }'
    )
    (warning,) = result.warnings
    assert warning.code == "dsl-dead-halt"
    assert "[draft, review]" in warning.message
    assert "{BLOCKED, REJECT}" in warning.message
    assert "never halt" in warning.message
