"""Cancel, timeout and owner cancellation kill the child's whole process group, for real."""

import asyncio
import os
import select
import signal
from pathlib import Path

import pytest

from mlua_swarm.core.config import EngineConfig
from mlua_swarm.core.ctx import Ctx
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.ids import StepId
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker import Worker, process
from mlua_swarm.worker.adapter import SpawnerAdapter
from mlua_swarm.worker.process import ProcessSpawner, ProcessWorker

from ..conftest import alive
from .helpers import SAFETY_SECS, Gate, gone, progress_note, py, watch_exit

FORKS_A_GRANDCHILD = """
    import subprocess
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress("ready", json.dumps({"child": os.getpid(), "grandchild": grandchild.pid}))
    time.sleep(1000)
"""

IGNORES_SIGTERM = """
    import signal
    def on_term(signum, frame):
        with open(sys.argv[1], "a") as fh:
            fh.write("term\\n")
    signal.signal(signal.SIGTERM, on_term)
    progress("ready", json.dumps({"child": os.getpid()}))
    while True:
        time.sleep(1000)
"""


async def test_cancel_kills_the_child_and_its_grandchild(engine: Engine, op: CapToken) -> None:
    step = await engine.start_task(op, TaskSpec("forker", "x"))
    async with engine.events() as events:
        dispatch = asyncio.create_task(
            engine.dispatch_attempt(op, step, py(FORKS_A_GRANDCHILD, stream_mode="ndjson_lines"))
        )
        pids = await progress_note(events, "ready")
    async with watch_exit(pids["child"]) as child_exit, watch_exit(pids["grandchild"]) as grandchild_exit:
        await engine.cancel_task(op, step)
        outcome = await dispatch
        assert await gone(child_exit) and await gone(grandchild_exit)
    assert outcome.kind == "cancelled" and engine.read_task_state(op, step).status == "cancelled"
    assert not alive(pids["child"]) and not alive(pids["grandchild"])
    assert engine.worker_stats(step, 1)["signal"] == signal.SIGTERM


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(
    engine: Engine, op: CapToken, tmp_path: Path
) -> None:
    marker = tmp_path / "signals"
    spawner = py(IGNORES_SIGTERM, str(marker), stream_mode="ndjson_lines", kill_grace_secs=0.3)
    step = await engine.start_task(op, TaskSpec("stubborn", "x"))
    async with engine.events() as events:
        dispatch = asyncio.create_task(engine.dispatch_attempt(op, step, spawner))
        pids = await progress_note(events, "ready")
    async with watch_exit(pids["child"]) as child_exit:
        await engine.cancel_task(op, step)
        outcome = await dispatch
        assert await gone(child_exit)
    assert outcome.kind == "cancelled"
    assert marker.read_text() == "term\n"
    assert engine.worker_stats(step, 1)["signal"] == signal.SIGKILL


async def test_the_engine_grace_applies_when_the_agent_sets_none(op: CapToken, tmp_path: Path) -> None:
    engine = Engine(EngineConfig(cancel_grace_secs=0.2))
    op = engine.attach("op")
    step = await engine.start_task(op, TaskSpec("stubborn", "x"))
    async with engine.events() as events:
        spawner = py(IGNORES_SIGTERM, str(tmp_path / "signals"), stream_mode="ndjson_lines")
        dispatch = asyncio.create_task(engine.dispatch_attempt(op, step, spawner))
        await progress_note(events, "ready")
    await engine.cancel_task(op, step)
    assert (await dispatch).kind == "cancelled"
    assert engine.worker_stats(step, 1)["signal"] == signal.SIGKILL


async def test_a_timeout_ends_the_step_timeout_and_kills_the_group(engine: Engine, op: CapToken) -> None:
    step = await engine.start_task(op, TaskSpec("slow", "x", timeout_secs=0.5))
    async with engine.events() as events:
        dispatch = asyncio.create_task(
            engine.dispatch_attempt(op, step, py(FORKS_A_GRANDCHILD, stream_mode="ndjson_lines"))
        )
        pids = await progress_note(events, "ready")
        async with watch_exit(pids["grandchild"]) as grandchild_exit:
            outcome = await dispatch
            assert await gone(grandchild_exit)
    assert outcome.kind == "timeout" and engine.read_task_state(op, step).status == "timeout"
    assert not alive(pids["child"])


async def test_a_timeout_in_plain_mode_with_a_stubborn_child(engine: Engine, op: CapToken, tmp_path: Path) -> None:
    marker = tmp_path / "signals"
    code = """
        import signal
        signal.signal(signal.SIGTERM, lambda *a: open(sys.argv[1], "a").write("term\\n"))
        sys.stdin.read()
        while True:
            time.sleep(1000)
    """
    step = await engine.start_task(op, TaskSpec("slow", "x", timeout_secs=0.5))
    outcome = await engine.dispatch_attempt(op, step, py(code, str(marker), kill_grace_secs=0.2))
    assert outcome.kind == "timeout"
    assert engine.worker_stats(step, 1)["signal"] == signal.SIGKILL


async def test_cancelling_the_dispatching_task_still_kills_the_child(engine: Engine, op: CapToken) -> None:
    step = await engine.start_task(op, TaskSpec("forker", "x"))
    async with engine.events() as events:
        dispatch = asyncio.create_task(
            engine.dispatch_attempt(op, step, py(FORKS_A_GRANDCHILD, stream_mode="ndjson_lines"))
        )
        pids = await progress_note(events, "ready")
    async with watch_exit(pids["child"]) as child_exit, watch_exit(pids["grandchild"]) as grandchild_exit:
        dispatch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await dispatch
        assert await gone(child_exit) and await gone(grandchild_exit)
    assert engine.read_task_state(op, step).status == "cancelled"


async def test_a_grandchild_left_behind_by_a_finished_child_is_killed(
    engine: Engine, op: CapToken, tmp_path: Path
) -> None:
    """The child exits normally but leaves a sleeper holding its stdout; the attempt still ends, sleeper gone."""
    gate = Gate(tmp_path)
    code = """
        import subprocess
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
        progress("ready", json.dumps({"grandchild": sleeper.pid}))
        open(sys.argv[1]).read()
        final("finished")
    """
    step = await engine.start_task(op, TaskSpec("leaver", "x"))
    async with engine.events() as events:
        spawner = py(code, str(gate.path), stream_mode="ndjson_lines")
        dispatch = asyncio.create_task(engine.dispatch_attempt(op, step, spawner))
        pids = await progress_note(events, "ready")
    async with watch_exit(pids["grandchild"]) as grandchild_exit:
        await gate.open()
        outcome = await dispatch
        assert await gone(grandchild_exit)
    assert (outcome.kind, outcome.value) == ("pass", "finished")


class CancelledBeforeItRuns(SpawnerAdapter):
    """Cancels the worker's task right after spawn, before it ever runs (as an instant timeout would)."""

    def __init__(self, inner: ProcessSpawner) -> None:
        self.inner = inner
        self.pidfd: int | None = None
        self.worker: ProcessWorker | None = None

    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
        worker = await self.inner.spawn(engine, ctx, task_id, attempt, token)
        assert isinstance(worker, ProcessWorker)
        self.pidfd = os.pidfd_open(worker.pid)
        self.worker = worker
        worker.handler.completion.cancel()
        return worker


async def test_a_worker_cancelled_before_it_runs_still_kills_the_child(engine: Engine, op: CapToken) -> None:
    spawner = CancelledBeforeItRuns(ProcessSpawner("sleep", ["1000"]))
    step = await engine.start_task(op, TaskSpec("sleeper", "x"))
    outcome = await engine.dispatch_attempt(op, step, spawner)
    assert outcome.kind == "cancelled" and spawner.pidfd is not None
    try:
        readable, _, _ = select.select([spawner.pidfd], [], [], SAFETY_SECS)
        assert readable == [spawner.pidfd]
    finally:
        os.close(spawner.pidfd)
    assert spawner.worker is not None
    async with asyncio.timeout(SAFETY_SECS):
        assert await spawner.worker.process.wait() == -signal.SIGKILL
    assert engine.worker_stats(step, 1)["worker_kind"] == "subprocess"


async def test_output_held_open_by_a_process_outside_the_group_does_not_hang_the_attempt(
    engine: Engine, op: CapToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grandchild that left the group (setsid) and dropped its environment (so the reaper cannot tell
    it is the step's) keeps stdout open; the attempt ends after the bound anyway."""
    monkeypatch.setattr(process, "PIPE_CLOSE_SECS", 0.3)
    code = """
        import subprocess
        r, w = os.pipe()
        sleeper = f"import os, time; os.write({w}, b'x'); time.sleep(1000)"
        escaper = f"import os, sys; os.setsid(); os.execve(sys.executable, [sys.executable, '-c', {sleeper!r}], {{}})"
        escaped = subprocess.Popen([sys.executable, "-c", escaper], pass_fds=[w])
        os.read(r, 1)
        final({"escaped": escaped.pid})
    """
    step = await engine.start_task(op, TaskSpec("daemonizer", "x"))
    outcome = await engine.dispatch_attempt(op, step, py(code, stream_mode="ndjson_lines"))
    escaped = outcome.value["escaped"]
    try:
        assert outcome.kind == "pass" and engine.worker_stats(step, 1)["output_held_open"] is True
        assert alive(escaped), "a process that left the group and its environment is outside our reach"
    finally:
        os.kill(escaped, signal.SIGKILL)
