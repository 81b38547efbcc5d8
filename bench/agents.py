"""Trivial Python agents the benchmark Blueprints run (kind `python`, `bench.agents:<name>`).

`count` also appends each input to the file named by `MSE_BENCH_LOG` and, when the input equals
`MSE_BENCH_KILL_AT`, kills its own process with SIGKILL: the crash of the crash-and-resume workload.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any


async def inc(inv: Any) -> int:
    """The trivial step: the input plus one."""
    value: int = inv.input
    return value + 1


async def nap(inv: Any) -> float:
    """Sleep for the input's number of seconds: an in-flight step that holds no CPU."""
    seconds: float = inv.input
    await asyncio.sleep(seconds)
    return seconds


async def count(inv: Any) -> int:
    """`inc`, logging each input, and dying abruptly at the configured input."""
    value: int = inv.input
    with open(os.environ["MSE_BENCH_LOG"], "a") as log:
        log.write(f"{value}\n")
    if str(value) == os.environ.get("MSE_BENCH_KILL_AT"):
        os.kill(os.getpid(), signal.SIGKILL)
    return value + 1
