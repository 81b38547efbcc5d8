"""Static verdict reads: which `branch` / `loop` conditions compare which agent's verdict to which values.

A comparison counts when it is an `eq` / `ne` between one `path` and one `lit`, or an `in` with a
`path` needle and a literal array haystack (found through `and` / `or` / `not`). The path is
attributed to the agent whose step writes it: the step's `out` itself is the body channel, and
`<out>.parts.verdict` is the part channel. When several steps write one `out`, the last one in
document order owns it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ..flow.exprs import And, Equality, Expr, In, Lit, Not, Or, PathExpr
from ..flow.nodes import Branch, Fanout, Loop, Node, Seq, Step, Try

Channel = Literal["body", "part"]
_PART_SUFFIX = ("parts", "verdict")


@dataclass(frozen=True, slots=True)
class VerdictRead:
    """One comparison of an agent's output with literal values, at `where` in the document."""

    agent: str
    channel: Channel
    values: tuple[Any, ...]
    where: str


def located_nodes(node: Node, where: str = "$.flow") -> Iterator[tuple[Node, str]]:
    """Every node with its JSON path, in document order."""
    yield node, where
    if isinstance(node, Seq):
        for index, child in enumerate(node.children):
            yield from located_nodes(child, f"{where}.children[{index}]")
    elif isinstance(node, Branch):
        yield from located_nodes(node.then, f"{where}.then")
        yield from located_nodes(node.else_, f"{where}.else")
    elif isinstance(node, Loop | Fanout):
        yield from located_nodes(node.body, f"{where}.body")
    elif isinstance(node, Try):
        yield from located_nodes(node.body, f"{where}.body")
        yield from located_nodes(node.catch, f"{where}.catch")


def _comparisons(expr: Expr, where: str) -> Iterator[tuple[PathExpr, tuple[Any, ...], str]]:
    if isinstance(expr, And | Or):
        for index, arg in enumerate(expr.args):
            yield from _comparisons(arg, f"{where}.args[{index}]")
    elif isinstance(expr, Not):
        yield from _comparisons(expr.arg, f"{where}.arg")
    elif isinstance(expr, Equality):
        pair = (expr.lhs, expr.rhs)
        paths = [e for e in pair if isinstance(e, PathExpr)]
        lits = [e for e in pair if isinstance(e, Lit)]
        if len(paths) == 1 and len(lits) == 1:
            yield paths[0], (lits[0].value,), where
    elif isinstance(expr, In) and isinstance(expr.needle, PathExpr) and isinstance(expr.haystack, Lit):
        haystack = expr.haystack.value
        if isinstance(haystack, list):
            yield expr.needle, tuple(haystack), where


def verdict_reads(flow: Node) -> list[VerdictRead]:
    """Every attributable verdict comparison of the flow's `branch` and `loop` conditions."""
    located = list(located_nodes(flow))
    owners: dict[tuple[str, ...], str] = {}
    for node, _ in located:
        if isinstance(node, Step):
            owners[node.out.keys] = node.ref
    reads: list[VerdictRead] = []
    for node, where in located:
        if not isinstance(node, Branch | Loop):
            continue
        for path, values, at in _comparisons(node.cond, f"{where}.cond"):
            keys = path.at.keys
            if keys in owners:
                reads.append(VerdictRead(owners[keys], "body", values, at))
            elif keys[-2:] == _PART_SUFFIX and keys[:-2] in owners:
                reads.append(VerdictRead(owners[keys[:-2]], "part", values, at))
    return reads


__all__ = ["VerdictRead", "located_nodes", "verdict_reads"]
