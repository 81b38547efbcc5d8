"""`Run`: one run of a compiled Blueprint, owned by one object from start to finish.

    async with Run(compiled, store=store, timeout=60, observer=progress) as run:
        result = await run.execute(init_ctx)

Entering the run links its spawner stack and opens its engine session (a bad middleware
configuration raises `DiagnosticError` here, before anything is recorded). `execute` records the
run in the store (when there is one), beats its heartbeat, evaluates the flow through the
dispatcher, copies the engine events a run's history keeps into its journal, and stores the result.
Leaving the block closes the stack and the session.

Cancellation is one scope owned by the run: `cancel(reason)` from anywhere on the loop (a signal
handler, a budget, an HTTP request, `mse runs cancel` seen at a heartbeat) cancels the flow, which
cancels every running step's worker for real, and the run ends `cancelled`; `timeout` (or `expire`,
a caller's own deadline) ends it `failed`. When the task awaiting `execute` is itself cancelled, that
`CancelledError` propagates (the stored run ends `cancelled`).

Any number of runs may share one `Engine` in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from ..blueprint.compiler import CompiledBlueprint, refuse_unavailable_kinds
from ..core.config import EngineConfig
from ..core.engine import Engine, RunContext
from ..core.events import Event
from ..diagnostics import Diagnostic, DiagnosticError
from ..flow import FlowFailed, run_flow
from ..ids import RunId, TaskId
from ..middleware import LayerRegistry, LinkedSpawner
from ..services import RuntimeServices
from ..store import (
    Durability,
    LaunchSnapshot,
    ReplayHit,
    ReplayRow,
    ResumePlan,
    RunJournal,
    RunRecord,
    RunStatus,
    StepEntry,
    Store,
    cancel_run,
    create_run,
    durable_run,
    load_launch,
    prepare_rerun_from,
    prepare_resume,
)
from ..tokens import CapToken
from .dispatcher import AgentPolicy, EngineDispatcher, Journal
from .observer import LiveFeed, RunObserver
from .plan import Workspace, agent_policies, compile_launch, initial_ctx, launch_options, link_stack

ResultStatus = Literal["done", "failed", "cancelled"]

TraceSink = Callable[[str, "str | None", "int | None", Any], None]
"""Where a run's trace events go: `(kind, step_ref, attempt, payload)`."""

TRACED_EVENTS = ("mw.", "attempt_", "task_retry_scheduled", "task_cancelled", "task_suspended", "task_resumed")
"""Engine events a run's journal keeps: middleware decisions, retries, cancellations, suspensions."""

STORE_CANCEL_REASON = "cancelled by `mse runs cancel`"
"""Why a run stopped when its stored status turned `cancelled` under it (seen at a heartbeat)."""


@dataclass(slots=True)
class RunResult:
    status: ResultStatus
    run_id: RunId
    final_ctx: Any = field(default=None, repr=False)
    error: dict[str, Any] | None = None
    partial_ctx: Any = field(default=None, repr=False)
    steps_dispatched: int = 0
    steps_replayed: int = 0

    def keep_partial(self, ctx: Any) -> None:
        """Keep the ctx a cancelled (or timed-out) flow stood at."""
        self.partial_ctx = ctx

    def to_json(self) -> dict[str, Any]:
        """The `mse run --json` document."""
        if self.status == "done":
            return {"status": "done", "run_id": self.run_id, "final_ctx": self.final_ctx}
        return {"status": self.status, "run_id": self.run_id, "error": self.error, "partial_ctx": self.partial_ctx}

    def stored(self) -> Any:
        """What the run record keeps: the final ctx, or the error with the partial ctx."""
        if self.status == "done":
            return self.final_ctx
        return {"error": self.error, "partial_ctx": self.partial_ctx}


class CancelScope:
    """Cancels the task inside it on `cancel(reason)` or when `timeout` seconds have passed since entry.

    Only the cancellation the scope asked for is absorbed (`cancelled_caught`); a cancellation of the
    task from elsewhere leaves the scope as it came.
    """

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout
        self.reason: str | None = None
        """The first reason given; set even before the scope is entered (it then cancels at once)."""
        self.timed_out = False
        self.cancelled_caught = False
        self._task: asyncio.Task[Any] | None = None
        self._requested = False
        self._timer: asyncio.TimerHandle | None = None

    @property
    def cancel_requested(self) -> bool:
        return self._requested

    def cancel(self, reason: str) -> None:
        """Cancel the scope's task (idempotent; the first reason is kept)."""
        if self.reason is None:
            self.reason = reason
        if self._task is not None and not self._requested:
            self._requested = True
            self._task.cancel()

    def expire(self, limit: float | None = None) -> None:
        """Cancel as timed out (the task's own deadline passed, or a caller's `limit` in seconds)."""
        if self.reason is None:
            self.timed_out = True
            if limit is not None:
                self.timeout = limit
        self.cancel("timeout")

    async def __aenter__(self) -> CancelScope:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a CancelScope must be entered inside a task")
        self._task = task
        if self.timeout is not None:
            self._timer = asyncio.get_running_loop().call_later(self.timeout, self.expire)
        if self.reason is not None:
            self._requested = True
            task.cancel()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is None or not self._requested:
            return False
        if exc_type is None or not issubclass(exc_type, asyncio.CancelledError):
            # The body ended before our request was delivered, or turned it into an error: take a
            # pending request here rather than let it hit whatever the task awaits next.
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                if task.uncancel() > 0:
                    raise
                return False
            task.uncancel()
            return False
        if task.uncancel() > 0:
            return False
        self.cancelled_caught = True
        return True


class Run:
    """One run of `compiled`; see the module docstring. Use once: `async with` it, then `execute`.

    `store` records the run (None: in memory only); `durability` is the store's own when None.
    `timeout` fails the run after that many seconds. `observer` hears steps start and finish.
    `workspace` is where step outputs are projected. `engine` is shared with other runs (None: the
    run makes its own, with the store's token secret). `launch` is what a later resume recompiles
    (default: the Blueprint, the init ctx and the workspace). `registry` adds middleware layers;
    `externs` are the functions flow expressions may call; `journal` replaces the store's journal
    (tests, custom persistence); `feed` receives the run's trace events instead of the journal and
    is given a turn after each recorded step and before the result is stored (a server's live feed).
    """

    def __init__(
        self,
        compiled: CompiledBlueprint,
        *,
        store: Store | None = None,
        durability: Durability | str | None = None,
        timeout: float | None = None,
        observer: RunObserver | None = None,
        workspace: Workspace | None = None,
        engine: Engine | None = None,
        run_id: RunId | None = None,
        launch: LaunchSnapshot | None = None,
        registry: LayerRegistry | None = None,
        externs: Mapping[str, Callable[..., Any]] | None = None,
        journal: Journal | None = None,
        feed: LiveFeed | None = None,
    ) -> None:
        self.compiled = compiled
        self.store = store
        self.durability = None if durability is None else Durability(durability)
        self.observer = observer
        self.workspace = workspace or Workspace()
        self.run_id = run_id or RunId.new()
        self.launch = launch
        self.registry = registry
        self.externs = externs
        self.warnings: list[Diagnostic] = []
        """Link warnings of the middleware configuration (set on entry)."""
        self.result: RunResult | None = None
        self._journal = journal
        self._feed = feed
        self._interrupted = False
        self._engine = engine
        self._shared_engine = engine is not None
        self._scope = CancelScope(timeout)
        self._plan: ResumePlan | None = None
        self._token: CapToken | None = None
        self._linked: LinkedSpawner | None = None
        self._policies: dict[str, AgentPolicy] | None = None
        self._executed = False

    # ── continuing stored runs ──────────────────────────────────────────

    @classmethod
    async def create(
        cls,
        store: Store,
        compiled: CompiledBlueprint,
        init_ctx: Any = None,
        *,
        launch: LaunchSnapshot | None = None,
        task_id: TaskId | None = None,
        goal: str | None = None,
        blueprint_ref: Any = None,
        **kwargs: Any,
    ) -> Run:
        """A new run whose record exists (`running`, committed) before this returns; `execute()` runs
        it with `init_ctx`.

        A plan that cannot run here (an unavailable agent kind, a strict check policy with nowhere to
        project) raises `DiagnosticError` before anything is recorded; a run that fails to start
        later (bad middleware on entry) is recorded `failed`.
        """
        workspace = kwargs.pop("workspace", None) or Workspace()
        policies = checked_policies(compiled, workspace)
        launch = launch or LaunchSnapshot(compiled.raw, init_ctx, launch_options(workspace))
        record = await create_run(
            store,
            launch,
            task_id=task_id,
            goal=compiled.id if goal is None else goal,
            blueprint_ref=blueprint_ref,
            run_id=kwargs.pop("run_id", None),
        )
        plan = ResumePlan(record, LaunchSnapshot(launch.blueprint, init_ctx, launch.options), [], RunStatus.PENDING)
        run = cls._continuing(compiled, store, plan, workspace, kwargs)
        run._policies = policies
        return run

    @classmethod
    async def resume(
        cls, store: Store, run_id: RunId | str, *, services: RuntimeServices | None = None, **kwargs: Any
    ) -> Run:
        """The interrupted run `run_id`, taken back to `running`, replaying its finished steps on `execute()`.

        Its Blueprint and workspace come from the stored launch (compiled with the host's `services`);
        a launch that no longer compiles raises `DiagnosticError` and leaves the run as it was.
        """
        plan = await prepare_resume(store, RunId.parse(run_id))
        try:
            compiled, workspace = compile_launch(plan.launch, services=services)
        except DiagnosticError:
            await _give_back(store, plan, "its Blueprint no longer compiles")
            raise
        return cls._continuing(compiled, store, plan, workspace, kwargs)

    @classmethod
    async def rerun_from(
        cls, store: Store, run_id: RunId | str, step: str, *, services: RuntimeServices | None = None, **kwargs: Any
    ) -> Run:
        """The finished run `run_id` again under the same id: steps before `step` replay, `step` on runs anew."""
        rid = RunId.parse(run_id)
        compiled, workspace = compile_launch(await load_launch(store, rid), services=services)
        plan = await prepare_rerun_from(store, rid, step)
        return cls._continuing(compiled, store, plan, workspace, kwargs)

    @staticmethod
    async def request_cancel(store: Store, run_id: RunId | str) -> bool:
        """Cancel the stored run `run_id` from any process: its record turns `cancelled` at once and
        the `Run` executing it, wherever it is, sees that at its next heartbeat and calls
        `cancel(STORE_CANCEL_REASON)` on itself. False when the run had already ended."""
        return await cancel_run(store, RunId.parse(run_id))

    @classmethod
    def _continuing(
        cls, compiled: CompiledBlueprint, store: Store, plan: ResumePlan, workspace: Workspace, kwargs: dict[str, Any]
    ) -> Run:
        for fixed in ("store", "run_id", "launch", "workspace"):
            if fixed in kwargs:
                raise TypeError(f"a continued run takes its {fixed} from the stored run")
        run = cls(compiled, store=store, run_id=plan.run.run_id, launch=plan.launch, workspace=workspace, **kwargs)
        run._plan = plan
        return run

    # ── lifetime ────────────────────────────────────────────────────────

    async def __aenter__(self) -> Run:
        try:
            if self._engine is None:
                secret = await self.store.token_secret() if self.store is not None else None
                self._engine = Engine(EngineConfig(token_secret=secret))
            if self._policies is None:
                self._policies = checked_policies(self.compiled, self.workspace)
            self._linked, self.warnings = link_stack(self.compiled, self._engine, self, self.workspace, self.registry)
        except BaseException:
            if self._plan is not None and self.store is not None:
                await _give_back(self.store, self._plan, "it failed to start")
            raise
        self._token = self._engine.attach(f"run-{self.run_id}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        linked, self._linked = self._linked, None
        try:
            if linked is not None:
                await linked.aclose()
        finally:
            if self._token is not None and self._engine is not None:
                self._engine.close_session(self._token)
                self._token = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the run has no engine before `async with run:`")
        return self._engine

    @property
    def record(self) -> RunRecord | None:
        """The stored record this run continues or was created with (`create`, `resume`, `rerun_from`)."""
        return self._plan.run if self._plan is not None else None

    @property
    def replayable_steps(self) -> int:
        """How many logged step outcomes a continued run can replay instead of dispatching."""
        return len(self._plan.replay) if self._plan is not None else 0

    @property
    def cancel_reason(self) -> str | None:
        """Why the run was asked to stop (None if it was not)."""
        return self._scope.reason

    def cancel(self, reason: str) -> None:
        """Stop the run: its running steps are cancelled and it ends `cancelled` with `reason`.

        Callable from anywhere on the run's loop, before or during `execute`, more than once (the
        first reason is kept); after the flow has finished it changes nothing.
        """
        self._scope.cancel(reason)

    def expire(self, limit: float) -> None:
        """Stop the run like its own timeout would, for a caller's deadline of `limit` seconds: it
        ends `failed` ("run exceeded its timeout of …")."""
        self._scope.expire(limit)

    def interrupt(self, reason: str) -> None:
        """Stop the run like `cancel`, but leave its record `interrupted` so it can be resumed
        (a server shutting down)."""
        self._interrupted = True
        self.cancel(reason)

    # ── the run ─────────────────────────────────────────────────────────

    async def execute(self, init_ctx: Any = None) -> RunResult:
        """Run the flow to its end, failure or cancellation, recording it; returns the result.

        A continued run (`resume`, `rerun_from`) starts from its stored init ctx when `init_ctx` is None.
        """
        if self._linked is None or self._token is None:
            raise RuntimeError("enter the run first: `async with Run(...) as run: await run.execute(...)`")
        if self._executed:
            raise RuntimeError(f"run {self.run_id} was already executed")
        self._executed = True
        if init_ctx is None and self._plan is not None:
            init_ctx = self._plan.launch.init
        async with contextlib.AsyncExitStack() as stack:
            journal = self._journal
            record = None
            if self.store is not None and journal is None:
                launch = self.launch or LaunchSnapshot(self.compiled.raw, init_ctx, launch_options(self.workspace))
                record = await stack.enter_async_context(
                    durable_run(
                        self.store,
                        launch,
                        plan=self._plan,
                        run_id=self.run_id,
                        goal=self.compiled.id,
                        durability=self.durability,
                        # the scope, not the run: the heartbeat's cancelled task is cyclic garbage
                        # (task, its error, the error's frames), which then holds no engine
                        on_cancel=functools.partial(self._scope.cancel, STORE_CANCEL_REASON),
                    )
                )
                journal = record
            feed = self._feed
            if feed is not None and journal is not None:
                journal = _FedJournal(journal, feed)
            dispatcher = EngineDispatcher(
                self.engine,
                self._token,
                self._linked,
                policies=self._policies,
                metas=self.compiled.metas,
                run=RunContext(self.run_id),
                journal=journal,
                observer=self.observer,
            )
            sink = feed.trace if feed is not None else journal.trace if journal is not None else None
            ctx = initial_ctx(self.compiled, init_ctx)
            if record is not None:
                # recorded in the store: the run works from its own copy, as a resume would (see
                # EngineDispatcher.own)
                ctx = dispatcher.own(ctx)
            async with self._traced(sink, dispatcher):
                result = await self._evaluate(ctx, dispatcher)
            if feed is not None:
                feed.flow_ended()
            if record is not None:
                status = RunStatus(result.status)
                if status is RunStatus.CANCELLED and self._interrupted:
                    status = RunStatus.INTERRUPTED
                await record.finish(status, result.stored())
        self.result = result
        return result

    async def _evaluate(self, ctx: Any, dispatcher: EngineDispatcher) -> RunResult:
        assert self._linked is not None
        scope = self._scope
        result = RunResult("done", self.run_id)
        cancelled = scope.reason is not None
        if not cancelled:
            async with scope:
                try:
                    result.final_ctx = await run_flow(
                        self.compiled.flow, ctx, dispatcher, externs=self.externs, on_cancel=result.keep_partial
                    )
                except FlowFailed as exc:
                    result.status = "failed"
                    result.error = {
                        "message": exc.message,
                        "failed_step": exc.failed_step,
                        "verdict_value": exc.verdict_value,
                    }
                    result.partial_ctx = exc.partial_ctx
            cancelled = scope.cancelled_caught
        if cancelled:
            result.status = "cancelled"
            result.final_ctx = None
            result.error = {"message": f"run cancelled: {scope.reason}", "failed_step": None, "verdict_value": None}
        elif scope.cancel_requested and result.status == "failed":
            result.status = "cancelled"
            assert result.error is not None
            result.error["message"] = f"run cancelled: {scope.reason}"
        if result.status != "cancelled":
            await self._linked.drain()
        elif scope.timed_out:
            result.status = "failed"
            result.error = {
                "message": f"run exceeded its timeout of {scope.timeout:g}s",
                "failed_step": None,
                "verdict_value": None,
            }
        result.steps_dispatched = dispatcher.steps_dispatched
        result.steps_replayed = dispatcher.steps_replayed
        return result

    @contextlib.asynccontextmanager
    async def _traced(self, sink: TraceSink | None, dispatcher: EngineDispatcher) -> AsyncIterator[None]:
        """Copy the engine events this run's history keeps into `sink` while the block runs; every
        event is in `sink` when the block is left.

        On a shared engine only the events of this run's steps (or naming this run) are copied.
        """
        if sink is None:
            yield
            return
        stream = self.engine.events(TRACED_EVENTS)
        mine = None if not self._shared_engine else dispatcher.track_steps()
        run_id = self.run_id

        def copy(event: Event) -> None:
            if mine is not None and event.step_id not in mine and event.data.get("run_id") != run_id:
                return
            sink(event.kind, event.data.get("agent"), event.data.get("attempt"), event.to_json())

        async def forward() -> None:
            async for event in stream:
                copy(event)

        forwarder = asyncio.create_task(forward(), name=f"trace {run_id}")
        try:
            yield
        finally:
            forwarder.cancel()
            await asyncio.gather(forwarder, return_exceptions=True)
            while (event := stream.get_nowait()) is not None:
                copy(event)
            stream.close()


class _FedJournal:
    """A run's journal whose trace goes to its live feed, which gets a turn after each recorded step."""

    def __init__(self, inner: Journal, feed: LiveFeed) -> None:
        self.inner = inner
        self.feed = feed

    def lookup(self, step_ref: str, input_hash: str) -> ReplayHit | None:
        return self.inner.lookup(step_ref, input_hash)

    async def record_step(self, entry: StepEntry, replay: ReplayRow | None) -> None:
        await self.inner.record_step(entry, replay)
        await self.feed.step_recorded()

    def trace(self, kind: str, step_ref: str | None = None, attempt: int | None = None, payload: Any = None) -> None:
        self.feed.trace(kind, step_ref, attempt, payload)


def checked_policies(compiled: CompiledBlueprint, workspace: Workspace) -> dict[str, AgentPolicy]:
    """Each agent's step policies, once the plan is known to run here (else `DiagnosticError`)."""
    refuse_unavailable_kinds(compiled)
    return agent_policies(compiled, workspace)


async def _give_back(store: Store, plan: ResumePlan, why: str) -> None:
    """A taken run that fails before it starts: back to the status it had, or `failed` if it was
    created for this start."""
    if plan.previous_status is RunStatus.PENDING:
        error = {"message": f"the run did not start: {why}", "failed_step": None, "verdict_value": None}
        await RunJournal(store, plan.run.run_id).finish(RunStatus.FAILED, {"error": error, "partial_ctx": None})
    else:
        await store.try_transition(plan.run.run_id, RunStatus.RUNNING, plan.previous_status)


async def run_blueprint(
    compiled: CompiledBlueprint,
    init_ctx: Any = None,
    *,
    engine: Engine | None = None,
    journal: Journal | None = None,
    observer: RunObserver | None = None,
    externs: Mapping[str, Callable[..., Any]] | None = None,
    workspace: Workspace | None = None,
    registry: LayerRegistry | None = None,
    run_id: RunId | None = None,
) -> RunResult:
    """Evaluate the Blueprint's flow to the end (or failure, or cancellation), in memory: one `Run`.

    Raises `DiagnosticError` before anything runs if the middleware configuration is invalid.
    """
    run = Run(
        compiled,
        engine=engine,
        journal=journal,
        observer=observer,
        externs=externs,
        workspace=workspace,
        registry=registry,
        run_id=run_id,
    )
    async with run:
        return await run.execute(init_ctx)


__all__ = [
    "STORE_CANCEL_REASON",
    "TRACED_EVENTS",
    "CancelScope",
    "Run",
    "RunResult",
    "TraceSink",
    "checked_policies",
    "run_blueprint",
]
