"""Run lifecycle on top of a store: create and claim a run, beat its heartbeat, cancel, prepare resume/rerun."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ..ids import RunId, TaskId
from .base import Store
from .errors import RunNotResumable, StoreError, StoreWriteFailed
from .journal import RunJournal
from .owner import current_owner
from .records import (
    TERMINAL,
    Durability,
    LaunchSnapshot,
    ReplayRow,
    RunOwner,
    RunRecord,
    RunStatus,
    TaskRecord,
)

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_SECS = 5.0
CANCELLABLE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.INTERRUPTED})


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What a resumed or re-run run starts from: the run (now `running`), its launch, the replay log to reuse."""

    run: RunRecord
    launch: LaunchSnapshot
    replay: list[ReplayRow]
    previous_status: RunStatus
    """The status before this call took the run, to put back if the relaunch fails to start."""


async def create_run(
    store: Store,
    launch: LaunchSnapshot | None,
    *,
    task_id: TaskId | None = None,
    goal: str = "",
    blueprint_ref: Any = None,
    run_id: RunId | None = None,
) -> RunRecord:
    """Create a `running` run owned by this process (and a task for it unless `task_id` is given); committed."""
    now = time.time()
    if task_id is None:
        task = TaskRecord(
            TaskId.new(), goal, blueprint_ref, None if launch is None else launch.init, RunStatus.RUNNING, now, now
        )
        await store.create_task(task)
        task_id = task.task_id
    else:
        await store.get_task(task_id)
        store.set_task_status(task_id, RunStatus.RUNNING)
    owner = current_owner()
    run = RunRecord(
        run_id or RunId.new(),
        task_id,
        RunStatus.RUNNING,
        now,
        now,
        None,
        None if launch is None else launch.to_json(),
        owner,
        now,
    )
    await store.create_run(run)
    store.append_trace(run.run_id, "core.run_started", payload={"task_id": task_id, "owner": owner.to_json()})
    await store.flush()
    return run


async def claim_run(store: Store, run_id: RunId) -> RunOwner:
    """Record this process as the run's owner, with a fresh heartbeat; committed."""
    owner = current_owner()
    store.set_owner(run_id, owner)
    store.beat(run_id, time.time())
    await store.flush()
    return owner


async def _is_cancelled(store: Store, run_id: RunId) -> bool:
    return (await store.get_run(run_id, with_result=False)).status is RunStatus.CANCELLED


@contextlib.asynccontextmanager
async def heartbeat(
    store: Store,
    run_id: RunId,
    *,
    interval: float = DEFAULT_HEARTBEAT_SECS,
    on_cancel: Callable[[], object] | None = None,
) -> AsyncIterator[None]:
    """Beat the run's heartbeat every `interval` seconds while the block runs.

    Each beat also reads the run's status: when someone else (`mse runs cancel`) cancelled it,
    `on_cancel` is called once, so the owner can cancel the flow for real.
    """

    async def beat() -> None:
        told = False
        while True:
            await asyncio.sleep(interval)
            try:
                store.beat(run_id, time.time())
                await store.flush()
                if on_cancel is not None and not told and await _is_cancelled(store, run_id):
                    told = True
                    on_cancel()
            except Exception:
                log.warning("heartbeat of run %s failed", run_id, exc_info=True)

    task = asyncio.create_task(beat(), name=f"heartbeat {run_id}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def durable_run(
    store: Store,
    launch: LaunchSnapshot | None = None,
    *,
    plan: ResumePlan | None = None,
    run_id: RunId | None = None,
    goal: str = "",
    blueprint_ref: Any = None,
    durability: Durability | str | None = None,
    heartbeat_secs: float = DEFAULT_HEARTBEAT_SECS,
    on_cancel: Callable[[], object] | None = None,
) -> AsyncIterator[RunJournal]:
    """A run's whole stored life: create it (or continue a resume/rerun `plan`), beat, and always finish it.

    The block records steps through the journal and ends with `journal.finish(...)`. If it raises
    instead, the run ends `cancelled` (on cancellation) or `failed` with the error's message; if it
    returns without finishing, the run ends `failed`.
    """
    if plan is None:
        run = await create_run(store, launch, run_id=run_id, goal=goal, blueprint_ref=blueprint_ref)
        journal = RunJournal(store, run.run_id, durability)
    else:
        journal = RunJournal(store, plan.run.run_id, durability, replay=plan.replay)
    async with heartbeat(store, journal.run_id, interval=heartbeat_secs, on_cancel=on_cancel):
        try:
            yield journal
        except StoreWriteFailed as exc:
            # The store refused a write (a full disk): the run is interrupted, resumable once it can
            # be written again. If even this write fails, the next open finds the owner gone and
            # marks it interrupted then.
            if journal.finished is None:
                error = {"error": {"message": exc.message, "failed_step": None, "verdict_value": None}}
                with contextlib.suppress(StoreError):
                    await journal.finish(RunStatus.INTERRUPTED, error)
            raise
        except BaseException as exc:
            if journal.finished is None:
                cancelled = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
                message = str(exc) or type(exc).__name__
                error = {"error": {"message": message, "failed_step": None, "verdict_value": None}}
                await journal.finish(RunStatus.CANCELLED if cancelled else RunStatus.FAILED, error)
            raise
        if journal.finished is None:
            message = "the run ended without recording its result"
            await journal.finish(RunStatus.FAILED, {"error": {"message": message}})


async def cancel_run(store: Store, run_id: RunId) -> bool:
    """Mark a pending, running or interrupted run `cancelled` (its owner notices at the next heartbeat)."""
    run = await store.get_run(run_id, with_result=False)
    if not await store.try_transition(run_id, CANCELLABLE, RunStatus.CANCELLED):
        return False
    store.append_trace(run_id, "core.cancel_requested", payload={"previous": run.status.value})
    store.set_task_status(run.task_id, RunStatus.CANCELLED)
    await store.flush()
    return True


def launch_of(run: RunRecord) -> LaunchSnapshot:
    """The run's launch snapshot, or `RunNotResumable` when it was started without one."""
    if run.input_json is None:
        raise RunNotResumable(
            f"run {run.run_id} has no launch snapshot", "start it again with `mse run`", reason="no_snapshot"
        )
    return LaunchSnapshot.from_json(run.input_json)


async def load_launch(store: Store, run_id: RunId) -> LaunchSnapshot:
    """The launch snapshot of a stored run (to compile its Blueprint before re-running it)."""
    return launch_of(await store.get_run(run_id, with_result=False))


async def _take(store: Store, run: RunRecord, trace_kind: str, payload: dict[str, Any]) -> RunRecord:
    """After the CAS: claim, trace, mark the task; on a store fault put the previous status back."""
    try:
        await claim_run(store, run.run_id)
        store.append_trace(run.run_id, trace_kind, payload=payload)
        store.set_task_status(run.task_id, RunStatus.RUNNING)
        await store.flush()
        return await store.get_run(run.run_id)
    except BaseException:
        await store.try_transition(run.run_id, RunStatus.RUNNING, run.status)
        raise


async def prepare_resume(store: Store, run_id: RunId) -> ResumePlan:
    """Take an `interrupted` run back to `running` (CAS) and return its launch plus the whole replay log."""
    run = await store.get_run(run_id, with_result=False)
    if run.status is not RunStatus.INTERRUPTED:
        raise RunNotResumable(
            f"run {run_id} is {run.status.value}; only an interrupted run can be resumed",
            "use `mse runs rerun-from RUN STEP` to re-run a finished run",
        )
    launch = launch_of(run)
    if not await store.try_transition(run_id, RunStatus.INTERRUPTED, RunStatus.RUNNING, owner=current_owner()):
        raise RunNotResumable(f"run {run_id} was taken by someone else", "check `mse runs show`", reason="conflict")
    replay = await store.list_replay(run_id)
    taken = await _take(store, run, "core.run_resumed", {"replayable_steps": len(replay)})
    return ResumePlan(taken, launch, replay, RunStatus.INTERRUPTED)


async def prepare_rerun_from(store: Store, run_id: RunId, step_ref: str) -> ResumePlan:
    """Take a finished run back to `running` with its replay log cut at the first row of `step_ref`.

    Steps before the cut replay; `step_ref` and everything after it run again. Compile the launch's
    Blueprint (`load_launch`) before calling this: the cut is not undone if the relaunch fails.
    """
    run = await store.get_run(run_id, with_result=False)
    if run.status not in TERMINAL:
        raise RunNotResumable(
            f"run {run_id} is {run.status.value}; rerun-from needs a finished run",
            "wait for it to finish, or cancel it with `mse runs cancel`",
        )
    launch = launch_of(run)
    rows = await store.list_replay(run_id)
    cut = next((i for i, row in enumerate(rows) if row.step_ref == step_ref), None)
    if cut is None:
        if not rows and await store.list_steps(run_id):
            raise RunNotResumable(
                f"run {run_id} has step entries but an empty replay log",
                "it ran with durability exit and did not finish, or its log was cut; start it again",
                reason="empty_log",
            )
        logged = ", ".join(dict.fromkeys(row.step_ref for row in rows)) or "none"
        raise RunNotResumable(
            f"step {step_ref!r} is not in the replay log of run {run_id}",
            f"steps in the log: {logged}",
            reason="step",
        )
    if not await store.try_transition(run_id, run.status, RunStatus.RUNNING, owner=current_owner()):
        raise RunNotResumable(f"run {run_id} was taken by someone else", "check `mse runs show`", reason="conflict")
    try:
        dropped = await store.delete_replay_from(run_id, cut)
    except BaseException:
        await store.try_transition(run_id, RunStatus.RUNNING, run.status)
        raise
    taken = await _take(store, run, "core.run_rerun", {"from_step": step_ref, "kept": cut, "dropped": dropped})
    return ResumePlan(taken, launch, rows[:cut], run.status)
