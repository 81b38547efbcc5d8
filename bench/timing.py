"""Timing and memory helpers shared by the probes: warm-up, repetitions, per-unit microseconds, RSS."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable, Coroutine
from typing import Any


def per_unit_us(run_once: Callable[[], float], units: int, reps: int, warmup: int = 1) -> list[float]:
    """Call `run_once` (returning elapsed seconds) `warmup + reps` times; microseconds per unit of each rep."""
    for _ in range(warmup):
        run_once()
    return [run_once() / units * 1e6 for _ in range(reps)]


def per_unit_us_async(
    run_once: Callable[[], Coroutine[Any, Any, float]], units: int, reps: int, warmup: int = 1
) -> list[float]:
    """`per_unit_us` for a coroutine function; each repetition gets a fresh event loop."""
    return per_unit_us(lambda: asyncio.run(run_once()), units, reps, warmup)


def stopwatch() -> Callable[[], float]:
    """Start a clock; calling the result gives the seconds since."""
    start = time.perf_counter()
    return lambda: time.perf_counter() - start


def rss_mb() -> float:
    """The current resident set size of this process in MB (from /proc, Linux)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 1e6


def peak_rss_mb() -> float:
    """The peak resident set size of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
