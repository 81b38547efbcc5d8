"""Shared pieces for the subprocess tests: Python children, event waits, and process-exit watches."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mlua_swarm.core.events import EventStream
from mlua_swarm.worker.process import ProcessSpawner

SRC = Path(__file__).resolve().parents[2] / "src"
PY = sys.executable
SAFETY_SECS = 30.0
"""Upper bound on any wait in these tests, so a regression fails instead of hanging."""

EMIT = textwrap.dedent(
    """
    import json, os, sys, time
    def emit(obj):
        sys.stdout.write(json.dumps(obj) + "\\n")
        sys.stdout.flush()
    def progress(stage, note=None):
        emit({"type": "progress", "stage": stage, "note": note})
    def final(value, ok=True):
        emit({"type": "final", "content": {"kind": "inline", "value": value}, "ok": ok})
    """
)


def py(code: str, *args: str, **options: Any) -> ProcessSpawner:
    """A spawner running `code` in a fresh interpreter (with `emit`/`progress`/`final` predefined)."""
    return ProcessSpawner(PY, ["-c", EMIT + textwrap.dedent(code), *args], **options)


def child_env() -> dict[str, str]:
    """Extra environment that lets a child `import mlua_swarm`."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}


async def progress_note(stream: EventStream, stage: str) -> Any:
    """Wait for the first live `progress` event with `stage`; return its note parsed as JSON."""
    async with asyncio.timeout(SAFETY_SECS):
        async for event in stream:
            body = event.data.get("event") if event.kind == "worker_output" else None
            if body and body.get("type") == "progress" and body.get("stage") == stage:
                note = body.get("note")
                return json.loads(note) if note else None
    raise AssertionError(f"no progress {stage!r} before the event stream closed")


@contextlib.asynccontextmanager
async def watch_exit(pid: int) -> AsyncIterator[asyncio.Future[None]]:
    """A future resolved when process `pid` (any process, not only our child) exits, via a pidfd."""
    fd = os.pidfd_open(pid)
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, ready)
    try:
        yield exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def gone(exited: asyncio.Future[None]) -> bool:
    """True once the watched process has exited (bounded by the safety timeout)."""
    async with asyncio.timeout(SAFETY_SECS):
        await exited
    return True


class Gate:
    """A FIFO a child blocks on (`wait_gate(path)`) until the test opens it: a real signal, not a sleep."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "gate"
        os.mkfifo(self.path)

    async def open(self) -> None:
        await asyncio.to_thread(lambda: open(self.path, "w").close())
