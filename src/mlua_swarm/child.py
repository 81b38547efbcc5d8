"""Helpers for Python programs run as streaming `subprocess` workers (`stream_mode: ndjson_lines`).

    from mlua_swarm import child

    task = child.read_input()            # the prompt from stdin, parsed as JSON when it parses
    child.progress("thinking", "step 1 of 2")
    child.artifact("notes", {"seen": task})
    child.final({"answer": 42})          # the step value; ok=False reports a blocked attempt

Each call writes one NDJSON `OutputEvent` line to stdout and flushes it, so the engine sees it at
once. Only the standard library is used, so a copy of this file works as well as the import.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ChildContext:
    """Who this child is, from its `MSE_*` environment."""

    task_id: str | None
    attempt: int | None
    agent: str | None
    worker_handle: str | None
    token: str | None
    run_id: str | None


def context() -> ChildContext:
    env = os.environ
    attempt = env.get("MSE_ATTEMPT")
    return ChildContext(
        env.get("MSE_TASK_ID"),
        int(attempt) if attempt and attempt.isdigit() else None,
        env.get("MSE_CTX_AGENT"),
        env.get("MSE_WORKER_HANDLE"),
        env.get("MSE_TOKEN"),
        env.get("MSE_RUN_ID"),
    )


def read_prompt() -> str:
    """The whole prompt (stdin up to EOF)."""
    return sys.stdin.read()


def read_input() -> Any:
    """The prompt parsed as JSON when it parses, else the string itself."""
    prompt = read_prompt()
    try:
        return json.loads(prompt)
    except ValueError:
        return prompt


def emit(event: dict[str, Any]) -> None:
    """Write one raw OutputEvent as a line and flush it."""
    out = sys.stdout
    out.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
    out.flush()


def progress(stage: str, note: str | None = None) -> None:
    emit({"type": "progress", "stage": stage, "note": note})


def partial(value: Any) -> None:
    emit({"type": "partial", "chunk": {"kind": "inline", "value": value}})


def artifact(name: str, value: Any) -> None:
    """Stage a named part; the step value becomes `{"out": final, "parts": {name: value}}`."""
    emit({"type": "artifact", "name": name, "content": {"kind": "inline", "value": value}})


def final(value: Any, ok: bool = True) -> None:
    """The attempt's value; the last one written wins."""
    emit({"type": "final", "content": {"kind": "inline", "value": value}, "ok": ok})


__all__ = [
    "ChildContext",
    "artifact",
    "context",
    "emit",
    "final",
    "partial",
    "progress",
    "read_input",
    "read_prompt",
]
