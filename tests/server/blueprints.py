"""Blueprints the server tests launch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def P(at: str) -> dict[str, Any]:
    return {"op": "path", "at": at}


def step(ref: str, source: str, out: str) -> dict[str, Any]:
    return {"kind": "step", "ref": ref, "in": P(source), "out": P(out)}


def chain(name: str = "chain3") -> dict[str, Any]:
    """Three identity steps: a ← $.topic, b ← $.a, c ← $.b."""
    return {
        "id": name,
        "flow": {
            "kind": "seq",
            "children": [step("a", "$.topic", "$.a"), step("b", "$.a", "$.b"), step("c", "$.b", "$.c")],
        },
        "agents": [{"name": n, "kind": "rust_fn", "spec": {"fn_id": "identity"}} for n in "abc"],
    }


def child(name: str, script: Path, *, before: str | None = None) -> dict[str, Any]:
    """A subprocess step running `script` (with an optional identity step before it)."""
    children = [step(before, "$.topic", f"$.{before}")] if before else []
    children.append(step("work", "$.topic", "$.work"))
    agents: list[dict[str, Any]] = [
        {"name": "work", "kind": "subprocess", "spec": {"program": sys.executable, "args": [str(script)]}}
    ]
    if before:
        agents.append({"name": before, "kind": "rust_fn", "spec": {"fn_id": "identity"}})
    return {"id": name, "flow": {"kind": "seq", "children": children}, "agents": agents}


def inline(bp: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "inline", "value": bp}
