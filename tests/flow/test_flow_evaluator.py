"""The async evaluator: node semantics, errors, try rollback, loops, skip markers, run failures."""

from __future__ import annotations

from typing import Any

import pytest
from flow_helpers import NOOP, Agents, assign, branch, fanout, lit, loop, p, seq, step, try_

from mlua_swarm.flow.errors import (
    ExprTypeError,
    FlowFailed,
    NonBoolCond,
    PathNotFound,
    PathWriteError,
    StepBlocked,
    StepError,
    StepFailed,
)
from mlua_swarm.flow.evaluator import run_flow
from mlua_swarm.flow.nodes import parse_node
from mlua_swarm.flow.skip import Skipped


async def run(flow: dict[str, Any], ctx: dict[str, Any], dispatcher: Any = None, **kw: Any) -> dict[str, Any]:
    return await run_flow(parse_node(flow), ctx, dispatcher or Agents(), **kw)


async def fails(flow: dict[str, Any], ctx: dict[str, Any], dispatcher: Any = None) -> FlowFailed:
    with pytest.raises(FlowFailed) as info:
        await run(flow, ctx, dispatcher)
    return info.value


def blocked(value: Any) -> Any:
    def fn(_: Any) -> Any:
        raise StepBlocked(value)

    return fn


def failed(message: str) -> Any:
    def fn(_: Any) -> Any:
        raise StepFailed(message)

    return fn


async def test_step_dispatches_input_and_writes_out() -> None:
    agents = Agents(up=lambda s: s.upper())
    ctx = await run(step("up", "$.d.text", "$.r.text"), {"d": {"text": "hi"}}, agents)
    assert ctx == {"d": {"text": "hi"}, "r": {"text": "HI"}}
    assert agents.calls == [("up", "hi")]


async def test_caller_ctx_is_not_mutated() -> None:
    start = {"d": {"x": 1}}
    ctx = await run(seq(assign("$.d.y", lit(2)), assign("$.z", lit(3))), start)
    assert start == {"d": {"x": 1}}
    assert ctx == {"d": {"x": 1, "y": 2}, "z": 3}


async def test_step_meta_envelope_reaches_the_dispatcher() -> None:
    envelope = {"$step_meta": {"inline": {"model": "m"}}, "$in": "task"}
    agents = Agents(a=lambda v: "ok")
    await run(step("a", lit(envelope), "$.o"), {}, agents)
    assert agents.calls == [("a", envelope)]


async def test_skip_marker_leaves_out_untouched() -> None:
    agents = Agents(a=lambda v: Skipped("why"), b=lambda v: "after")
    ctx = await run(seq(step("a", "$.in", "$.o"), step("b", "$.in", "$.p")), {"in": 1, "o": "prior"}, agents)
    assert ctx == {"in": 1, "o": "prior", "p": "after"}


async def test_blocked_step_fails_the_run_with_breadcrumbs() -> None:
    agents = Agents(a=lambda v: "A", gate=blocked({"verdict": "BLOCKED"}), c=lambda v: "C")
    flow = seq(step("a", "$.in", "$.a"), step("gate", "$.a", "$.g"), step("c", "$.in", "$.c"))
    err = await fails(flow, {"in": 0}, agents)
    assert err.failed_step == "gate"
    assert err.verdict_value == {"verdict": "BLOCKED"}
    assert err.partial_ctx == {"in": 0, "a": "A"}
    assert err.message == 'step \'gate\': blocked: {"verdict":"BLOCKED"}'
    assert agents.refs() == ["a", "gate"]
    assert isinstance(err.__cause__, StepError)
    assert err.to_json()["failed_step"] == "gate"


async def test_failed_step_and_unexpected_dispatcher_errors_are_step_errors() -> None:
    err = await fails(step("a"), {"in": 1}, Agents(a=failed("worker crashed")))
    assert err.message == "step 'a': worker crashed" and err.failed_step == "a" and err.verdict_value is None

    def boom(_: Any) -> Any:
        raise RuntimeError("bug")

    err = await fails(step("a"), {"in": 1}, Agents(a=boom))
    assert err.message == "step 'a': RuntimeError: bug"


async def test_missing_input_path_fails_without_dispatch() -> None:
    agents = Agents(a=lambda v: v)
    err = await fails(step("a", "$.nope"), {}, agents)
    assert isinstance(err.__cause__, PathNotFound)
    assert err.failed_step is None
    assert agents.calls == []


async def test_seq_runs_in_order_on_a_shared_ctx() -> None:
    agents = Agents(inc=lambda v: v + 1)
    flow = seq(step("inc", "$.n", "$.n"), step("inc", "$.n", "$.n"), step("inc", "$.n", "$.m"))
    assert await run(flow, {"n": 0}, agents) == {"n": 2, "m": 3}


@pytest.mark.parametrize(("flag", "taken"), [(True, "yes"), (False, "no")])
async def test_branch(flag: bool, taken: str) -> None:
    flow = branch(p("$.flag"), assign("$.took", lit("yes")), assign("$.took", lit("no")))
    assert (await run(flow, {"flag": flag}))["took"] == taken


@pytest.mark.parametrize("cond", [None, 0, 1, "true", [], {}])
async def test_branch_cond_must_be_boolean(cond: Any) -> None:
    err = await fails(branch(lit(cond), NOOP, NOOP), {})
    assert isinstance(err.__cause__, NonBoolCond)


async def test_loop_counts_iterations_and_stops_on_falsy_cond() -> None:
    agents = Agents(fix=lambda v: v + 1)
    flow = loop("$.n", {"op": "lt", "lhs": p("$.x"), "rhs": lit(3)}, step("fix", "$.x", "$.x"), 10)
    assert await run(flow, {"x": 0}, agents) == {"x": 3, "n": 3}


async def test_loop_respects_max_and_overwrites_counter_written_by_body() -> None:
    flow = loop("$.n", lit(0), assign("$.n", lit("body wrote")), 4)
    assert await run(flow, {}) == {"n": 4}


async def test_loop_max_zero_runs_nothing_and_sets_counter() -> None:
    agents = Agents(a=lambda v: v)
    assert await run(loop("$.i", lit(True), step("a"), 0), {"in": 1}, agents) == {"in": 1, "i": 0}
    assert agents.calls == []


async def test_loop_cond_sees_body_writes() -> None:
    flow = loop("$.n", {"op": "not", "arg": {"op": "exists", "arg": p("$.done")}}, assign("$.done", lit(1)), 5)
    assert await run(flow, {}) == {"done": 1, "n": 1}


async def test_loop_cond_on_missing_path_raises() -> None:
    err = await fails(loop("$.n", {"op": "eq", "lhs": p("$.verdict"), "rhs": lit("FAIL")}, NOOP, 3), {})
    assert isinstance(err.__cause__, PathNotFound)
    assert err.partial_ctx == {"n": 0}


async def test_assign_writes_and_shared_values_never_change() -> None:
    flow = seq(
        assign("$.b", p("$.a")),
        assign("$.a.x", lit(2)),
        assign("$.whole", p("$")),
        assign("$.n", {"op": "add", "lhs": p("$.a.x"), "rhs": lit(1)}),
    )
    ctx = await run(flow, {"a": {"x": 1}})
    assert ctx["b"] == {"x": 1}
    assert ctx["a"] == {"x": 2}
    assert ctx["whole"] == {"a": {"x": 2}, "b": {"x": 1}}
    assert ctx["n"] == 3.0


async def test_assign_root_replaces_ctx() -> None:
    assert await run(assign("$", lit({"fresh": True})), {"old": 1}) == {"fresh": True}


async def test_write_through_non_object_fails() -> None:
    err = await fails(assign("$.s.k", lit(1)), {"s": "text"})
    assert isinstance(err.__cause__, PathWriteError)
    assert err.partial_ctx == {"s": "text"}


async def test_externs_reach_call_extern() -> None:
    flow = assign("$.o", {"op": "call_extern", "ref": "double", "args": [p("$.x")]})
    assert (await run(flow, {"x": 4}, externs={"double": lambda v: v * 2}))["o"] == 8


async def test_try_rolls_back_every_body_write_and_records_error() -> None:
    agents = Agents(deploy=lambda v: f"deployed {v}", smoke=blocked("smoke red"), notify=lambda v: f"sent: {v}")
    flow = try_(
        seq(
            step("deploy", "$.d.release", "$.deployed"),
            assign("$.d.extra", lit(1)),
            step("smoke", "$.deployed", "$.smoke"),
        ),
        seq(assign("$.rolled_back", lit(True)), step("notify", "$.failure", "$.notified")),
        err_at="$.failure",
    )
    ctx = await run(flow, {"d": {"release": "v1"}}, agents)
    assert ctx == {
        "d": {"release": "v1"},
        "failure": "step 'smoke': blocked: smoke red",
        "rolled_back": True,
        "notified": "sent: step 'smoke': blocked: smoke red",
    }
    assert agents.refs() == ["deploy", "smoke", "notify"]


async def test_try_success_keeps_body_writes_and_skips_catch() -> None:
    flow = try_(assign("$.x", lit(1)), assign("$.caught", lit(True)), err_at="$.e")
    assert await run(flow, {}) == {"x": 1}


async def test_try_catches_expression_errors_without_err_at() -> None:
    flow = try_(seq(assign("$.x", lit(1)), assign("$.y", {"op": "len", "arg": lit(5)})), assign("$.caught", lit(True)))
    assert await run(flow, {"k": 0}) == {"k": 0, "caught": True}


async def test_try_rollback_restores_a_replaced_root() -> None:
    flow = try_(seq(assign("$", lit({"other": 1})), assign("$.z", p("$.missing"))), NOOP, err_at="$.e")
    ctx = await run(flow, {"keep": 1})
    assert ctx["keep"] == 1 and "other" not in ctx
    assert "$.missing" in ctx["e"]


async def test_try_catch_error_fails_the_run() -> None:
    agents = Agents(a=failed("first"), b=failed("second"))
    err = await fails(try_(step("a"), step("b"), err_at="$.e"), {"in": 0}, agents)
    assert err.failed_step == "b"
    assert err.partial_ctx == {"in": 0, "e": "step 'a': first"}


async def test_skip_is_not_an_error_inside_try() -> None:
    agents = Agents(a=lambda v: Skipped(None))
    assert await run(try_(step("a"), assign("$.caught", lit(True))), {"in": 1}, agents) == {"in": 1}


async def test_nested_try_inner_rollback_only() -> None:
    inner = try_(seq(assign("$.inner", lit(1)), assign("$.x", p("$.missing"))), assign("$.inner_caught", lit(True)))
    flow = try_(seq(assign("$.outer", lit(1)), inner), assign("$.outer_caught", lit(True)))
    assert await run(flow, {}) == {"outer": 1, "inner_caught": True}


async def test_fanout_items_must_be_an_array() -> None:
    err = await fails(fanout(lit({"a": 1}), NOOP, "all"), {})
    assert isinstance(err.__cause__, ExprTypeError)


async def test_verdict_retry_loop_example() -> None:
    verdicts = iter(["FAIL", "FAIL", "PASS"])

    def checker(code: Any) -> Any:
        return {"out": f"report on {code}", "parts": {"verdict": next(verdicts)}}

    agents = Agents(checker=checker, fixer=lambda report: "patched", publisher=lambda v: "published")
    flow = parse_node(
        {
            "kind": "seq",
            "children": [
                step("checker", "$.d.code", "$.check"),
                loop(
                    "$.tries",
                    {
                        "op": "and",
                        "args": [
                            {"op": "lt", "lhs": p("$.tries"), "rhs": lit(3)},
                            {"op": "eq", "lhs": p('$.check.parts["verdict"]'), "rhs": lit("FAIL")},
                        ],
                    },
                    seq(step("fixer", "$.check.out", "$.patch"), step("checker", "$.patch", "$.check")),
                    3,
                ),
                branch(
                    {"op": "eq", "lhs": p("$.check.parts.verdict"), "rhs": lit("PASS")},
                    step("publisher", "$.check.out", "$.published"),
                    assign("$.halted_at", lit("checker")),
                ),
            ],
        }
    )
    ctx = await run_flow(flow, {"d": {"code": "src"}}, agents)
    assert ctx["tries"] == 2
    assert ctx["published"] == "published"
    assert agents.refs() == ["checker", "fixer", "checker", "fixer", "checker", "publisher"]


async def test_rerunning_a_parsed_flow_never_sees_earlier_writes() -> None:
    flow = parse_node(
        seq(assign("$.cfg", lit({"a": {"b": 1}})), assign("$.cfg.a.b", lit(2)), assign("$.cfg.c", lit(3)))
    )
    first = await run_flow(flow, {}, Agents())
    second = await run_flow(flow, {}, Agents())
    assert first == second == {"cfg": {"a": {"b": 2}, "c": 3}}
    assert flow.to_json()["children"][0]["value"] == lit({"a": {"b": 1}})


async def test_lane_bind_at_root_replaces_the_lane_ctx() -> None:
    flow = fanout(lit([{"k": 1}, {"k": 2}]), assign("$.seen", p("$.k")), "all", bind="$")
    ctx = await run_flow(parse_node(flow), {"parent": True}, Agents())
    assert ctx["rs"] == [{"k": 1, "seen": 1}, {"k": 2, "seen": 2}]
