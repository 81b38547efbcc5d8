"""flow_dsl: every expression op and node builder, compared with hand-written JSON."""

from __future__ import annotations

from typing import Any

import pytest

from mlua_swarm.flow.exprs import parse_expr
from mlua_swarm.flow.nodes import parse_node

from .dsl_helpers import ast_of, lit, path, value_of

P = path("$.a")
Q = path("$.b")

EXPRS: list[tuple[str, str, Any]] = [
    ("path", 'F.p "$.a"', P),
    ("lit", "F.lit(3)", lit(3)),
    ("eq", 'F.p("$.a"):eq("x")', {"op": "eq", "lhs": P, "rhs": lit("x")}),
    ("ne", 'F.p("$.a"):ne(F.p "$.b")', {"op": "ne", "lhs": P, "rhs": Q}),
    ("lt", 'F.p("$.a"):lt(1)', {"op": "lt", "lhs": P, "rhs": lit(1)}),
    ("lte", 'F.p("$.a"):lte(1.5)', {"op": "lte", "lhs": P, "rhs": lit(1.5)}),
    ("gt", 'F.p("$.a"):gt(0)', {"op": "gt", "lhs": P, "rhs": lit(0)}),
    ("gte", 'F.p("$.a"):gte(0)', {"op": "gte", "lhs": P, "rhs": lit(0)}),
    ("not", 'F.p("$.a"):Not()', {"op": "not", "arg": P}),
    ("and", 'F.p("$.a"):And(F.p "$.b")', {"op": "and", "args": [P, Q]}),
    ("or", 'F.p("$.a"):Or(true)', {"op": "or", "args": [P, lit(True)]}),
    ("exists", 'F.p("$.a"):exists()', {"op": "exists", "arg": P}),
    ("add", 'F.p("$.a") + 1', {"op": "add", "lhs": P, "rhs": lit(1)}),
    ("sub", '10 - F.p("$.a")', {"op": "sub", "lhs": lit(10), "rhs": P}),
    ("mul", 'F.p("$.a") * F.p("$.b")', {"op": "mul", "lhs": P, "rhs": Q}),
    ("div", 'F.p("$.a") / 2', {"op": "div", "lhs": P, "rhs": lit(2)}),
    ("mod", 'F.p("$.a") % 3', {"op": "mod", "lhs": P, "rhs": lit(3)}),
    ("len", 'F.p("$.a"):len()', {"op": "len", "arg": P}),
    ("in", 'F.lit({ "x", "y" }):contains(F.p "$.a")', {"op": "in", "needle": P, "haystack": lit(["x", "y"])}),
    (
        "call_extern",
        'F.call_extern("score", { F.p "$.a", 2, "s" })',
        {"op": "call_extern", "ref": "score", "args": [P, lit(2), lit("s")]},
    ),
]


def test_the_table_covers_all_twenty_ops() -> None:
    assert len({op for op, _, _ in EXPRS}) == 20
    assert {op for op, _, _ in EXPRS} == {ast["op"] for _, _, ast in EXPRS}


@pytest.mark.parametrize(("op", "lua", "expected"), EXPRS, ids=[op for op, _, _ in EXPRS])
def test_every_expr_op_builds_the_exact_ast(op: str, lua: str, expected: Any) -> None:
    built = ast_of(lua)
    assert built == expected
    parse_expr(built)


def test_and_or_chains_nest_two_at_a_time() -> None:
    assert ast_of('F.p("$.a"):And(1):And(2)') == {
        "op": "and",
        "args": [{"op": "and", "args": [P, lit(1)]}, lit(2)],
    }


def test_all_and_any_are_single_n_ary_nodes() -> None:
    assert ast_of('F.all { F.p "$.a", F.p "$.b", true }') == {"op": "and", "args": [P, Q, lit(True)]}
    assert ast_of('F.any { F.p "$.a", 1 }') == {"op": "or", "args": [P, lit(1)]}
    assert ast_of("F.all {}") == {"op": "and", "args": []}


def test_raw_passes_an_ast_through_and_unwrap_lits_raw_values() -> None:
    assert ast_of('F.raw { op = "len", arg = { op = "path", at = "$.a" } }') == {"op": "len", "arg": P}
    assert ast_of('"$.a"') == lit("$.a")
    assert ast_of("{ 1, 2 }") == lit([1, 2])


def test_bracket_paths_pass_through_and_parse() -> None:
    built = ast_of('F.p(\'$.gate.parts["verdict"]\'):eq("PASS")')
    assert built["lhs"] == path('$.gate.parts["verdict"]')
    parse_expr(built)


def test_integers_stay_integers_and_floats_stay_floats() -> None:
    assert value_of("{ 1, 1.0, 2^2, 7 // 2, 3 / 2 }") == [1, 1.0, 4.0, 3, 1.5]
    assert [type(v) for v in value_of("{ 1, 1.0 }")] == [int, float]


def test_empty_tables_are_arrays_and_f_obj_is_an_object() -> None:
    assert value_of("{ empty = {}, obj = F.obj(), nested = { F.obj() } }") == {
        "empty": [],
        "obj": {},
        "nested": [{}],
    }


def test_lookalikes_of_the_object_marker_are_left_alone() -> None:
    assert value_of('{ __mse_empty_object__ = "yes" }') == {"__mse_empty_object__": "yes"}
    assert value_of("{ __mse_empty_object__ = true, x = 1 }") == {"__mse_empty_object__": True, "x": 1}


NODES: list[tuple[str, str, Any]] = [
    (
        "step",
        'F.step { id = "ignored", agent = "w", input = F.p "$.d.x", out = F.p "$.x" }',
        {"kind": "step", "ref": "w", "in": path("$.d.x"), "out": path("$.x")},
    ),
    (
        "seq",
        'F.seq { F.assign { at = F.p "$.a", value = 1 }, F.seq {} }',
        {
            "kind": "seq",
            "children": [{"kind": "assign", "at": P, "value": lit(1)}, {"kind": "seq", "children": []}],
        },
    ),
    (
        "branch",
        'F.branch { cond = F.p("$.a"):eq(1), on_true = F.seq {},'
        ' on_false = F.assign { at = F.p "$.b", value = F.obj() } }',
        {
            "kind": "branch",
            "cond": {"op": "eq", "lhs": P, "rhs": lit(1)},
            "then": {"kind": "seq", "children": []},
            "else": {"kind": "assign", "at": Q, "value": lit({})},
        },
    ),
    (
        "loop",
        'F.loop_ { counter = F.p "$.n", cond = F.p("$.n"):lt(3), max = 3, body = F.seq {} }',
        {
            "kind": "loop",
            "counter": path("$.n"),
            "cond": {"op": "lt", "lhs": path("$.n"), "rhs": lit(3)},
            "max": 3,
            "body": {"kind": "seq", "children": []},
        },
    ),
    (
        "fanout",
        'F.fanout { items = F.p "$.xs", bind = F.p "$.x", join = "all_settled", out = F.p "$.rs",'
        ' body = F.step { agent = "w", input = F.p "$.x", out = F.p "$.r" } }',
        {
            "kind": "fanout",
            "items": path("$.xs"),
            "bind": path("$.x"),
            "join": "all_settled",
            "out": path("$.rs"),
            "body": {"kind": "step", "ref": "w", "in": path("$.x"), "out": path("$.r")},
        },
    ),
    (
        "try",
        'F.try_ { body = F.seq {}, catch = F.seq {}, err_at = F.p "$.err" }',
        {
            "kind": "try",
            "body": {"kind": "seq", "children": []},
            "catch": {"kind": "seq", "children": []},
            "err_at": path("$.err"),
        },
    ),
    (
        "assign",
        'F.assign { at = F.p "$.a", value = F.p("$.b") + 1 }',
        {"kind": "assign", "at": P, "value": {"op": "add", "lhs": Q, "rhs": lit(1)}},
    ),
]


@pytest.mark.parametrize(("kind", "lua", "expected"), NODES, ids=[k for k, _, _ in NODES])
def test_every_node_builder_builds_the_exact_node(kind: str, lua: str, expected: Any) -> None:
    built = value_of(lua)
    assert built == expected
    parse_node(built)


def test_the_table_covers_all_seven_node_kinds() -> None:
    assert {kind for kind, _, _ in NODES} == {"step", "seq", "branch", "loop", "fanout", "try", "assign"}


def test_try_without_err_at_omits_the_key() -> None:
    assert value_of("F.try_ { body = F.seq {}, catch = F.seq {} }") == {
        "kind": "try",
        "body": {"kind": "seq", "children": []},
        "catch": {"kind": "seq", "children": []},
    }


@pytest.mark.parametrize("join", ["all", "any", "race", "all_settled"])
def test_fanout_shape_is_the_same_for_every_join(join: str) -> None:
    built = value_of(
        f'F.fanout {{ items = F.p "$.xs", bind = F.p "$.x", join = "{join}", out = F.p "$.rs", body = F.seq {{}} }}'
    )
    assert set(built) == {"kind", "items", "bind", "join", "out", "body"}
    assert built["join"] == join
    parse_node(built)
