"""Python's own floor: what the bare primitives under each workload cost on this machine."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile

from .children import child_argv
from .harness import Metrics, needs
from .timing import peak_rss_mb, per_unit_us, per_unit_us_async, rss_mb, stopwatch


async def _noop() -> int:
    return 1


def create_task_await(n: int, reps: int) -> Metrics:
    """`await asyncio.create_task(coro())`, one after another: the least a dispatched step can cost."""

    async def once() -> float:
        elapsed = stopwatch()
        for _ in range(n):
            await asyncio.create_task(_noop())
        return elapsed()

    return {"us_per_op": per_unit_us_async(once, n, reps)}


def gather_lanes(lanes: int, reps: int) -> Metrics:
    """Create `lanes` tasks and gather them all: the least a fanout lane with join `all` can cost."""

    async def once() -> float:
        elapsed = stopwatch()
        await asyncio.gather(*(asyncio.create_task(_noop()) for _ in range(lanes)))
        return elapsed()

    return {"us_per_lane": per_unit_us_async(once, lanes, reps)}


def sqlite_commit(n: int, reps: int, synchronous: str = "NORMAL") -> Metrics:
    """One small INSERT per transaction on a WAL database: the least a durable step can cost."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(os.path.join(tmp, "floor.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, step TEXT, status TEXT, value TEXT)")

        def once() -> float:
            elapsed = stopwatch()
            for i in range(n):
                conn.execute("BEGIN")
                conn.execute("INSERT INTO t (step, status, value) VALUES (?, 'pass', ?)", (f"ST-{i}", str(i)))
                conn.execute("COMMIT")
            return elapsed()

        samples = per_unit_us(once, n, reps)
        conn.close()
    return {"us_per_op": samples}


def bare_spawn(child: str, n: int, reps: int) -> Metrics:
    """`asyncio.create_subprocess_exec` of the child, prompt on stdin, read stdout, wait: no engine at all."""
    argv = child_argv(child)
    prompt = b'{"i":1}'

    async def once() -> float:
        elapsed = stopwatch()
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate(prompt)
            if proc.returncode != 0 or not out:
                raise RuntimeError(f"child {argv} failed with {proc.returncode}")
        return elapsed()

    return {"ms_per_op": [us / 1000 for us in per_unit_us_async(once, n, reps)]}


def sleeping_tasks_rss(n: int) -> Metrics:
    """Resident memory with `n` asyncio tasks all parked on one event: the floor for in-flight steps."""

    async def run() -> None:
        gate = asyncio.Event()
        started = 0

        async def sleeper() -> None:
            nonlocal started
            started += 1
            await gate.wait()

        tasks = [asyncio.create_task(sleeper()) for _ in range(n)]
        while started < n:
            await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)

    baseline = rss_mb()
    asyncio.run(run())
    return {"rss_mb": peak_rss_mb(), "baseline_mb": baseline}


def lua_fresh_call(n: int, reps: int) -> Metrics:
    """A new lupa `LuaRuntime`, load one function, call it: the floor of a Lua step with a fresh state."""
    lupa = needs("lupa", ours=False)

    def once() -> float:
        elapsed = stopwatch()
        for i in range(n):
            lua = lupa.LuaRuntime()
            fn = lua.eval("function(x) return x + 1 end")
            fn(i)
        return elapsed()

    return {"us_per_op": per_unit_us(once, n, reps)}
