"""Test helpers: terse flow-ir 0.2.0 JSON builders and an in-memory dispatcher."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mlua_swarm.flow.nodes import Step

NOOP: dict[str, Any] = {"kind": "seq", "children": []}


def p(at: str) -> dict[str, Any]:
    return {"op": "path", "at": at}


def lit(value: Any) -> dict[str, Any]:
    return {"op": "lit", "value": value}


def step(ref: str, src: Any = "$.in", out: str = "$.out") -> dict[str, Any]:
    return {"kind": "step", "ref": ref, "in": p(src) if isinstance(src, str) else src, "out": p(out)}


def seq(*children: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "seq", "children": list(children)}


def assign(at: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "assign", "at": p(at), "value": value}


def branch(cond: dict[str, Any], then: dict[str, Any], else_: dict[str, Any] = NOOP) -> dict[str, Any]:
    return {"kind": "branch", "cond": cond, "then": then, "else": else_}


def loop(counter: str, cond: dict[str, Any], body: dict[str, Any], max_: int) -> dict[str, Any]:
    return {"kind": "loop", "counter": p(counter), "cond": cond, "body": body, "max": max_}


def fanout(
    items: dict[str, Any], body: dict[str, Any], join: str, bind: str = "$.item", out: str = "$.rs"
) -> dict[str, Any]:
    return {"kind": "fanout", "items": items, "bind": p(bind), "body": body, "join": join, "out": p(out)}


def try_(body: dict[str, Any], catch: dict[str, Any], err_at: str | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"kind": "try", "body": body, "catch": catch}
    if err_at is not None:
        node["err_at"] = p(err_at)
    return node


class Agents:
    """An in-memory StepDispatcher: each ref maps to a plain or async function of the step input."""

    def __init__(self, **fns: Callable[[Any], Any]) -> None:
        self.fns = fns
        self.calls: list[tuple[str, Any]] = []

    async def dispatch(self, step: Step, input: Any) -> Any:
        self.calls.append((step.ref, input))
        out = self.fns[step.ref](input)
        if inspect.isawaitable(out):
            out = await out
        return out

    def refs(self) -> list[str]:
        return [ref for ref, _ in self.calls]
