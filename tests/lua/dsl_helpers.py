"""Helpers for DSL tests: run a snippet with F and B in scope and read back the JSON."""

from __future__ import annotations

from typing import Any

from mlua_swarm.dsl.runner import BuildResult, build_bp_lua_source

PRELUDE = 'local F = require "flow_dsl"\nlocal B = require "bp_dsl"\n'


def build(body: str, file: str = "t.bp.lua") -> BuildResult:
    """Run a script made of the prelude and `body` (which must `return` a table)."""
    return build_bp_lua_source(PRELUDE + body, file)


def value_of(lua_expr: str) -> Any:
    """The JSON value of one Lua expression (wrapped so the script returns a table)."""
    return build(f"return {{ v = {lua_expr} }}").value["v"]


def ast_of(lua_expr: str) -> Any:
    """The AST of an F expression."""
    return value_of(f"F.unwrap({lua_expr})")


def path(at: str) -> dict[str, Any]:
    return {"op": "path", "at": at}


def lit(value: Any) -> dict[str, Any]:
    return {"op": "lit", "value": value}


def step(ref: str, input_at: str, out_at: str) -> dict[str, Any]:
    return {"kind": "step", "ref": ref, "in": path(input_at), "out": path(out_at)}


def seq(*children: Any) -> dict[str, Any]:
    return {"kind": "seq", "children": list(children)}


def assign(at: str, value: Any) -> dict[str, Any]:
    return {"kind": "assign", "at": path(at), "value": lit(value)}


def verdict_eq(out: str, value: str) -> dict[str, Any]:
    return {"op": "eq", "lhs": path(f'{out}.parts["verdict"]'), "rhs": lit(value)}


def branch(cond: Any, then: Any, else_: Any) -> dict[str, Any]:
    return {"kind": "branch", "cond": cond, "then": then, "else": else_}
