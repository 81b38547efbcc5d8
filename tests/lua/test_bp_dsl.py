"""bp_dsl: B.bp / agent / stage / from and every B.pipeline option, against hand-written JSON."""

from __future__ import annotations

from typing import Any

import pytest

from mlua_swarm.diagnostics import DiagnosticError, Level
from mlua_swarm.flow.nodes import parse_node

from .dsl_helpers import assign, branch, build, lit, path, seq, step, value_of, verdict_eq

EMPTY = seq()


def pipeline(body: str) -> Any:
    flow = value_of(f"B.pipeline {{ {body} }}")
    parse_node(flow)
    return flow


def warnings_of(body: str) -> list[str]:
    result = build(f"return {{ flow = B.pipeline {{ {body} }} }}")
    assert all(w.level is Level.WARN for w in result.warnings)
    return [w.code for w in result.warnings]


def dsl_error(body: str) -> str:
    with pytest.raises(DiagnosticError) as raised:
        build(body)
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.code == "dsl-error"
    return diagnostic.message


def test_bp_returns_its_table_and_agent_maps_md() -> None:
    assert value_of('B.bp { id = "x", agents = {} }') == {"id": "x", "agents": []}
    assert value_of('B.agent { md = "agents/r.md", kind = "lua", spec = { source = "return 1" } }') == {
        "$agent_md": "agents/r.md",
        "kind": "lua",
        "spec": {"source": "return 1"},
    }


def test_stage_sets_the_id_on_a_copy() -> None:
    assert value_of('B.stage "s" { agent = "w", out = "$.o" }') == {"id": "s", "agent": "w", "out": "$.o"}


def test_single_stage_default_wiring_and_gate_shape() -> None:
    flow = pipeline('B.stage "s" { agent = "w", gate = true }, halt_on = { "FAIL" }, done = "$.done"')
    assert flow == seq(
        step("w", "$.d.s", "$.s"),
        branch(verdict_eq("$.s", "FAIL"), assign("$.halted_at", "s"), assign("$.done", True)),
    )


def test_multiple_halt_on_values_combine_with_or_in_order() -> None:
    flow = pipeline('B.stage "s" { agent = "w", gate = true }, halt_on = { "FAIL", "BLOCKED" }')
    assert flow["children"][1]["cond"] == {
        "op": "or",
        "args": [verdict_eq("$.s", "FAIL"), verdict_eq("$.s", "BLOCKED")],
    }


def test_without_opt_in_no_gate_is_emitted_and_stages_splice() -> None:
    flow = pipeline('B.stage "a" { agent = "a" }, B.stage "b" { agent = "b" }, halt_on = { "FAIL" }')
    assert flow == seq(step("a", "$.d.a", "$.a"), seq(step("b", "$.d.b", "$.b"), EMPTY))


def test_gate_false_splices_the_rest_unconditionally() -> None:
    flow = pipeline('B.stage "a" { agent = "a", gate = false }, B.stage "b" { agent = "b" }, done = "$.ok"')
    assert flow == seq(step("a", "$.d.a", "$.a"), seq(step("b", "$.d.b", "$.b"), assign("$.ok", True)))


def test_stage_halt_on_implies_a_gate_with_its_own_values() -> None:
    flow = pipeline('B.stage "a" { agent = "a", halt_on = { "STOP" } }, halt_on = { "FAIL" }')
    assert flow == seq(step("a", "$.d.a", "$.a"), branch(verdict_eq("$.a", "STOP"), assign("$.halted_at", "a"), EMPTY))


def test_gates_nest_the_rest_of_the_pipeline_in_else() -> None:
    flow = pipeline(
        'B.stage "a" { agent = "a", gate = true }, B.stage "b" { agent = "b", gate = true }, halt_on = { "X" }'
    )
    inner = seq(step("b", "$.d.b", "$.b"), branch(verdict_eq("$.b", "X"), assign("$.halted_at", "b"), EMPTY))
    assert flow == seq(step("a", "$.d.a", "$.a"), branch(verdict_eq("$.a", "X"), assign("$.halted_at", "a"), inner))


def test_explicit_gate_false_overrides_a_retry_opt_in() -> None:
    flow = pipeline(
        'B.stage "c" { agent = "c", gate = false, retry = { max = 2, fix = B.stage "f" { agent = "f" } } },'
        ' halt_on = { "FAIL" }'
    )
    assert [child["kind"] for child in flow["children"]] == ["step", "loop", "seq"]


def test_gate_default_auto_gates_every_non_fanout_stage() -> None:
    flow = pipeline(
        'B.stage "a" { agent = "a" }, B.stage "b" { agent = "b", gate = false },'
        ' halt_on = { "FAIL" }, gate_default = "auto"'
    )
    rest = seq(step("b", "$.d.b", "$.b"), EMPTY)
    assert flow == seq(step("a", "$.d.a", "$.a"), branch(verdict_eq("$.a", "FAIL"), assign("$.halted_at", "a"), rest))


def test_gate_default_auto_without_halt_values_gates_nothing() -> None:
    assert pipeline('B.stage "a" { agent = "a" }, gate_default = "auto"') == seq(step("a", "$.d.a", "$.a"), EMPTY)


def test_gate_default_unknown_value_errors() -> None:
    message = dsl_error('return { flow = B.pipeline { B.stage "a" { agent = "a" }, gate_default = "sometimes" } }')
    assert 'gate_default must be "explicit" or "auto"' in message
    assert "sometimes" in message


def test_retry_expands_to_step_loop_gate() -> None:
    flow = pipeline(
        'B.stage "check" { agent = "checker", retry = { max = 3, fix = B.stage "fix" { agent = "fixer" } } },'
        ' halt_on = { "FAIL" }'
    )
    check = step("checker", "$.d.check", "$.check")
    loop = {
        "kind": "loop",
        "counter": path("$.check_n"),
        "cond": {
            "op": "and",
            "args": [{"op": "lt", "lhs": path("$.check_n"), "rhs": lit(3)}, verdict_eq("$.check", "FAIL")],
        },
        "max": 4,
        "body": seq(step("fixer", "$.d.fix", "$.fix"), check),
    }
    gate = branch(verdict_eq("$.check", "FAIL"), assign("$.halted_at", "check"), EMPTY)
    assert flow == seq(check, loop, gate)


def test_retry_counter_override_changes_counter_and_lt_operand() -> None:
    flow = pipeline(
        'B.stage "c" { agent = "c", retry = { max = 2, counter = "$.tries",'
        ' fix = B.stage "f" { agent = "f", input = B.from "c", out = "$.patch" } } }, halt_on = { "FAIL" }'
    )
    loop = flow["children"][1]
    assert loop["counter"] == path("$.tries")
    assert loop["cond"]["args"][0] == {"op": "lt", "lhs": path("$.tries"), "rhs": lit(2)}
    assert loop["body"]["children"][0] == step("f", "$.c", "$.patch")


def test_retry_needs_a_fix_stage_and_a_positive_max() -> None:
    assert "retry.fix must be a stage" in dsl_error(
        'return { B.pipeline { B.stage "c" { agent = "c", retry = { max = 2, fix = { agent = "f" } } } } }'
    )
    assert "retry.max must be a positive integer" in dsl_error(
        'return { B.pipeline { B.stage "c" { agent = "c", retry = { fix = B.stage "f" { agent = "f" } } } } }'
    )


def test_chain_wires_each_stage_to_the_previous_out() -> None:
    flow = pipeline(
        'B.stage "a" { agent = "a" }, B.stage "b" { agent = "b" }, B.stage "c" { agent = "c" }, chain = true'
    )
    assert flow == seq(step("a", "$.d.a", "$.a"), seq(step("b", "$.a", "$.b"), seq(step("c", "$.b", "$.c"), EMPTY)))


def test_chain_respects_explicit_input_and_b_from() -> None:
    flow = pipeline(
        'B.stage "a" { agent = "a", out = "$.first" }, B.stage "b" { agent = "b", input = "$.d.other" },'
        ' B.stage "c" { agent = "c", input = B.from "a" }, B.stage "d" { agent = "d" }, chain = true'
    )
    b = flow["children"][1]
    c = b["children"][1]
    d = c["children"][1]
    assert flow["children"][0] == step("a", "$.d.a", "$.first")
    assert b["children"][0] == step("b", "$.d.other", "$.b")
    assert c["children"][0] == step("c", "$.first", "$.c")
    assert d["children"][0] == step("d", "$.c", "$.d")


def test_chain_omitted_keeps_the_d_default() -> None:
    flow = pipeline('B.stage "a" { agent = "a" }, B.stage "b" { agent = "b" }')
    assert flow["children"][1]["children"][0] == step("b", "$.d.b", "$.b")


def test_from_resolves_forward_references() -> None:
    flow = pipeline('B.stage "a" { agent = "a", input = B.from "b" }, B.stage "b" { agent = "b", out = "$.x.y" }')
    assert flow["children"][0] == step("a", "$.x.y", "$.a")


def test_from_an_undefined_stage_names_it() -> None:
    message = dsl_error('return { B.pipeline { B.stage "a" { agent = "a", input = B.from "ghost" } } }')
    assert "ghost" in message


def test_halted_at_defaults_and_can_be_moved() -> None:
    default = pipeline('B.stage "a" { agent = "a", gate = true }, halt_on = { "X" }')
    moved = pipeline('B.stage "a" { agent = "a", gate = true }, halt_on = { "X" }, halted_at = "$.stop.at"')
    assert default["children"][1]["then"] == assign("$.halted_at", "a")
    assert moved["children"][1]["then"] == assign("$.stop.at", "a")


def test_skip_on_wraps_the_stage_in_a_guard() -> None:
    flow = pipeline('B.stage "a" { agent = "a", input = "$.prev", skip_on = { "SKIP", "N/A" } }')
    guard = branch(
        {"op": "in", "needle": path('$.prev.parts["verdict"]'), "haystack": lit(["SKIP", "N/A"])},
        EMPTY,
        seq(step("a", "$.prev", "$.a")),
    )
    assert flow == seq(guard, EMPTY)


def test_skip_on_goes_inside_and_the_halt_gate_outside() -> None:
    flow = pipeline('B.stage "a" { agent = "a", skip_on = { "SKIP" }, halt_on = { "FAIL" } }')
    assert [child["kind"] for child in flow["children"]] == ["branch", "branch"]
    assert flow["children"][0]["cond"]["op"] == "in"
    assert flow["children"][1] == branch(verdict_eq("$.a", "FAIL"), assign("$.halted_at", "a"), EMPTY)


def test_empty_skip_on_is_identical_to_absent() -> None:
    assert pipeline('B.stage "a" { agent = "a", skip_on = {} }') == pipeline('B.stage "a" { agent = "a" }')


def test_skip_on_wraps_a_fanout_node() -> None:
    flow = pipeline('B.stage "f" { input = "$.xs", fanout = { agent = "w" }, skip_on = { "SKIP" } }')
    guard = flow["children"][0]
    assert guard["cond"]["needle"] == path('$.xs.parts["verdict"]')
    assert guard["else"]["children"][0]["kind"] == "fanout"


def test_dead_halt_warns_exactly_once_and_still_builds() -> None:
    assert warnings_of('B.stage "a" { agent = "a" }, B.stage "b" { agent = "b" }, halt_on = { "FAIL" }') == [
        "dsl-dead-halt"
    ]


@pytest.mark.parametrize(
    "body",
    [
        'B.stage "a" { agent = "a", gate = true }, halt_on = { "FAIL" }',
        'B.stage "a" { agent = "a" }, halt_on = { "FAIL" }, gate_default = "auto"',
        'B.stage "a" { agent = "a", retry = { max = 1, fix = B.stage "f" { agent = "f" } } }, halt_on = { "FAIL" }',
        'B.stage "a" { agent = "a" }, halted_at = "$.h"',
        'B.stage "a" { agent = "a" }, done = "$.done"',
    ],
    ids=["gate", "auto", "retry", "halted_at-only", "done-only"],
)
def test_no_dead_halt_warning_when_something_gates(body: str) -> None:
    assert warnings_of(body) == []


def test_a_gate_on_a_fanout_stage_warns_but_is_emitted() -> None:
    body = 'B.stage "f" { input = "$.xs", fanout = { agent = "w" }, gate = true }, halt_on = { "X" }'
    assert warnings_of(body) == ["dsl-gate-on-fanout"]
    flow = pipeline(body)
    assert flow["children"][1] == branch(verdict_eq("$.f", "X"), assign("$.halted_at", "f"), EMPTY)


def test_warnings_carry_the_line_of_the_pipeline_call() -> None:
    result = build('local x = 1\n\nreturn { flow = B.pipeline { B.stage "a" { agent = "a" }, halt_on = { "X" } } }')
    (warning,) = result.warnings
    assert (warning.location.file, warning.location.line) == ("t.bp.lua", 5)


def test_auto_cascade_skips_fanout_stages() -> None:
    body = 'B.stage "f" { input = "$.xs", fanout = { agent = "w" } }, halt_on = { "X" }, gate_default = "auto"'
    assert warnings_of(body) == ["dsl-dead-halt"]
    assert [child["kind"] for child in pipeline(body)["children"]] == ["fanout", "seq"]


def test_homogeneous_fanout_defaults() -> None:
    flow = pipeline('B.stage "reviews" { fanout = { agent = "reviewer" } }')
    assert flow["children"][0] == {
        "kind": "fanout",
        "items": path("$.d.reviews"),
        "bind": path("$.item"),
        "join": "all",
        "out": path("$.reviews"),
        "body": step("reviewer", "$.item", "$.branch_out"),
    }


def test_homogeneous_fanout_overrides() -> None:
    flow = pipeline(
        'B.stage "r" { out = "$.all", fanout = { agent = "w", items = F.p "$.files", bind = "$.file",'
        ' join = "all_settled", lane_out = "$.note" } }'
    )
    assert flow["children"][0] == {
        "kind": "fanout",
        "items": path("$.files"),
        "bind": path("$.file"),
        "join": "all_settled",
        "out": path("$.all"),
        "body": step("w", "$.file", "$.note"),
    }


def test_fanout_items_from_b_from_is_a_path_and_raw_items_are_literal() -> None:
    from_flow = pipeline('B.stage "a" { agent = "a" }, B.stage "f" { fanout = { agent = "w", items = B.from "a" } }')
    raw_flow = pipeline('B.stage "f" { fanout = { agent = "w", items = "$.not.a.path" } }')
    list_flow = pipeline('B.stage "f" { fanout = { agent = "w", items = { "x", "y" } } }')
    assert from_flow["children"][1]["children"][0]["items"] == path("$.a")
    assert raw_flow["children"][0]["items"] == lit("$.not.a.path")
    assert list_flow["children"][0]["items"] == lit(["x", "y"])


def test_heterogeneous_fanout_cascades_over_lanes() -> None:
    flow = pipeline(
        'B.stage "lanes" { fanout = { lanes = { "lint", { lane = "test", agent = "tester", input = "$.suite" },'
        ' { lane = "docs", out = "$.docs_out" } } } }'
    )
    eq = lambda lane: {"op": "eq", "lhs": path("$.item"), "rhs": lit(lane)}  # noqa: E731
    assert flow["children"][0] == {
        "kind": "fanout",
        "items": lit(["lint", "test", "docs"]),
        "bind": path("$.item"),
        "join": "all",
        "out": path("$.lanes"),
        "body": branch(
            eq("lint"),
            step("lint", "$.d.lint", "$.lane.lint"),
            branch(eq("test"), step("tester", "$.suite", "$.lane.test"), step("docs", "$.d.docs", "$.docs_out")),
        ),
    }


def test_a_single_lane_is_a_bare_step() -> None:
    flow = pipeline('B.stage "one" { fanout = { lanes = { "only" } } }')
    assert flow["children"][0]["body"] == step("only", "$.d.only", "$.lane.only")


def test_sugar_matches_a_hand_written_fanout() -> None:
    sugar = pipeline('B.stage "rs" { input = "$.xs", fanout = { agent = "w", join = "any" } }')
    hand = value_of(
        'F.seq { F.fanout { items = F.p "$.xs", bind = F.p "$.item", join = "any", out = F.p "$.rs",'
        ' body = F.step { agent = "w", input = F.p "$.item", out = F.p "$.branch_out" } }, F.seq {} }'
    )
    assert sugar == hand


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        (
            'B.stage "f" { fanout = { agent = "w" }, retry = { max = 1, fix = B.stage "x" { agent = "x" } } }',
            "retry is not supported on a fanout stage",
        ),
        ('B.stage "f" { agent = "a", fanout = { agent = "w" } }', "either agent or fanout"),
        ('B.stage "f" { fanout = { join = "all" } }', "fanout needs an agent or lanes"),
        ('B.stage "f" { fanout = { agent = "w", join = "first" } }', "fanout.join must be one of"),
        ('B.stage "f" { fanout = { lanes = { a = "x" } } }', "ordered list, not a table with keys"),
        ('B.stage "f" { fanout = { lanes = {} } }', "fanout.lanes is empty"),
        ('B.stage "f" { fanout = { lanes = { 42 } } }', "fanout.lanes[1] must be a lane name"),
        ('B.stage "f" { fanout = { agent = "w", lanes = { "a" } } }', "agent or lanes, not both"),
    ],
    ids=["retry", "agent+fanout", "neither", "join", "keyed", "empty", "ill-typed", "both"],
)
def test_fanout_validation_errors(stage: str, message: str) -> None:
    assert message in dsl_error(f"return {{ B.pipeline {{ {stage} }} }}")


def test_a_stage_without_id_is_an_error() -> None:
    assert "has no id" in dsl_error('return { B.pipeline { { agent = "a" } } }')


def test_dsl_output_keeps_agent_md_refs_unexpanded() -> None:
    value = build('return B.bp { id = "x", flow = F.seq {}, agents = { B.agent { md = "agents/missing.md" } } }').value
    assert value["agents"] == [{"$agent_md": "agents/missing.md"}]


VERDICT_LOOP_SAMPLE: dict[str, Any] = {
    "id": "lint-fix-loop",
    "flow": {
        "kind": "seq",
        "children": [
            {"kind": "step", "ref": "checker", "in": path("$.d.code"), "out": path("$.check")},
            {
                "kind": "loop",
                "counter": path("$.tries"),
                "max": 3,
                "cond": {
                    "op": "and",
                    "args": [
                        {"op": "lt", "lhs": path("$.tries"), "rhs": lit(3)},
                        {"op": "eq", "lhs": path('$.check.parts["verdict"]'), "rhs": lit("FAIL")},
                    ],
                },
                "body": seq(step("fixer", "$.check.out", "$.patch"), step("checker", "$.patch", "$.check")),
            },
            branch(
                {"op": "eq", "lhs": path("$.check.parts.verdict"), "rhs": lit("PASS")},
                step("publisher", "$.check.out", "$.published"),
                assign("$.halted_at", "checker"),
            ),
        ],
    },
    "operators": [{"name": "seat-a", "kind": "automate"}],
    "agents": [
        {
            "name": "checker",
            "kind": "operator",
            "spec": {"operator_ref": "seat-a"},
            "profile": {"system_prompt": "Stage part `verdict` = PASS or FAIL.", "tools": []},
            "verdict": {"channel": "part", "values": ["PASS", "FAIL"]},
        },
        {"name": "fixer", "kind": "operator", "spec": {"operator_ref": "seat-a"}, "profile": {"tools": []}},
    ],
    "check_policy": "warn",
    "metadata": {"lints": {"verdict-value-unhandled": "deny"}},
}

VERDICT_LOOP_SCRIPT = """
local S = function(agent, input, out) return F.step { agent = agent, input = F.p(input), out = F.p(out) } end
return B.bp {
  id = "lint-fix-loop",
  flow = F.seq {
    S("checker", "$.d.code", "$.check"),
    F.loop_ {
      counter = F.p "$.tries", max = 3,
      cond = F.p("$.tries"):lt(3):And(F.p('$.check.parts["verdict"]'):eq("FAIL")),
      body = F.seq { S("fixer", "$.check.out", "$.patch"), S("checker", "$.patch", "$.check") },
    },
    F.branch {
      cond = F.p("$.check.parts.verdict"):eq("PASS"),
      on_true = S("publisher", "$.check.out", "$.published"),
      on_false = F.assign { at = F.p "$.halted_at", value = "checker" },
    },
  },
  operators = { { name = "seat-a", kind = "automate" } },
  agents = {
    { name = "checker", kind = "operator", spec = { operator_ref = "seat-a" },
      profile = { system_prompt = "Stage part `verdict` = PASS or FAIL.", tools = {} },
      verdict = { channel = "part", values = { "PASS", "FAIL" } } },
    { name = "fixer", kind = "operator", spec = { operator_ref = "seat-a" }, profile = { tools = {} } },
  },
  check_policy = "warn",
  metadata = { lints = { ["verdict-value-unhandled"] = "deny" } },
}
"""


def test_dsl_reproduces_the_verdict_loop_sample() -> None:
    assert build(VERDICT_LOOP_SCRIPT).value == VERDICT_LOOP_SAMPLE
