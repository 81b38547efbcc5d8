"""Plain `def` worker functions in the pool of `worker/threads.py`: off the loop, bounded, cancellable."""

from __future__ import annotations

import asyncio
import contextvars
import math
import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.eager import start_eager
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.run import run_blueprint
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker.adapter import InProcSpawner, WorkerInvocation
from mlua_swarm.worker.threads import MAX_THREADS, QUICK_WAIT_SECS, THREADS, RunTime, WorkerThreads, in_thread

from ..conftest import SRC, run_one

ROOT = Path(__file__).resolve().parents[2]
WAITS = [pytest.param(QUICK_WAIT_SECS, id="quick-wait"), pytest.param(0.0, id="no-quick-wait")]
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


@pytest.fixture
def pools() -> Iterator[Callable[..., WorkerThreads]]:
    made: list[WorkerThreads] = []

    def make(**options: Any) -> WorkerThreads:
        made.append(WorkerThreads(**options))
        return made[-1]

    yield make
    for pool in made:
        pool.close()


def plus_one(value: int) -> int:
    return value + 1


@pytest.mark.parametrize("wait", WAITS)
async def test_the_function_runs_off_the_loop_thread_and_its_result_comes_back(
    wait: float, pools: Callable[..., WorkerThreads]
) -> None:
    pool = pools(quick_wait=wait)
    ran_on = await pool.call(lambda _: threading.get_ident(), None)
    assert ran_on != threading.get_ident()
    assert [await pool.call(plus_one, i) for i in range(50)] == list(range(1, 51))
    assert await in_thread(lambda _: threading.get_ident(), None) != threading.get_ident()


@pytest.mark.parametrize("wait", WAITS)
async def test_an_exception_is_raised_to_the_caller(wait: float, pools: Callable[..., WorkerThreads]) -> None:
    pool = pools(quick_wait=wait)

    def bad(_: Any) -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        await pool.call(bad, None)
    assert await pool.call(plus_one, 1) == 2


@pytest.mark.parametrize("wait", WAITS)
async def test_the_callers_contextvars_are_visible(wait: float, pools: Callable[..., WorkerThreads]) -> None:
    pool = pools(quick_wait=wait)
    request_id.set("r-42")
    assert await pool.call(lambda _: request_id.get(), None) == "r-42"


@pytest.mark.parametrize("wait", WAITS)
async def test_the_caller_learns_how_long_the_function_itself_ran(
    wait: float, pools: Callable[..., WorkerThreads]
) -> None:
    pool = pools(quick_wait=wait)
    quick, working, failing = RunTime(), RunTime(), RunTime()
    began = time.monotonic()
    assert await pool.call(plus_one, 1, quick) == 2
    assert 0 <= quick.secs < time.monotonic() - began
    assert await pool.call(lambda _: threading.Event().wait(0.02), None, working) is False
    assert 0.02 <= working.secs < 30

    def bad(_: Any) -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        await pool.call(bad, None, failing)
    assert 0 <= failing.secs < 30
    release, still_running = threading.Event(), RunTime()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pool.call(lambda _: release.wait(30), None, still_running), 0.01)
    assert still_running.secs == math.inf
    release.set()


async def test_the_loop_waits_for_a_quick_function_but_not_again_after_one_outlasted_the_wait(
    pools: Callable[..., WorkerThreads],
) -> None:
    pool = pools(max_threads=2, quick_wait=0.0)
    both = threading.Barrier(2, timeout=30)
    await asyncio.gather(pool.call(lambda _: both.wait(), None), pool.call(lambda _: both.wait(), None))
    pool.quick_wait = 60.0
    # both threads are started and idle; a call that completes inside `start_eager` returned
    # without suspending: the loop waited for it
    quick = start_eager(pool.call(plus_one, 1))
    assert quick.done() and quick.result() == 2
    release = threading.Event()
    pool.quick_wait = 0.01
    blocked = start_eager(pool.call(lambda _: release.wait(30), None))
    assert not blocked.done()
    pool.quick_wait = 60.0
    second = threading.Event()
    after = start_eager(pool.call(lambda _: second.wait(30), None))
    # had the loop waited, `start_eager` would have come back only after `second.wait` timed out
    assert not after.done(), "the loop waited again right after a function outlasted the wait"
    second.set()
    assert await after is True
    # that function returned within the wait: a free thread is waited for again, the first still blocked
    again = start_eager(pool.call(plus_one, 3))
    assert again.done() and again.result() == 4 and not blocked.done()
    release.set()
    assert await blocked is True


async def test_the_loop_does_not_wait_when_no_thread_is_free(pools: Callable[..., WorkerThreads]) -> None:
    pool = pools(max_threads=1, quick_wait=0.0)
    release = threading.Event()
    blocked = start_eager(pool.call(lambda _: release.wait(30), None))
    pool.quick_wait = 60.0
    queued = start_eager(pool.call(plus_one, 1))
    assert not queued.done()
    release.set()
    assert await blocked is True and await queued == 2


async def test_blocking_functions_run_in_parallel_up_to_the_bound(pools: Callable[..., WorkerThreads]) -> None:
    pool = pools(max_threads=4)
    barrier = threading.Barrier(4, timeout=30)
    assert sorted(await asyncio.gather(*(pool.call(lambda i: (barrier.wait(), i)[1], i) for i in range(4)))) == [
        0,
        1,
        2,
        3,
    ]
    assert pool.threads == 4


async def test_jobs_beyond_the_bound_wait_for_a_free_thread(pools: Callable[..., WorkerThreads]) -> None:
    pool = pools(max_threads=3)
    entered = threading.Semaphore(0)
    release = threading.Event()

    def blocked(i: int) -> int:
        entered.release()
        release.wait(30)
        return i

    calls = [asyncio.ensure_future(pool.call(blocked, i)) for i in range(5)]
    for _ in range(3):
        assert await asyncio.to_thread(entered.acquire, timeout=30)
    # all three threads are held by `release`, so no fourth function can have started
    assert pool.threads == 3 and not entered.acquire(blocking=False)
    release.set()
    assert await asyncio.gather(*calls) == [0, 1, 2, 3, 4]
    assert pool.threads == 3


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_cancel_and_timeout_return_at_once_while_the_function_still_blocks(
    how: str, pools: Callable[..., WorkerThreads]
) -> None:
    pool = pools()
    entered, release, returned = threading.Event(), threading.Event(), threading.Event()

    def stubborn(_: Any) -> str:
        entered.set()
        release.wait(30)
        returned.set()
        return "late"

    began = time.monotonic()
    if how == "cancel":
        call = asyncio.ensure_future(pool.call(stubborn, None))
        assert await asyncio.to_thread(entered.wait, 30)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    else:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.call(stubborn, None), 0.05)
        assert entered.is_set()
    assert time.monotonic() - began < 5
    assert not returned.is_set()
    release.set()
    assert await asyncio.to_thread(returned.wait, 30)
    assert await pool.call(plus_one, 1) == 2


async def test_an_exception_fails_the_attempt_with_its_type_and_message(engine: Engine, op: CapToken) -> None:
    def refuse(inv: WorkerInvocation) -> None:
        raise KeyError(inv.input)

    step = await engine.start_task(op, TaskSpec("refuse", {"n": 1}))
    with pytest.raises(DispatchFailed, match=r"KeyError: \{'n': 1\}"):
        await engine.dispatch_attempt(op, step, InProcSpawner().register("refuse", refuse))
    assert engine.read_task_state(op, step).status == "failed"


async def test_a_step_timeout_ends_the_step_while_its_function_still_blocks(engine: Engine, op: CapToken) -> None:
    release, returned = threading.Event(), threading.Event()

    def hangs(inv: WorkerInvocation) -> str:
        release.wait(30)
        returned.set()
        return "late"

    began = time.monotonic()
    outcome = await run_one(engine, op, InProcSpawner().register("hangs", hangs), TaskSpec("hangs", timeout_secs=0.1))
    assert outcome.kind == "timeout" and time.monotonic() - began < 5
    assert not returned.is_set()
    release.set()
    assert await asyncio.to_thread(returned.wait, 30)


lanes_barrier = threading.Barrier(MAX_THREADS, timeout=30)


def meet(inv: WorkerInvocation) -> int:
    """A lane that returns only once `MAX_THREADS` lanes are inside it at the same time."""
    lanes_barrier.wait()
    value: int = inv.input
    return value


def fanout(n: int, fn: str) -> dict[str, Any]:
    return {
        "id": "lanes",
        "flow": {
            "kind": "fanout",
            "items": {"op": "lit", "value": list(range(n))},
            "bind": {"op": "path", "at": "$.item"},
            "body": {
                "kind": "step",
                "ref": "s",
                "in": {"op": "path", "at": "$.item"},
                "out": {"op": "path", "at": "$.r"},
            },
            "join": "all",
            "out": {"op": "path", "at": "$.lanes"},
        },
        "agents": [{"name": "s", "kind": "python", "spec": {"callable": f"tests.worker.test_threads:{fn}"}}],
    }


async def test_a_fanout_of_plain_functions_runs_max_threads_lanes_at_once() -> None:
    compiled = compile_blueprint(fanout(MAX_THREADS, "meet"), base_dir=ROOT, fns={})
    result = await run_blueprint(compiled)
    assert result.status == "done", result.error
    assert THREADS.threads <= MAX_THREADS


def inc(inv: WorkerInvocation) -> int:
    value: int = inv.input
    return value + 1


async def test_many_runs_leave_no_more_than_max_threads_behind() -> None:
    compiled = compile_blueprint(fanout(3 * MAX_THREADS, "inc"), base_dir=ROOT, fns={})
    before, started_before = set(threading.enumerate()), THREADS.threads
    for _ in range(30):
        result = await run_blueprint(compiled)
        assert result.status == "done", result.error
    new = set(threading.enumerate()) - before
    assert len(new) == THREADS.threads - started_before and 1 <= THREADS.threads <= MAX_THREADS
    assert all(t.name.startswith("mse-worker-") and t.daemon for t in new)


CHILD = """
import asyncio, threading
from mlua_swarm.worker.threads import THREADS, in_thread

async def main():
    assert await in_thread(lambda x: x + 1, 1) == 2
    if {still_running}:
        forever = threading.Event()
        try:
            await asyncio.wait_for(in_thread(lambda _: forever.wait(), None), 0.05)
        except TimeoutError:
            pass
    print("threads", THREADS.threads)

asyncio.run(main())
"""


@pytest.mark.parametrize("still_running", [False, True], ids=["idle-pool", "function-still-blocked"])
def test_the_pool_never_keeps_the_interpreter_alive(still_running: bool) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD.replace("{still_running}", str(still_running))],
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["threads", "1"]


def _in_forked_child() -> None:
    assert asyncio.run(in_thread(plus_one, 1)) == 2


async def test_a_forked_child_starts_its_own_threads() -> None:
    assert await in_thread(plus_one, 1) == 2
    child = multiprocessing.get_context("fork").Process(target=_in_forked_child)
    child.start()
    try:
        await asyncio.to_thread(child.join, 60)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
