"""The 7 node kinds: wire round-trip, located parse errors, walking."""

from __future__ import annotations

from typing import Any

import pytest

from mlua_swarm.core.fold import is_skip_marker, unwrap_skip_marker, wrap_skip_marker
from mlua_swarm.flow.errors import FlowError, FlowParseError
from mlua_swarm.flow.nodes import (
    NODE_KINDS,
    Assign,
    Branch,
    Fanout,
    Join,
    Loop,
    Seq,
    Step,
    Try,
    parse_node,
    walk,
)


def p(at: str) -> dict[str, Any]:
    return {"op": "path", "at": at}


def lit(value: Any) -> dict[str, Any]:
    return {"op": "lit", "value": value}


def step(ref: str, src: str = "$.in", out: str = "$.out") -> dict[str, Any]:
    return {"kind": "step", "ref": ref, "in": p(src), "out": p(out)}


NOOP = {"kind": "seq", "children": []}

SAMPLES: dict[str, dict[str, Any]] = {
    "step": step("a", "$.d.x", '$.r["k.v"]'),
    "seq": {"kind": "seq", "children": [step("a"), NOOP]},
    "branch": {"kind": "branch", "cond": lit(True), "then": step("a"), "else": NOOP},
    "loop": {"kind": "loop", "counter": p("$.n"), "cond": lit(True), "body": step("a"), "max": 3},
    "fanout": {
        "kind": "fanout",
        "items": p("$.xs"),
        "bind": p("$.x"),
        "body": step("a"),
        "join": "all_settled",
        "out": p("$.rs"),
    },
    "try": {"kind": "try", "body": step("a"), "catch": NOOP, "err_at": p("$.err")},
    "assign": {"kind": "assign", "at": p("$.w"), "value": {"op": "len", "arg": p("$.doc")}},
}


@pytest.mark.parametrize("kind", NODE_KINDS)
def test_every_kind_round_trips(kind: str) -> None:
    node = parse_node(SAMPLES[kind])
    assert node.kind == kind
    assert node.to_json() == SAMPLES[kind]


def test_try_without_err_at_round_trips() -> None:
    obj = {"kind": "try", "body": NOOP, "catch": NOOP}
    node = parse_node(obj)
    assert isinstance(node, Try) and node.err_at is None
    assert node.to_json() == obj


def test_typed_fields() -> None:
    s = parse_node(SAMPLES["step"])
    assert isinstance(s, Step) and s.ref == "a" and s.out.keys == ("r", "k.v") and s.input.op == "path"
    assert s.meta is None
    f = parse_node(SAMPLES["fanout"])
    assert isinstance(f, Fanout) and f.join is Join.ALL_SETTLED and f.bind.canonical == "$.x"
    lp = parse_node(SAMPLES["loop"])
    assert isinstance(lp, Loop) and lp.max == 3 and lp.counter.canonical == "$.n"
    b = parse_node(SAMPLES["branch"])
    assert isinstance(b, Branch) and isinstance(b.else_, Seq)
    a = parse_node(SAMPLES["assign"])
    assert isinstance(a, Assign) and a.at.canonical == "$.w"


def test_step_meta_is_exposed_from_a_literal_input() -> None:
    envelope = {"$step_meta": {"ref": "strict", "inline": {"model": "x"}}, "$in": "go"}
    s = parse_node({"kind": "step", "ref": "a", "in": lit(envelope), "out": p("$.o")})
    assert isinstance(s, Step)
    assert s.meta == {"ref": "strict", "inline": {"model": "x"}}


def test_walk_is_document_order() -> None:
    root = parse_node(
        {
            "kind": "seq",
            "children": [
                step("a"),
                {
                    "kind": "branch",
                    "cond": lit(True),
                    "then": step("b"),
                    "else": {"kind": "try", "body": step("c"), "catch": step("d")},
                },
                {"kind": "loop", "counter": p("$.n"), "cond": lit(True), "body": step("e"), "max": 1},
                {
                    "kind": "fanout",
                    "items": lit([]),
                    "bind": p("$.x"),
                    "body": step("f"),
                    "join": "all",
                    "out": p("$.o"),
                },
            ],
        }
    )
    assert [n.ref for n in walk(root) if isinstance(n, Step)] == ["a", "b", "c", "d", "e", "f"]
    assert [n.kind for n in walk(root)][:3] == ["seq", "step", "branch"]


@pytest.mark.parametrize(
    ("obj", "json_path", "hint_word"),
    [
        ([], "$.flow", "kind"),
        ({"children": []}, "$.flow.kind", "step, seq"),
        ({"kind": "let", "at": "$.x", "value": lit(1)}, "$.flow.kind", "assign"),
        ({"kind": "seq"}, "$.flow", "children"),
        ({"kind": "seq", "children": {}}, "$.flow.children", "[node"),
        ({"kind": "seq", "children": [{"kind": "step", "ref": "a", "in": lit(1)}]}, "$.flow.children[0]", "out"),
        ({**step("a"), "id": "s1"}, "$.flow.id", "ref, in, out"),
        ({**step("a"), "ref": ""}, "$.flow.ref", "agent"),
        ({"kind": "step", "ref": "a", "in": lit(1), "out": "$.o"}, "$.flow.out", '"op": "path"'),
        ({"kind": "step", "ref": "a", "in": lit(1), "out": lit("$.o")}, "$.flow.out", '"op": "path"'),
        ({"kind": "step", "ref": "a", "in": lit(1), "out": p("$.o[1]")}, "$.flow.out.at", "array index"),
        ({"kind": "step", "ref": "a", "in": {"op": "path", "at": "o"}, "out": p("$.o")}, "$.flow.in.at", "$.o"),
        ({"kind": "branch", "cond": lit(True), "then": NOOP}, "$.flow", "else"),
        ({**SAMPLES["loop"], "max": -1}, "$.flow.max", "e.g."),
        ({**SAMPLES["loop"], "max": True}, "$.flow.max", "e.g."),
        ({**SAMPLES["loop"], "max": 2**32}, "$.flow.max", "e.g."),
        ({**SAMPLES["fanout"], "join": "first"}, "$.flow.join", "all_settled"),
        ({k: v for k, v in SAMPLES["fanout"].items() if k != "join"}, "$.flow", "join"),
        ({**SAMPLES["try"], "err_at": p("x")}, "$.flow.err_at.at", "$.x"),
        ({"kind": "assign", "at": {"op": "path", "at": "$.x", "y": 1}, "value": lit(1)}, "$.flow.at.y", "at"),
        ({"kind": "try", "body": NOOP, "catch": {"kind": "nope"}}, "$.flow.catch.kind", "kind is one of"),
    ],
)
def test_parse_errors_are_located(obj: Any, json_path: str, hint_word: str) -> None:
    with pytest.raises(FlowParseError) as info:
        parse_node(obj)
    err = info.value
    assert isinstance(err, FlowError)
    assert err.json_path == json_path
    assert err.hint is not None and hint_word in err.hint
    assert err.code == "flow_parse"


def test_deep_nesting_is_refused() -> None:
    obj: dict[str, Any] = NOOP
    for _ in range(400):
        obj = {"kind": "seq", "children": [obj]}
    with pytest.raises(FlowParseError, match="nested too deeply"):
        parse_node(obj)


def test_where_prefixes_locations() -> None:
    with pytest.raises(FlowParseError) as info:
        parse_node({"kind": "seq", "children": [5]}, "$.stages[2].flow")
    assert info.value.json_path == "$.stages[2].flow.children[0]"


def test_skip_marker_helpers() -> None:
    marker = wrap_skip_marker({"why": "cached"})
    assert marker == {"__mse_skip": True, "value": {"why": "cached"}}
    assert is_skip_marker(marker)
    assert unwrap_skip_marker(marker) == {"why": "cached"}
    for other in ({"__mse_skip": 1, "value": 0}, {"__mse_skip": True}, "x", None):
        assert not is_skip_marker(other)
    with pytest.raises(ValueError, match="not a skip marker"):
        unwrap_skip_marker({"value": 1})
