"""The background sweeper walks /proc at most `SWEEP_DUTY` of the time: after a slow walk (many
processes on the machine) it waits longer before the next one, and never less than `SWEEP_GAP_SECS`."""

from __future__ import annotations

import threading
import time

import pytest

from mlua_swarm.worker import reaper

WALK_SECS = 0.02


def test_the_next_walk_waits_in_proportion_to_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    assert reaper.become_subreaper()
    walks: list[tuple[float, float]] = []
    first, second = threading.Event(), threading.Event()

    def slow_walk(spares: dict[str, int | None]) -> list[int]:
        started = time.monotonic()
        time.sleep(WALK_SECS)  # the walk's own cost, which the sweeper must pace itself by
        walks.append((started, time.monotonic()))
        (first if len(walks) == 1 else second).set()
        return []

    monkeypatch.setattr(reaper, "_sweep", slow_walk)
    sweeper = reaper._Sweeper()
    sweeper.add("first", None)
    assert first.wait(10)
    sweeper.add("second", None)
    assert second.wait(10)
    (_, first_end), (second_start, _) = walks
    assert second_start - first_end >= WALK_SECS / reaper.SWEEP_DUTY * 0.95


def test_a_quick_walk_still_leaves_the_least_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reaper, "_sweep", lambda spares: [])
    sweeper = reaper._Sweeper()
    sweeper._active = 1
    before = time.monotonic()
    sweeper._sweep({"tag": None})
    assert sweeper._next_start >= before + reaper.SWEEP_GAP_SECS
    assert sweeper._active == 0
