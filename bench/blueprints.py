"""The Blueprints the workloads run, as flow-ir 0.2.0 JSON built in code (sizes vary per mode)."""

from __future__ import annotations

from typing import Any


def _path(at: str) -> dict[str, Any]:
    return {"op": "path", "at": at}


def _python_agent(name: str, fn: str, inline: bool | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"callable": f"bench.agents:{fn}"}
    if inline is not None:
        spec["inline"] = inline
    return {"name": name, "kind": "python", "spec": spec}


def sequence(n: int, fn: str = "inc", inline: bool | None = None) -> dict[str, Any]:
    """A `loop` running one step `n` times; each step adds one to `$.i` (start from `{"i": 0}`).

    `inline` is the agent's `spec.inline` (where a plain `def` agent runs), left out when None.
    """
    return {
        "id": f"bench-sequence-{n}",
        "flow": {
            "kind": "loop",
            "counter": _path("$.round"),
            "cond": {"op": "lt", "lhs": _path("$.i"), "rhs": {"op": "lit", "value": n}},
            "body": {"kind": "step", "ref": "step", "in": _path("$.i"), "out": _path("$.i")},
            "max": n + 1,
        },
        "agents": [_python_agent("step", fn, inline)],
        "default_init_ctx": {"i": 0},
    }


def fanout(items: list[Any], fn: str = "inc") -> dict[str, Any]:
    """A `fanout` over literal `items` with join `all`, one `fn` step per lane.

    The items are a literal, not a ctx path: every lane's ctx is a copy of the root ctx, so a large
    list kept in the root would be shared into every lane's joined result.
    """
    return {
        "id": f"bench-fanout-{len(items)}",
        "flow": {
            "kind": "fanout",
            "items": {"op": "lit", "value": items},
            "bind": _path("$.item"),
            "body": {"kind": "step", "ref": "lane", "in": _path("$.item"), "out": _path("$.out")},
            "join": "all",
            "out": _path("$.lanes"),
        },
        "agents": [_python_agent("lane", fn)],
    }


def loop(steps: int, agent: dict[str, Any], *, value: Any = "go", source: str | None = None) -> dict[str, Any]:
    """A `loop` of exactly `steps` steps of `agent`, each writing its output to `$.r`.

    Each step's input is `source` (a ctx path) when given, else the literal `value`. Only the latest
    output stays in the ctx, so what a run holds should not grow with `steps`.
    """
    given = _path(source) if source is not None else {"op": "lit", "value": value}
    return {
        "id": f"bench-loop-{steps}",
        "flow": {
            "kind": "loop",
            "counter": _path("$.n"),
            "cond": {"op": "lit", "value": True},
            "max": steps,
            "body": {"kind": "step", "ref": agent["name"], "in": given, "out": _path("$.r")},
        },
        "agents": [agent],
    }
