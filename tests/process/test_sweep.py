"""A step that ends on its own leaves the /proc walk to the background sweeper, which batches tags."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

import pytest

from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker import reaper
from mlua_swarm.worker.process import ProcessSpawner

from ..conftest import run_one
from .helpers import SAFETY_SECS


def record_walks(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """Record the thread of every /proc walk from now on (the walk itself still runs)."""
    walks: list[threading.Thread] = []
    walk = reaper._parents

    def recorded() -> dict[int, int]:
        walks.append(threading.current_thread())
        return walk()

    monkeypatch.setattr(reaper, "_parents", recorded)
    return walks


def tagged_sleeper(tag: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "1000"], env={**os.environ, reaper.TAG_VARIABLE: tag})


async def test_steps_that_end_normally_do_not_walk_proc_on_the_event_loop(
    engine: Engine, op: CapToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    walks = record_walks(monkeypatch)
    for n in range(10):
        outcome = await run_one(engine, op, ProcessSpawner("cat"), TaskSpec(f"echo-{n}", {"n": n}))
        assert outcome.kind == "pass"
    during_steps = list(walks)
    reaper.flush()
    assert walks, "the steps' tags were never swept"
    assert threading.current_thread() not in during_steps


def test_tags_handed_over_during_a_sweep_are_swept_together_by_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    assert reaper.become_subreaper()
    reaper.flush()
    entered, release = threading.Event(), threading.Event()
    walks: list[threading.Thread] = []
    walk = reaper._parents

    def first_one_held() -> dict[int, int]:
        walks.append(threading.current_thread())
        if len(walks) == 1:
            entered.set()
            assert release.wait(SAFETY_SECS)
        return walk()

    monkeypatch.setattr(reaper, "_parents", first_one_held)
    doomed = [tagged_sleeper(f"doomed-{n}") for n in range(5)]
    bystander = tagged_sleeper("bystander")
    try:
        reaper.sweep_soon("first")
        assert entered.wait(SAFETY_SECS)
        for n, child in enumerate(doomed):
            reaper.sweep_soon(f"doomed-{n}", spare=child.pid)
        release.set()
        reaper.flush()
        assert len(walks) == 2
        assert [child.wait(SAFETY_SECS) for child in doomed] == [-signal.SIGKILL] * 5
        assert bystander.poll() is None
    finally:
        for child in [*doomed, bystander]:
            child.kill()
            child.wait()
