"""What the `ray` kind's tests share: the agents module the Ray workers import, and Blueprints using it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

AGENTS_MODULE = "ray_test_agents"
"""Every test writes the same module text under this name: a Ray worker keeps the module it first imported."""

AGENTS = """
import json, os, pathlib, threading, time


def ray_task_id():
    import ray  # here, not at the top: compiling a Blueprint imports this module and must not need ray

    return ray.get_runtime_context().get_task_id()


def echo(inv):
    return {
        "input": inv.input,
        "prompt": inv.prompt,
        "agent": inv.agent,
        "attempt": inv.attempt,
        "task_id": str(inv.task_id),
        "token": inv.token.encode(),
        "role": inv.token.role.value,
        "run_id": inv.context.run_id if inv.context else None,
        "pid": os.getpid(),
        "parent": os.getppid(),
        "ray_task": ray_task_id(),
    }


async def echo_async(inv):
    return {"input": inv.input, "pid": os.getpid()}


def square(inv):
    return inv.input * inv.input


def fail(inv):
    raise ValueError(f"no good: {inv.input}")


def exits(inv):
    raise SystemExit(3)


def lock(inv):
    return threading.Lock()


def a_set(inv):
    return {1, 2}


def sleeper(inv):
    folder, tag = pathlib.Path(inv.input["dir"]), inv.input["tag"]
    (folder / f"{tag}.started").write_text(str(os.getpid()))
    after = inv.input.get("after")  # another task's marker to wait for first
    while after and not (folder / after).exists():
        time.sleep(0.01)
    deadline = time.monotonic() + inv.input.get("secs", 60)
    try:
        while time.monotonic() < deadline:  # Python code between short waits: a graceful cancel lands here
            time.sleep(0.01)
    except KeyboardInterrupt:
        (folder / f"{tag}.interrupted").write_text("")
        raise
    (folder / f"{tag}.finished").write_text("")
    return tag


def stubborn(inv):
    folder = pathlib.Path(inv.input["dir"])
    (folder / "stubborn.started").write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            time.sleep(0.01)
        except KeyboardInterrupt:
            (folder / "stubborn.ignored").write_text("")
    return "outlived"


def flaky(inv):
    with open(inv.input["log"], "a") as fh:
        fh.write(json.dumps({"attempt": inv.attempt, "token": inv.token.encode(),
                             "ray_task": ray_task_id()}) + "\\n")
    if inv.attempt < 3:
        raise RuntimeError(f"attempt {inv.attempt} fails")
    return inv.attempt


def counted(inv):
    with open(inv.input["log"], "a") as fh:
        fh.write("ran\\n")
    return inv.input["n"] * 2
"""


def write_agents(folder: Path) -> None:
    (folder / f"{AGENTS_MODULE}.py").write_text(AGENTS)


def agent(name: str, fn: str | None = None, **spec: Any) -> dict[str, Any]:
    """A ray agent calling `ray_test_agents:<fn>` (default: its own name)."""
    return {"name": name, "kind": "ray", "spec": {"callable": f"{AGENTS_MODULE}:{fn or name}", **spec}}


def step(ref: str, at: str = "$.in", out: str = "$.out") -> dict[str, Any]:
    return {"kind": "step", "ref": ref, "in": {"op": "path", "at": at}, "out": {"op": "path", "at": out}}


def blueprint(flow: dict[str, Any], *agents: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "ray-test", "flow": flow, "agents": list(agents), **extra}


def write_blueprint(folder: Path, bp: dict[str, Any]) -> Path:
    write_agents(folder)
    path = folder / "bp.json"
    path.write_text(json.dumps(bp))
    return path


def wait_for(path: Path, timeout: float = 60) -> None:
    """Wait until `path` exists (a Ray task's signal that it got there)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


async def arrived(path: Path, timeout: float = 60) -> None:
    """`wait_for` without holding up the event loop."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        await asyncio.sleep(0.02)
