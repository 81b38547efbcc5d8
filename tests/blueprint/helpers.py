"""Small builders for Blueprint documents and assertions on diagnostics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.compiler import CompiledBlueprint, compile_blueprint
from mlua_swarm.diagnostics import Diagnostic, DiagnosticError, Level

FIXTURES = Path(__file__).parent / "fixtures"
UPSTREAM_EXAMPLES = sorted(FIXTURES.glob("upstream_*.json"))


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def path(at: str) -> dict[str, Any]:
    return {"op": "path", "at": at}


def lit(value: Any) -> dict[str, Any]:
    return {"op": "lit", "value": value}


def step(ref: str, out: str = "$.out", at: str = "$.in") -> dict[str, Any]:
    return {"kind": "step", "ref": ref, "in": path(at), "out": path(out)}


def seq(*children: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "seq", "children": list(children)}


def branch(cond: dict[str, Any]) -> dict[str, Any]:
    """A branch on `cond` with no-op arms."""
    return {"kind": "branch", "cond": cond, "then": seq(), "else": seq()}


def eq(at: str, value: Any) -> dict[str, Any]:
    return {"op": "eq", "lhs": path(at), "rhs": lit(value)}


def agent(name: str, **extra: Any) -> dict[str, Any]:
    """A `rust_fn` agent running the built-in `identity` function."""
    return {"name": name, "kind": "rust_fn", "spec": {"fn_id": "identity"}, **extra}


CHECKER_PART = agent("checker", verdict={"channel": "part", "values": ["PASS", "FAIL"]})


def blueprint(flow: dict[str, Any], *agents: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "test", "flow": flow, "agents": list(agents), **extra}


def compile_ok(raw: dict[str, Any], tmp: Path | None = None, **kwargs: Any) -> CompiledBlueprint:
    return compile_blueprint(raw, base_dir=tmp or FIXTURES, **kwargs)


def compile_errors(raw: Any, tmp: Path | None = None, **kwargs: Any) -> list[Diagnostic]:
    with pytest.raises(DiagnosticError) as info:
        compile_blueprint(raw, base_dir=tmp or FIXTURES, **kwargs)
    return info.value.diagnostics


def only(diagnostics: list[Diagnostic], code: str, level: Level | None = None) -> Diagnostic:
    """The single diagnostic with `code` (and `level`), which must carry a hint."""
    found = [d for d in diagnostics if d.code == code and (level is None or d.level is level)]
    assert len(found) == 1, f"expected one {code}, got: {[d.render() for d in diagnostics]}"
    assert found[0].hint, f"{code} has no hint"
    return found[0]


def codes(diagnostics: list[Diagnostic]) -> list[str]:
    return [d.code for d in diagnostics]
