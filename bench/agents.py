"""Trivial Python agents the benchmark Blueprints run (kind `python`, `bench.agents:<name>`).

`count` also appends each input to the file named by `MSE_BENCH_LOG` and, when the input equals
`MSE_BENCH_KILL_AT`, kills its own process with SIGKILL: the crash of the crash-and-resume workload.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from .crash import log_step


async def inc(inv: Any) -> int:
    """The trivial step: the input plus one."""
    value: int = inv.input
    return value + 1


def inc_def(inv: Any) -> int:
    """`inc` as a plain function (LangGraph runs such nodes inline; ours, by default, once it has
    proved quick in worker threads)."""
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
    kill_at = os.environ.get("MSE_BENCH_KILL_AT")
    log_step(Path(os.environ["MSE_BENCH_LOG"]), value, int(kill_at) if kill_at else None)
    return value + 1
