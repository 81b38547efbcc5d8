"""The 20 expression ops: parse, evaluate, errors, truthiness, and arbitrary-input properties."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlua_swarm.flow.errors import (
    ArithError,
    ExprError,
    ExprTypeError,
    ExternError,
    FlowParseError,
    PathNotFound,
)
from mlua_swarm.flow.exprs import EXPR_OPS, eval_expr, parse_expr, truthy, walk_expr


def p(at: str) -> dict[str, Any]:
    return {"op": "path", "at": at}


def lit(value: Any) -> dict[str, Any]:
    return {"op": "lit", "value": value}


def bin_(op: str, lhs: Any, rhs: Any) -> dict[str, Any]:
    return {"op": op, "lhs": lit(lhs), "rhs": lit(rhs)}


CTX = {"a": 1, "s": "héllo", "arr": [1, 2, 3], "obj": {"k": None, "j": 2}, "t": True, "f": False, "n": None}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (p("$.a"), 1),
        (p('$.obj["j"]'), 2),
        (lit({"x": [1]}), {"x": [1]}),
        (bin_("eq", 5, 5.0), True),
        (bin_("eq", {"a": [1, {"b": 2}]}, {"a": [1.0, {"b": 2}]}), True),
        (bin_("eq", {"a": 1}, {"a": 1, "b": None}), False),
        (bin_("eq", True, 1), False),
        (bin_("eq", 0, False), False),
        (bin_("eq", None, None), True),
        (bin_("eq", [1, 2], [2, 1]), False),
        (bin_("ne", "a", "b"), True),
        (bin_("ne", 1, 1.0), False),
        (bin_("lt", 1, 2.5), True),
        (bin_("lte", 2, 2.0), True),
        (bin_("gt", "b", "a"), True),
        (bin_("gte", "a", "b"), False),
        (bin_("lt", "Z", "a"), True),
        ({"op": "not", "arg": lit(0)}, False),
        ({"op": "not", "arg": lit(None)}, True),
        ({"op": "not", "arg": lit(False)}, True),
        ({"op": "and", "args": []}, True),
        ({"op": "or", "args": []}, False),
        ({"op": "and", "args": [lit(1), lit("")]}, True),
        ({"op": "and", "args": [lit(1), lit(None)]}, False),
        ({"op": "and", "args": [lit(False), p("$.missing")]}, False),
        ({"op": "or", "args": [lit([]), p("$.missing")]}, True),
        ({"op": "or", "args": [lit(None), lit(False)]}, False),
        ({"op": "exists", "arg": p("$.a")}, True),
        ({"op": "exists", "arg": p("$.obj.k")}, False),
        ({"op": "exists", "arg": p("$.missing.deep")}, False),
        ({"op": "exists", "arg": p("$.s.k")}, False),
        ({"op": "exists", "arg": lit(0)}, True),
        (bin_("add", 1, 2), 3.0),
        (bin_("sub", 1, 2.5), -1.5),
        (bin_("mul", 3, 4), 12.0),
        (bin_("div", 1, 4), 0.25),
        (bin_("mod", 7, 3), 1.0),
        (bin_("mod", -7, 3), 2.0),
        (bin_("mod", 7, -3), -2.0),
        ({"op": "len", "arg": p("$.arr")}, 3),
        ({"op": "len", "arg": p("$.s")}, 5),
        ({"op": "len", "arg": p("$.obj")}, 2),
        ({"op": "in", "needle": lit(2.0), "haystack": p("$.arr")}, True),
        ({"op": "in", "needle": lit("x"), "haystack": lit([])}, False),
        ({"op": "in", "needle": lit({"a": 1}), "haystack": lit([{"a": 1.0}])}, True),
        ({"op": "call_extern", "ref": "join", "args": [lit("a"), p("$.s")]}, "a-héllo"),
        ({"op": "call_extern", "ref": "none", "args": []}, None),
    ],
)
def test_evaluate(expr: dict[str, Any], expected: Any) -> None:
    externs = {"join": lambda a, b: f"{a}-{b}", "none": lambda: None}
    value = eval_expr(parse_expr(expr), CTX, externs)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("expr", "error", "text"),
    [
        (p("$.missing"), PathNotFound, "$.missing"),
        (bin_("lt", 1, "a"), ExprTypeError, "number and string"),
        (bin_("lt", True, False), ExprTypeError, "boolean"),
        (bin_("lt", None, 1), ExprTypeError, "null"),
        (bin_("add", "1", 2), ExprTypeError, "string"),
        (bin_("add", True, 2), ExprTypeError, "boolean"),
        (bin_("div", 1, 0), ArithError, "division by zero"),
        (bin_("mod", 1, 0.0), ArithError, "division by zero"),
        (bin_("mul", 1e308, 10), ArithError, "finite"),
        (bin_("add", 10**400, 1), ArithError, "float range"),
        ({"op": "len", "arg": lit(3)}, ExprTypeError, "number"),
        ({"op": "len", "arg": lit(None)}, ExprTypeError, "null"),
        ({"op": "in", "needle": lit(1), "haystack": lit({"1": 1})}, ExprTypeError, "haystack"),
        ({"op": "in", "needle": lit(1), "haystack": lit("1")}, ExprTypeError, "haystack"),
        ({"op": "call_extern", "ref": "nope", "args": []}, ExternError, "not registered"),
        ({"op": "call_extern", "ref": "boom", "args": [lit(1)]}, ExternError, "ZeroDivisionError"),
        ({"op": "exists", "arg": {"op": "len", "arg": lit(1)}}, ExprTypeError, "len"),
        ({"op": "not", "arg": p("$.missing")}, PathNotFound, "missing"),
    ],
)
def test_evaluation_errors(expr: dict[str, Any], error: type[ExprError], text: str) -> None:
    with pytest.raises(error) as info:
        eval_expr(parse_expr(expr), CTX, {"boom": lambda x: x / 0})
    assert text in str(info.value)


def test_ordering_nan_is_an_arith_error() -> None:
    expr = parse_expr({"op": "lt", "lhs": p("$.x"), "rhs": lit(1)})
    with pytest.raises(ArithError):
        eval_expr(expr, {"x": math.nan})


def test_truthiness() -> None:
    assert [truthy(v) for v in (None, False, 0, "", [], {}, True)] == [False, False, True, True, True, True, True]


def test_every_op_round_trips() -> None:
    samples = {
        "path": p('$.a["b.c"]'),
        "lit": lit([1, {"x": None}]),
        "not": {"op": "not", "arg": lit(True)},
        "exists": {"op": "exists", "arg": p("$.a")},
        "len": {"op": "len", "arg": p("$.a")},
        "and": {"op": "and", "args": [lit(True), p("$.b")]},
        "or": {"op": "or", "args": []},
        "in": {"op": "in", "needle": lit(1), "haystack": lit([1])},
        "call_extern": {"op": "call_extern", "ref": "f", "args": [lit(1)]},
    }
    for op in ("eq", "ne", "lt", "lte", "gt", "gte", "add", "sub", "mul", "div", "mod"):
        samples[op] = bin_(op, 1, 2)
    assert sorted(samples) == sorted(EXPR_OPS)
    assert len(EXPR_OPS) == 20
    for op, obj in samples.items():
        expr = parse_expr(obj)
        assert expr.op == op
        assert expr.to_json() == obj


def test_lit_value_is_copied_at_parse() -> None:
    obj = lit({"a": [1]})
    expr = parse_expr(obj)
    obj["value"]["a"].append(2)
    assert eval_expr(expr, {}) == {"a": [1]}


def test_walk_expr_is_preorder() -> None:
    expr = parse_expr({"op": "and", "args": [bin_("eq", 1, 2), {"op": "not", "arg": p("$.x")}]})
    assert [e.op for e in walk_expr(expr)] == ["and", "eq", "lit", "lit", "not", "path"]


@pytest.mark.parametrize(
    ("obj", "json_path", "hint_word"),
    [
        ("$.a", "$", "op"),
        ({"at": "$.a"}, "$.op", "path"),
        ({"op": "regex", "at": "x"}, "$.op", "call_extern"),
        ({"op": "path"}, "$", "at"),
        ({"op": "path", "at": "a"}, "$.at", "$.a"),
        ({"op": "path", "at": "$.a[0]"}, "$.at", "array index"),
        ({"op": "lit", "value": 1, "extra": 2}, "$.extra", "value"),
        ({"op": "eq", "lhs": lit(1)}, "$", "lhs, rhs"),
        ({"op": "and", "args": lit(1)}, "$.args", "[expr"),
        ({"op": "or", "args": [lit(1), 5]}, "$.args[1]", "op"),
        ({"op": "call_extern", "ref": "", "args": []}, "$.ref", "function"),
        ({"op": "not", "arg": {"op": "len", "arg": {"op": "nope"}}}, "$.arg.arg.op", "op is one of"),
    ],
)
def test_parse_errors_are_located(obj: Any, json_path: str, hint_word: str) -> None:
    with pytest.raises(FlowParseError) as info:
        parse_expr(obj, "$")
    assert info.value.json_path == json_path
    assert info.value.hint is not None and hint_word in info.value.hint


def test_deep_nesting_is_refused_at_parse() -> None:
    obj: Any = lit(True)
    for _ in range(500):
        obj = {"op": "not", "arg": obj}
    with pytest.raises(FlowParseError, match="nested too deeply"):
        parse_expr(obj)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=10,
)
paths = st.sampled_from(["$", "$.a", "$.s", "$.arr", "$.obj.k", "$.obj.j", "$.x.y", "$.0"])
exprs = st.recursive(
    st.builds(lambda v: {"op": "lit", "value": v}, json_values) | st.builds(lambda a: {"op": "path", "at": a}, paths),
    lambda inner: st.one_of(
        st.builds(
            lambda op, lhs, rhs: {"op": op, "lhs": lhs, "rhs": rhs},
            st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte", "add", "sub", "mul", "div", "mod"]),
            inner,
            inner,
        ),
        st.builds(lambda op, arg: {"op": op, "arg": arg}, st.sampled_from(["not", "exists", "len"]), inner),
        st.builds(
            lambda op, args: {"op": op, "args": args}, st.sampled_from(["and", "or"]), st.lists(inner, max_size=3)
        ),
        st.builds(lambda n, h: {"op": "in", "needle": n, "haystack": h}, inner, inner),
        st.builds(lambda args: {"op": "call_extern", "ref": "first", "args": args}, st.lists(inner, max_size=2)),
    ),
    max_leaves=12,
)


def _first(*args: Any) -> Any:
    return args[0]


@given(exprs, st.dictionaries(st.sampled_from(["a", "s", "arr", "obj", "x"]), json_values, max_size=5))
def test_generated_expressions_give_a_value_or_an_expr_error(obj: Any, ctx: dict[str, Any]) -> None:
    expr = parse_expr(obj)
    assert expr.to_json() == obj
    with contextlib.suppress(ExprError):
        eval_expr(expr, ctx, {"first": _first})


@given(
    st.recursive(
        json_values,
        lambda inner: st.dictionaries(
            st.sampled_from(["op", "at", "value", "lhs", "rhs", "arg", "args", "ref"]),
            inner | st.sampled_from(["path", "lit", "not", "and", "eq", "$.a", "$"]),
            max_size=4,
        ),
        max_leaves=15,
    )
)
def test_arbitrary_json_parses_or_gives_a_parse_error(obj: Any) -> None:
    try:
        expr = parse_expr(obj)
    except FlowParseError:
        return
    with contextlib.suppress(ExprError):
        eval_expr(expr, {"a": 1})
