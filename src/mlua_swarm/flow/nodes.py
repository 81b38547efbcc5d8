"""The 7 flow node kinds of flow-ir 0.2.0 (tag `kind`): parsing with located errors, wire round-trip, walking."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from itertools import count
from typing import Any, ClassVar

from mlua_swarm.flow.errors import FlowParseError
from mlua_swarm.flow.exprs import Expr, Lit, check_fields, parse_expr, parse_path_field
from mlua_swarm.flow.paths import Path, json_type_name

STEP_META_KEY = "$step_meta"
MAX_NODE_DEPTH = 256
_U32_MAX = 2**32 - 1


class Join(StrEnum):
    """How a fanout combines its lanes."""

    ALL = "all"
    ANY = "any"
    RACE = "race"
    ALL_SETTLED = "all_settled"


def _path_json(path: Path) -> dict[str, Any]:
    return {"op": "path", "at": path.source}


@dataclass(frozen=True, slots=True, eq=False)
class Step:
    """`step {ref, in, out}`: dispatch agent `ref` with the value of `input`, write the result at `out`.

    `index` is the node's place in its flow: its position in a pre-order (document order) walk of all
    the flow's nodes, the root being 0 (`parse_node` numbers them; None for a step built by hand). It
    tells apart several steps of one agent, the same way each time the flow is parsed.
    """

    ref: str
    input: Expr
    out: Path
    index: int | None = None
    kind: ClassVar[str] = "step"

    @property
    def meta(self) -> dict[str, Any] | None:
        """The static `$step_meta` envelope when `in` is a literal object carrying one, else None."""
        if isinstance(self.input, Lit) and isinstance(self.input.value, dict):
            meta = self.input.value.get(STEP_META_KEY)
            return meta if isinstance(meta, dict) else None
        return None

    def to_json(self) -> dict[str, Any]:
        return {"kind": "step", "ref": self.ref, "in": self.input.to_json(), "out": _path_json(self.out)}


@dataclass(frozen=True, slots=True, eq=False)
class Seq:
    """`seq {children}`: run children in order on the shared ctx; the first error aborts."""

    children: tuple[Node, ...]
    kind: ClassVar[str] = "seq"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "seq", "children": [c.to_json() for c in self.children]}


@dataclass(frozen=True, slots=True, eq=False)
class Branch:
    """`branch {cond, then, else}`: cond must evaluate to a JSON boolean."""

    cond: Expr
    then: Node
    else_: Node
    kind: ClassVar[str] = "branch"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "branch",
            "cond": self.cond.to_json(),
            "then": self.then.to_json(),
            "else": self.else_.to_json(),
        }


@dataclass(frozen=True, slots=True, eq=False)
class Loop:
    """`loop {counter, cond, body, max}`: at most `max` iterations while cond is truthy; counter = iterations run."""

    counter: Path
    cond: Expr
    body: Node
    max: int
    kind: ClassVar[str] = "loop"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "loop",
            "counter": _path_json(self.counter),
            "cond": self.cond.to_json(),
            "body": self.body.to_json(),
            "max": self.max,
        }


@dataclass(frozen=True, slots=True, eq=False)
class Fanout:
    """`fanout {items, bind, body, join, out, collect?}`: run body once per item in concurrent lanes,
    join at `out`.

    Each lane joins as its whole final ctx, as upstream defines it; `collect` (ours, optional) is an
    expression evaluated in the lane's final ctx that joins in its place, so lanes over large ctx
    values join only what they produced.
    """

    items: Expr
    bind: Path
    body: Node
    join: Join
    out: Path
    collect: Expr | None = None
    kind: ClassVar[str] = "fanout"

    def to_json(self) -> dict[str, Any]:
        out = {
            "kind": "fanout",
            "items": self.items.to_json(),
            "bind": _path_json(self.bind),
            "body": self.body.to_json(),
            "join": self.join.value,
            "out": _path_json(self.out),
        }
        if self.collect is not None:
            out["collect"] = self.collect.to_json()
        return out


@dataclass(frozen=True, slots=True, eq=False)
class Try:
    """`try {body, catch, err_at?}`: on a body error, roll back to the snapshot, record the error, run catch."""

    body: Node
    catch: Node
    err_at: Path | None = None
    kind: ClassVar[str] = "try"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "try", "body": self.body.to_json(), "catch": self.catch.to_json()}
        if self.err_at is not None:
            out["err_at"] = _path_json(self.err_at)
        return out


@dataclass(frozen=True, slots=True, eq=False)
class Assign:
    """`assign {at, value}`: write the value of an expression at a path; no dispatch."""

    at: Path
    value: Expr
    kind: ClassVar[str] = "assign"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "assign", "at": _path_json(self.at), "value": self.value.to_json()}


Node = Step | Seq | Branch | Loop | Fanout | Try | Assign

_FIELDS: dict[str, tuple[str, ...]] = {
    "step": ("ref", "in", "out"),
    "seq": ("children",),
    "branch": ("cond", "then", "else"),
    "loop": ("counter", "cond", "body", "max"),
    "fanout": ("items", "bind", "body", "join", "out"),
    "try": ("body", "catch"),
    "assign": ("at", "value"),
}
_OPTIONAL: dict[str, tuple[str, ...]] = {"try": ("err_at",), "fanout": ("collect",)}
NODE_KINDS: tuple[str, ...] = tuple(_FIELDS)
_KIND_HINTS = {
    "let": 'flow-ir 0.3 \'let\' is not accepted; write \'assign\' with at = {"op": "path", "at": "$.key"}',
}


def _target(obj: Any, where: str) -> Path:
    """A write target: must be a `path` expression object."""
    if isinstance(obj, str):
        raise FlowParseError(
            "a write target must be a path expression, not a bare string",
            where,
            f'write {{"op": "path", "at": "{obj}"}}',
        )
    if not isinstance(obj, dict) or obj.get("op") != "path":
        shown = repr(obj.get("op")) if isinstance(obj, dict) else json_type_name(obj)
        raise FlowParseError(
            f"a write target must be a path expression, got {shown}",
            where,
            'write {"op": "path", "at": "$.key"}',
        )
    check_fields(obj, "op", "path", ("at",), where)
    return parse_path_field(obj["at"], f"{where}.at")


def parse_node(obj: Any, where: str = "$.flow", *, depth: int = 0) -> Node:
    """Parse one flow node (tag `kind`); raises FlowParseError naming the JSON path of the problem.

    Each step gets its `index` in the tree parsed here (`obj` is its root).
    """
    return _parse(obj, where, depth, count())


def _parse(obj: Any, where: str, depth: int, order: Iterator[int]) -> Node:
    if depth > MAX_NODE_DEPTH:
        raise FlowParseError("flow nested too deeply", where, f"at most {MAX_NODE_DEPTH} levels of nodes")
    if not isinstance(obj, dict):
        raise FlowParseError(
            f"a flow node must be an object, got {json_type_name(obj)}",
            where,
            'write e.g. {"kind": "seq", "children": []}',
        )
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in _FIELDS:
        shown = "missing" if kind is None else repr(kind)
        hint = _KIND_HINTS.get(kind, "") if isinstance(kind, str) else ""
        raise FlowParseError(
            f"unknown node kind {shown}", f"{where}.kind", hint or "kind is one of " + ", ".join(NODE_KINDS)
        )
    check_fields(obj, "kind", kind, _FIELDS[kind], where, optional=_OPTIONAL.get(kind, ()))
    index = next(order)
    nxt = depth + 1
    if kind == "step":
        ref = obj["ref"]
        if not isinstance(ref, str) or not ref:
            raise FlowParseError(
                "step ref must be a non-empty string", f"{where}.ref", "name an agent of the Blueprint"
            )
        return Step(ref, parse_expr(obj["in"], f"{where}.in"), _target(obj["out"], f"{where}.out"), index)
    if kind == "seq":
        children = obj["children"]
        if not isinstance(children, list):
            raise FlowParseError(
                f"children must be an array, got {json_type_name(children)}", f"{where}.children", "write [node, ...]"
            )
        return Seq(tuple(_parse(c, f"{where}.children[{i}]", nxt, order) for i, c in enumerate(children)))
    if kind == "branch":
        return Branch(
            parse_expr(obj["cond"], f"{where}.cond"),
            _parse(obj["then"], f"{where}.then", nxt, order),
            _parse(obj["else"], f"{where}.else", nxt, order),
        )
    if kind == "loop":
        limit = obj["max"]
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= _U32_MAX:
            raise FlowParseError(
                f"loop max must be an integer from 0 to {_U32_MAX}, got {limit!r}", f"{where}.max", "e.g. 3"
            )
        return Loop(
            _target(obj["counter"], f"{where}.counter"),
            parse_expr(obj["cond"], f"{where}.cond"),
            _parse(obj["body"], f"{where}.body", nxt, order),
            limit,
        )
    if kind == "fanout":
        join = obj["join"]
        if join not in {j.value for j in Join}:
            raise FlowParseError(
                f"unknown fanout join {join!r}", f"{where}.join", "join is one of " + ", ".join(j.value for j in Join)
            )
        return Fanout(
            parse_expr(obj["items"], f"{where}.items"),
            _target(obj["bind"], f"{where}.bind"),
            _parse(obj["body"], f"{where}.body", nxt, order),
            Join(join),
            _target(obj["out"], f"{where}.out"),
            None if obj.get("collect") is None else parse_expr(obj["collect"], f"{where}.collect"),
        )
    if kind == "try":
        err_at = obj.get("err_at")
        return Try(
            _parse(obj["body"], f"{where}.body", nxt, order),
            _parse(obj["catch"], f"{where}.catch", nxt, order),
            None if err_at is None else _target(err_at, f"{where}.err_at"),
        )
    return Assign(_target(obj["at"], f"{where}.at"), parse_expr(obj["value"], f"{where}.value"))


def child_nodes(node: Node) -> tuple[Node, ...]:
    """Direct child nodes, in wire order."""
    if isinstance(node, Seq):
        return node.children
    if isinstance(node, Branch):
        return (node.then, node.else_)
    if isinstance(node, Loop | Fanout):
        return (node.body,)
    if isinstance(node, Try):
        return (node.body, node.catch)
    return ()


def walk(node: Node) -> Iterator[Node]:
    """Every node in the tree rooted at `node`, pre-order (document order)."""
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(child_nodes(current)))
