"""The engine: token-gated step state, dispatch of attempts to spawners, and the output tail.

In engine vocabulary a "task" is one dispatched Blueprint step, keyed by `StepId`. State lives in
plain dicts touched only from the event loop's thread and never across an `await`, so it needs no
lock. Everything slow (spawning, joining) happens between short synchronous sections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import time
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

from ..errors import (
    AttemptClosed,
    DispatchFailed,
    EngineError,
    OutputBudgetExceeded,
    PollTimeout,
    ResourceNotFound,
    ResumeKeyNotFound,
    SpawnDepthExceeded,
    TaskNotFound,
    TokenTaskMismatch,
    VerdictPartMissing,
    VerdictValueRejected,
)
from ..ids import ResumeKey, RunId, SessionId, StepId
from ..jsontext import text_of
from ..tokens import CapToken, Role, TokenBook, TokenRecord, Verb
from .budget import event_bytes, over_budget_message
from .config import EngineConfig, RetryPolicy
from .contract import SpawnerAdapter, SpawnError, Worker, WorkerCancelled, WorkerError
from .ctx import AgentContextView, Ctx, CtxMeta, OperatorInfo
from .events import EVENT_ENVELOPE, Event, EventBus, EventStream
from .fold import MISSING, comparable, fold_tail, is_skip_marker, last_staged, unwrap_skip_marker
from .output import Artifact, Final, OutputEvent
from .projection import Projection, project_final, project_part
from .state import ALLOWED, ENDED, SETTLED, OutcomeKind, StepStatus, check_transition

log = logging.getLogger(__name__)


# Enum members the engine reads on every step, as plain class attributes: on Python 3.11 reading a
# member off its Enum class goes through the metaclass's `__getattr__` hook, several times the cost.


class _S:
    """Step statuses (`StepStatus` members)."""

    BLOCKED: ClassVar[StepStatus] = StepStatus.BLOCKED
    CANCELLED: ClassVar[StepStatus] = StepStatus.CANCELLED
    FAILED: ClassVar[StepStatus] = StepStatus.FAILED
    PASS: ClassVar[StepStatus] = StepStatus.PASS
    PENDING: ClassVar[StepStatus] = StepStatus.PENDING
    RUNNING: ClassVar[StepStatus] = StepStatus.RUNNING
    SUSPENDED: ClassVar[StepStatus] = StepStatus.SUSPENDED
    TIMEOUT: ClassVar[StepStatus] = StepStatus.TIMEOUT


class _V:
    """Token verbs (`Verb` members)."""

    CANCEL_TASK: ClassVar[Verb] = Verb.CANCEL_TASK
    DETACH_SESSION: ClassVar[Verb] = Verb.DETACH_SESSION
    DISPATCH_ATTEMPT: ClassVar[Verb] = Verb.DISPATCH_ATTEMPT
    EMIT_OUTPUT: ClassVar[Verb] = Verb.EMIT_OUTPUT
    FETCH_DATA: ClassVar[Verb] = Verb.FETCH_DATA
    FETCH_PROMPT: ClassVar[Verb] = Verb.FETCH_PROMPT
    POLL_TASK: ClassVar[Verb] = Verb.POLL_TASK
    QUERY_SENIOR: ClassVar[Verb] = Verb.QUERY_SENIOR
    READ_TASK_STATE: ClassVar[Verb] = Verb.READ_TASK_STATE
    START_TASK: ClassVar[Verb] = Verb.START_TASK
    VERIFY_TOKEN: ClassVar[Verb] = Verb.VERIFY_TOKEN


class _R:
    """Token roles (`Role` members)."""

    OPERATOR: ClassVar[Role] = Role.OPERATOR
    WORKER: ClassVar[Role] = Role.WORKER


@dataclass(frozen=True, slots=True)
class VerdictContract:
    """The verdict values an agent may report, read from the Final body or its staged `verdict` part."""

    channel: Literal["body", "part"]
    values: tuple[str, ...]

    @classmethod
    def from_value(cls, value: VerdictContract | Mapping[str, Any] | None) -> VerdictContract | None:
        if value is None or isinstance(value, VerdictContract):
            return value
        channel = value.get("channel", "body")
        if channel not in ("body", "part"):
            raise ValueError(f"verdict channel must be 'body' or 'part', got {channel!r}")
        return cls(channel, tuple(str(v) for v in value.get("values", ())))


@dataclass(slots=True)
class TaskSpec:
    """What to run for one step: the agent, its input, and its per-step policies."""

    agent: str
    initial_directive: Any = None
    step_ctx: Any = None
    timeout_secs: float | None = None
    retry: RetryPolicy | Mapping[str, Any] | None = None
    verdict: VerdictContract | Mapping[str, Any] | None = None
    submit_format: str | None = None
    """`"text"` keeps string values verbatim instead of parsing JSON out of them."""
    projection: Projection | None = None
    """Write each Final and staged part as files (see `core.projection`)."""

    def __post_init__(self) -> None:
        if self.retry is not None:
            self.retry = RetryPolicy.from_value(self.retry)
        if self.verdict is not None:
            self.verdict = VerdictContract.from_value(self.verdict)
        if self.timeout_secs is not None and self.timeout_secs <= 0:
            raise ValueError("timeout_secs must be positive")


class DispatchOutcome(NamedTuple):
    """How one step's dispatch ended (a named tuple: immutable, and built at the cost of a tuple)."""

    kind: OutcomeKind
    """`pass`, `blocked`, `skip`, `cancelled` or `timeout`; a failed attempt raises `DispatchFailed`."""
    value: Any = None
    attempt: int = 0


@dataclass(slots=True)
class RunContext:
    """The run an attempt belongs to; its id lands in `ctx.meta.runtime["run_id"]`."""

    run_id: RunId


@dataclass(frozen=True, slots=True)
class StepSnapshot:
    step_id: StepId
    agent: str
    status: StepStatus
    attempt: int
    last_result: Any
    created_at: float
    updated_at: float
    suspended_on: ResumeKey | None

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.step_id,
            "agent": self.agent,
            "status": self.status.value,
            "attempt": self.attempt,
            "last_result": self.last_result,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "suspended_on": self.suspended_on,
        }


@dataclass(slots=True)
class _Session:
    id: SessionId
    operator_id: str
    role: Role
    operator: OperatorInfo
    attached: bool = True


class _Step:
    """One step's state; a plain slotted class (one is made per step, so its constructor is kept lean)."""

    __slots__ = (
        "attempt",
        "backoff",
        "busy",
        "created_at",
        "depth",
        "held",
        "id",
        "last_result",
        "parent",
        "refused",
        "spec",
        "staged",
        "stats",
        "status",
        "suspended_on",
        "tails",
        "token",
        "transient",
        "updated_at",
        "waiter",
        "worker",
    )

    def __init__(self, step_id: StepId, spec: TaskSpec, depth: int, parent: StepId | None = None) -> None:
        self.id = step_id
        self.spec = spec
        self.depth = depth
        self.parent: StepId | None = parent
        """The step whose worker started this one (its token may dispatch it); None for operator steps."""
        self.status = _S.PENDING
        self.attempt = 0
        self.created_at = time.time()
        self.updated_at = 0.0
        self.last_result: Any = None
        self.worker: Worker | None = None
        self.token: CapToken | None = None
        # Per-attempt records, keyed by attempt, each made on its first entry (most steps never need
        # some of them) and dropped when the step is released: a retained finished step keeps none.
        self.tails: dict[int, list[OutputEvent]] | None = None
        self.staged: dict[int, list[str]] | None = None
        self.stats: dict[int, dict[str, Any]] | None = None
        self.transient: dict[int, int] | None = None
        """How many Progress/Partial events each attempt's tail holds (bounded by the config)."""
        self.refused: dict[int, str] | None = None
        """Why the engine refused an attempt's Final, for the failure message when no Final landed."""
        self.held = 0
        """What the live attempt's tail weighs (`core.budget`); `_OVER` once it passed the budget."""
        self.suspended_on: ResumeKey | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.backoff: asyncio.Future[None] | None = None
        self.busy = 0


class Engine:
    """Token-gated step state and attempt dispatch. Cheap to construct; one per process is typical."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        secret = self.config.token_secret or secrets.token_bytes(32)
        self.config.token_secret = secret
        self._tokens = TokenBook(secret)
        self._steps: dict[StepId, _Step] = {}
        self._finished: deque[StepId] = deque()
        self._sessions: dict[str, _Session] = {}
        self._contracts: dict[str, VerdictContract] = {}
        self._resumes: dict[ResumeKey, asyncio.Future[Any]] = {}
        self._resources: dict[str, Any] = {}
        self._bus = EventBus(self.config.event_queue_size, self.config.event_queue_bytes)

    # ── sessions ──────────────────────────────────────────────────────────

    def attach(
        self,
        operator_id: str,
        role: Role = _R.OPERATOR,
        ttl_secs: int = 86_400,
        *,
        operator: OperatorInfo | None = None,
    ) -> CapToken:
        """Open a session and mint its token."""
        token = self._tokens.mint(operator_id, role, ttl_secs)
        session = _Session(SessionId.new(), operator_id, role, operator or OperatorInfo())
        self._sessions[token.fingerprint] = session
        if self._bus.active:
            self.publish("session_attached", None, session_id=session.id, role=role.value)
        return token

    def detach(self, token: CapToken) -> None:
        self._tokens.verify(token, _V.DETACH_SESSION)
        session = self._sessions.get(token.fingerprint)
        if session is not None:
            session.attached = False
            if self._bus.active:
                self.publish("session_detached", None, session_id=session.id)

    def close_session(self, token: CapToken) -> None:
        """Forget a session and its token (a finished run's); later use of the token is refused."""
        self._tokens.verify(token, _V.DETACH_SESSION)
        session = self._sessions.pop(token.fingerprint, None)
        self._tokens.forget(token)
        if session is not None and self._bus.active:
            self.publish("session_detached", None, session_id=session.id)

    def register_verdict_contract(self, agent: str, contract: VerdictContract | Mapping[str, Any]) -> None:
        """An engine-wide contract for `agent`; a `TaskSpec.verdict` takes precedence."""
        resolved = VerdictContract.from_value(contract)
        assert resolved is not None
        self._contracts[agent] = resolved

    # ── steps ─────────────────────────────────────────────────────────────

    async def start_task(self, token: CapToken, spec: TaskSpec) -> StepId:
        """Create a pending step for `spec`; its id is what `run_step` and the worker tokens name."""
        return self.new_step(token, spec)

    def new_step(self, token: CapToken, spec: TaskSpec) -> StepId:
        """`start_task` for code already on the event loop's thread (no coroutine)."""
        record = self._tokens.verify(token, _V.START_TASK)
        depth = 0
        parent_id = record.step_id if record.minted[1] is _R.WORKER else None
        if parent_id is not None:
            parent = self._steps.get(parent_id)
            depth = (parent.depth if parent else 0) + 1
            if depth >= self.config.max_spawn_depth:
                raise SpawnDepthExceeded(depth, self.config.max_spawn_depth)
        step_id = StepId.new()
        self._steps[step_id] = _Step(step_id, spec, depth, parent_id)
        if self._bus.active:
            self.publish("task_created", step_id, agent=spec.agent)
        return step_id

    def read_task_state(self, token: CapToken, step_id: StepId) -> StepSnapshot:
        self._tokens.verify(token, _V.READ_TASK_STATE, step_id)
        return self._snapshot(self._step(step_id))

    async def poll_task(self, token: CapToken, step_id: StepId, hold_secs: float = 0.0) -> StepSnapshot:
        """The step's state once it is settled (ended or suspended), waiting up to `hold_secs`."""
        self._tokens.verify(token, _V.POLL_TASK, step_id)
        st = self._step(step_id)
        if st.status in SETTLED or hold_secs <= 0:
            return self._snapshot(st)
        deadline = time.monotonic() + hold_secs
        while st.status not in SETTLED:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PollTimeout(f"step {step_id} still {st.status.value} after {hold_secs}s")
            if st.waiter is None or st.waiter.done():
                st.waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(remaining):
                    await asyncio.shield(st.waiter)
            except TimeoutError:
                continue
        return self._snapshot(st)

    async def cancel_task(self, token: CapToken, step_id: StepId) -> StepSnapshot:
        """Cancel the step for real: its running worker's cancel token fires; the step stays cancelled."""
        self._tokens.verify(token, _V.CANCEL_TASK, step_id)
        st = self._step(step_id)
        if st.status in (_S.PASS, _S.CANCELLED):
            return self._snapshot(st)
        self._set_status(st, _S.CANCELLED)
        if st.worker is not None:
            st.worker.cancel_token().cancel()
        if st.backoff is not None and not st.backoff.done():
            st.backoff.set_result(None)
        self.publish("task_cancelled", step_id)
        return self._snapshot(st)

    def release_task(self, token: CapToken, step_id: StepId) -> None:
        """Drop what a finished step holds (its input, result, tails and stats) once its owner has
        recorded it; the step's state stays readable until evicted like any finished step, and what
        it keeps till then is a few objects for the garbage collector to scan (the step, its id and
        its spec), not its per-attempt records.

        A run calls this for each step it has written to its journal (or, when ephemeral, folded
        into its ctx), so the engine does not keep finished steps' outputs. Annotations that land
        later (an async audit) still go on the emptied tail. A step still running or in use, or
        an unknown one, is left alone.
        """
        self._tokens.verify(token, _V.CANCEL_TASK, step_id)
        st = self._steps.get(step_id)
        if st is None or st.status not in ENDED or st.busy:
            return
        st.spec.initial_directive = None
        st.spec.step_ctx = None
        st.last_result = None
        st.tails = st.staged = st.stats = st.transient = st.refused = None
        if st.waiter is not None and st.waiter.done():
            st.waiter = None

    # ── dispatch ──────────────────────────────────────────────────────────

    async def dispatch_attempt(
        self, token: CapToken, step_id: StepId, spawner: SpawnerAdapter, *, run: RunContext | None = None
    ) -> DispatchOutcome:
        """Run one attempt: mint a worker token, spawn, join (honouring timeout and cancel), fold the tail.

        A worker token may dispatch only the steps its own step started.
        """
        record = self._tokens.verify(token, _V.DISPATCH_ATTEMPT)
        st = self._steps.get(step_id)  # `_step`, inline on the per-step path
        if st is None:
            raise TaskNotFound(step_id)
        if record.minted[1] is _R.WORKER and (st.parent is None or st.parent != record.step_id):
            raise TokenTaskMismatch(str(record.step_id), step_id)
        self._set_status(st, _S.RUNNING)
        st.attempt += 1
        attempt = st.attempt
        st.held = 0
        st.busy += 1
        issued = self._tokens.issue(
            f"worker-of-{step_id}",
            _R.WORKER,
            self.config.worker_token_ttl_secs,
            step_id=step_id,
            with_handle=True,
            attempt_bound=True,
        )
        wtoken = st.token = issued.token
        runtime: dict[str, Any] = {"worker_handle": issued.handle}
        if run is not None:
            runtime["run_id"] = run.run_id
        if st.spec.step_ctx is not None:
            runtime["step_ctx"] = st.spec.step_ctx
        session = self._sessions.get(token.fingerprint)
        ctx = Ctx(step_id, attempt, st.spec.agent, CtxMeta(runtime), session.operator if session else OperatorInfo())
        if self._bus.active:
            self.publish("task_attempt_started", step_id, attempt=attempt, agent=st.spec.agent)
        timeout = st.spec.timeout_secs
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        try:
            try:
                worker = await spawner.spawn(self, ctx, step_id, attempt, wtoken)
            except SpawnError as exc:
                raise self._fail(st, attempt, str(exc)) from exc
            except asyncio.CancelledError:
                self._end(st, attempt, _S.CANCELLED, None)
                raise
            except Exception as exc:
                log.exception("spawner %r crashed for step %s", spawner, step_id)
                raise self._fail(st, attempt, f"internal: spawner crashed: {type(exc).__name__}: {exc}") from exc
            if deadline is None and st.status is not _S.CANCELLED and worker.settled():
                # Already over, nothing to wait for or time: its outcome, without `_join`'s coroutine.
                st.worker = worker
                return self._outcome(st, attempt, None)
            return await self._join(st, attempt, worker, deadline)
        finally:
            st.busy -= 1
            st.worker = None
            st.token = None
            self._tokens.forget(wtoken)

    async def _join(self, st: _Step, attempt: int, worker: Worker, deadline: float | None) -> DispatchOutcome:
        """Wait for the worker until the attempt's deadline (counted from before the spawn).

        A worker that blocked the event loop past its deadline finishes before the timer can fire;
        it times out all the same once the loop has control again.
        """
        st.worker = worker
        if st.status is _S.CANCELLED:
            worker.cancel_token().cancel()
        scope = asyncio.timeout_at(deadline) if deadline is not None else None
        error: WorkerError | None = None
        owner_cancelled = False
        try:
            if scope is None:
                if not worker.settled():
                    await worker.join()
            else:
                async with scope:
                    await worker.join()
        except TimeoutError:
            pass
        except WorkerError as exc:
            error = exc
            task = asyncio.current_task()
            owner_cancelled = task is not None and task.cancelling() > 0
        except asyncio.CancelledError:
            owner_cancelled = True
        timed_out = scope is not None and (scope.expired() or _past(scope))
        if owner_cancelled or timed_out:
            worker.cancel_token().cancel()
            await _reap(worker)
            if owner_cancelled:
                self._end(st, attempt, _S.CANCELLED, None)
                raise asyncio.CancelledError()
            self._end(st, attempt, _S.TIMEOUT, None)
            return DispatchOutcome("timeout", None, attempt)
        return self._outcome(st, attempt, error)

    def _outcome(self, st: _Step, attempt: int, error: WorkerError | None) -> DispatchOutcome:
        """The attempt's outcome once its worker ended (`error`: how it failed) in time and uncancelled
        by its owner: its tail folded, or why it failed."""
        if st.held == _OVER:
            assert st.refused is not None
            raise self._fail(st, attempt, st.refused[attempt])
        if st.status is _S.CANCELLED or isinstance(error, WorkerCancelled):
            self._end(st, attempt, _S.CANCELLED, None)
            return DispatchOutcome("cancelled", None, attempt)
        if error is not None:
            raise self._fail(st, attempt, str(error))
        tails, staged = st.tails, st.staged
        folded = fold_tail(
            tails.get(attempt, []) if tails is not None else [],
            staged.get(attempt) if staged is not None else None,
            raw=st.spec.submit_format == "text",
        )
        if folded is None:
            refused = st.refused.get(attempt) if st.refused is not None else None
            raise self._fail(
                st, attempt, "no Final in output_tail" + (f" (a Final was refused: {refused})" if refused else "")
            )
        value, ok = folded
        if not ok:
            self._end(st, attempt, _S.BLOCKED, value)
            return DispatchOutcome("blocked", value, attempt)
        self._end(st, attempt, _S.PASS, value)
        if type(value) is dict and is_skip_marker(value):
            return DispatchOutcome("skip", unwrap_skip_marker(value), attempt)
        return DispatchOutcome("pass", value, attempt)

    def run_step(
        self, token: CapToken, step_id: StepId, spawner: SpawnerAdapter, *, run: RunContext | None = None
    ) -> Coroutine[Any, Any, DispatchOutcome]:
        """Dispatch with the step's retry policy: new attempts after the listed outcomes, with backoff.

        Without retries this is the one attempt's coroutine itself (no coroutine of its own).
        """
        st = self._steps.get(step_id)  # `_step`, inline on the per-step path
        if st is None:
            raise TaskNotFound(step_id)
        policy = st.spec.retry
        assert policy is None or isinstance(policy, RetryPolicy)
        if policy is None or policy.max_attempts <= 1:
            return self.dispatch_attempt(token, step_id, spawner, run=run)
        return self._run_retried(token, st, policy, spawner, run)

    async def _run_retried(
        self, token: CapToken, st: _Step, policy: RetryPolicy, spawner: SpawnerAdapter, run: RunContext | None
    ) -> DispatchOutcome:
        step_id = st.id
        st.busy += 1
        try:
            while True:
                failure: DispatchFailed | None = None
                try:
                    outcome = await self.dispatch_attempt(token, step_id, spawner, run=run)
                    kind: str = outcome.kind
                except DispatchFailed as exc:
                    failure, kind = exc, "failed"
                attempt = st.attempt
                if kind not in policy.on or attempt >= policy.max_attempts or st.status is _S.CANCELLED:
                    if failure is not None:
                        raise failure
                    return outcome
                delay_ms = policy.delay_ms(attempt)
                self.publish("task_retry_scheduled", step_id, attempt=attempt, outcome=kind, delay_ms=delay_ms)
                if delay_ms > 0:
                    await self._backoff(st, delay_ms / 1000)
                if _cancelled(st):
                    return DispatchOutcome("cancelled", None, attempt)
        finally:
            st.busy -= 1

    async def _backoff(self, st: _Step, delay: float) -> None:
        loop = asyncio.get_running_loop()
        st.backoff = loop.create_future()
        handle = loop.call_later(delay, _resolve, st.backoff)
        try:
            await st.backoff
        finally:
            handle.cancel()
            st.backoff = None

    def _fail(self, st: _Step, attempt: int, message: str) -> DispatchFailed:
        if st.status is _S.CANCELLED:
            self._end(st, attempt, _S.CANCELLED, None)
        else:
            self._end(st, attempt, _S.FAILED, {"error": message})
        return DispatchFailed(message)

    def _end(self, st: _Step, attempt: int, status: StepStatus, value: Any) -> None:
        """Record an attempt's outcome; a step already cancelled stays cancelled."""
        if st.status is not _S.CANCELLED:
            self._set_status(st, status)
            st.last_result = value
        if self._bus.active:
            # The result is one of the attempt's outputs, so what they weigh bounds it.
            data = {"attempt": attempt, "status": st.status.value, "result": st.last_result}
            size = EVENT_ENVELOPE + (st.held if st.held != _OVER else 0)
            self._bus.publish(Event("task_attempt_completed", st.id, data, size=size))
        self._finished.append(st.id)
        if len(self._finished) > self.config.retain_finished_steps:
            self._evict()

    def _evict(self) -> None:
        """Forget the oldest finished steps beyond the retention bound (steps in use are kept)."""
        steps = self._steps
        while len(self._finished) > self.config.retain_finished_steps:
            old = self._finished.popleft()
            st = steps.get(old)
            if st is not None and st.status in ENDED and not st.busy:
                del steps[old]

    def _set_status(self, st: _Step, status: StepStatus) -> None:
        if status not in ALLOWED[st.status]:
            check_transition(st.id, st.status, status)  # raises InvalidTransition
        st.status = status
        st.updated_at = time.time()
        if status in SETTLED and st.waiter is not None and not st.waiter.done():
            st.waiter.set_result(None)

    # ── worker side ───────────────────────────────────────────────────────

    async def fetch_prompt(self, token: CapToken, step_id: StepId) -> Any:
        """The step's input (a JSON value), for the worker holding `token`."""
        return self.prompt(token, step_id)

    def prompt(self, token: CapToken, step_id: StepId) -> Any:
        """`fetch_prompt` for code already on the event loop's thread (no coroutine)."""
        self._tokens.verify(token, _V.FETCH_PROMPT, step_id)
        st = self._steps.get(step_id)  # `_step`, inline on the per-step path
        if st is None:
            raise TaskNotFound(step_id)
        return st.spec.initial_directive

    async def fetch_worker_payload(self, token: CapToken, step_id: StepId) -> dict[str, Any]:
        """What an out-of-process worker fetches: ids, agent, the rendered prompt and its context view."""
        self._tokens.verify(token, _V.FETCH_PROMPT, step_id)
        st = self._step(step_id)
        attempt = max(st.attempt, 1)
        view = AgentContextView(step_id, st.spec.agent, attempt)
        payload: dict[str, Any] = {
            "task_id": step_id,
            "attempt": attempt,
            "agent": st.spec.agent,
            "prompt": text_of(st.spec.initial_directive),
            "context": view.to_json(),
        }
        contract = st.spec.verdict or self._contracts.get(st.spec.agent)
        if isinstance(contract, VerdictContract):
            payload["verdict"] = {"channel": contract.channel, "values": list(contract.values)}
        return payload

    async def submit_output(
        self,
        token: CapToken,
        step_id: StepId,
        attempt: int,
        event: OutputEvent,
        *,
        stage: bool = False,
        size: int | None = None,
    ) -> None:
        """Append a worker event to its attempt's tail; a Final is checked against the verdict contract first.

        `stage=True` makes an Artifact one of the worker's own parts (folded into `{out, parts}`).
        Output for an attempt that is not the live one is refused: a late completion changes nothing.
        A refused Final's reason is kept for the attempt's failure message. `size` is what a Final or
        Artifact weighs when the caller knows it (the body it arrived in); the event that would take
        the attempt past `max_attempt_output_bytes` raises `OutputBudgetExceeded` and fails the attempt.
        """
        self.emit(token, step_id, attempt, event, stage=stage, size=size)

    def emit(
        self,
        token: CapToken,
        step_id: StepId,
        attempt: int,
        event: OutputEvent,
        *,
        stage: bool = False,
        size: int | None = None,
    ) -> None:
        """`submit_output` for code already on the event loop's thread (no coroutine)."""
        try:
            self._tokens.verify(token, _V.EMIT_OUTPUT, step_id)
            st = self._steps.get(step_id)  # `_step`, inline on the per-step path
            if st is None:
                raise TaskNotFound(step_id)
            if attempt != st.attempt or st.status is not _S.RUNNING:
                raise AttemptClosed(f"step {step_id} attempt {attempt} is not running (status {st.status.value})")
            if type(event) is Final and event.ok and (st.spec.verdict is not None or self._contracts):
                self._check_verdict(st, attempt, event)
        except EngineError as exc:
            if type(event) is Final:
                self._note_refusal(step_id, attempt, exc)
            raise
        weight = self._append(st, attempt, event, size)
        if stage and type(event) is Artifact:
            if st.staged is None:
                st.staged = {}
            st.staged.setdefault(attempt, []).append(event.name)
        if self._bus.heard and self._bus.wants("worker_output"):
            data = {"attempt": attempt, "event": event.to_json()}
            self._bus.publish(Event("worker_output", step_id, data, size=EVENT_ENVELOPE + weight))
        projection = st.spec.projection
        if projection is not None:
            if type(event) is Final:
                project_final(projection, step_id, attempt, event.ok, event.content.as_value())
            elif stage and type(event) is Artifact:
                project_part(projection, step_id, event.name, event.content.as_value())

    def _append(self, st: _Step, attempt: int, event: OutputEvent, size: int | None) -> int:
        """Put `event` on the attempt's tail. Finals and Artifacts stay; Progress and Partial events
        are kept only up to `tail_transient_events` (the oldest half is dropped when it is reached),
        so a worker streaming without end does not grow the engine. What the tail keeps may weigh
        `max_attempt_output_bytes` (`core.budget`): the event that would pass it is refused, and the
        attempt fails. Returns the event's weight."""
        lasting = type(event) is Final or type(event) is Artifact
        weight = size if size is not None and lasting else event_bytes(event)
        held = st.held + weight
        if held > self.config.max_attempt_output_bytes:
            raise self._over_budget(st, attempt, weight)
        st.held = held
        tails = st.tails
        if tails is None:
            tails = st.tails = {}
        tail = tails.get(attempt)
        if tail is None:
            tail = tails[attempt] = []
        tail.append(event)
        if lasting:
            return weight
        keep = self.config.tail_transient_events
        if st.transient is None:
            st.transient = {}
        transient = st.transient.get(attempt, 0) + 1
        if transient > keep:
            drop = transient - keep // 2
            kept: list[OutputEvent] = []
            for ev in tail:
                if drop and (type(ev) is not Final and type(ev) is not Artifact):
                    drop -= 1
                    held -= event_bytes(ev)
                    continue
                kept.append(ev)
            tails[attempt] = kept
            st.held = held
            transient = keep // 2
        st.transient[attempt] = transient
        return weight

    def _over_budget(self, st: _Step, attempt: int, weight: int) -> OutputBudgetExceeded:
        """Refuse an event past the attempt's output budget: the attempt is marked to fail with the
        reason, and its worker is stopped. (An in-process worker still inside `spawn` has no handle
        to stop yet; every event it emits from now on is refused, and the attempt fails when it ends.)"""
        limit = self.config.max_attempt_output_bytes
        if st.held == _OVER:
            assert st.refused is not None
            return OutputBudgetExceeded(st.refused[attempt], limit, limit)
        held_events = len(st.tails.get(attempt, ())) if st.tails is not None else 0
        message = over_budget_message(st.spec.agent, attempt, limit, st.held, weight, held_events)
        if st.refused is None:
            st.refused = {}
        st.refused[attempt] = message
        held, st.held = st.held, _OVER
        if st.worker is not None:
            st.worker.cancel_token().cancel()
        return OutputBudgetExceeded(message, limit, held)

    def _note_refusal(self, step_id: StepId, attempt: int, exc: EngineError) -> None:
        st = self._steps.get(step_id)
        if st is not None and attempt == st.attempt and st.held != _OVER:
            if st.refused is None:
                st.refused = {}
            st.refused[attempt] = str(exc)

    def _check_verdict(self, st: _Step, attempt: int, final: Final) -> None:
        contract = st.spec.verdict or self._contracts.get(st.spec.agent)
        if contract is None:
            return
        assert isinstance(contract, VerdictContract)
        allowed = list(contract.values)
        if contract.channel == "body":
            value = comparable(final.content.as_value())
            if value not in contract.values:
                raise VerdictValueRejected(value, allowed)
            return
        tails, parts = st.tails, st.staged
        staged = last_staged(
            tails.get(attempt, []) if tails is not None else [],
            parts.get(attempt) if parts is not None else None,
            "verdict",
        )
        if staged is MISSING:
            raise VerdictPartMissing(allowed)
        value = comparable(staged)
        if value not in contract.values:
            raise VerdictValueRejected(value, allowed)

    def annotate_attempt(self, step_id: StepId, attempt: int, event: Artifact) -> bool:
        """Append an observer's Artifact (an audit) to an attempt's tail, even after the attempt ended.

        It is never one of the worker's parts and never changes the outcome; False if the step is gone.
        """
        st = self._steps.get(step_id)
        if st is None or not 1 <= attempt <= st.attempt:
            return False
        if st.tails is None:
            st.tails = {}
        st.tails.setdefault(attempt, []).append(event)
        if self._bus.wants("worker_output"):
            self.publish("worker_output", step_id, attempt=attempt, event=event.to_json())
        return True

    def output_tail(self, step_id: StepId, attempt: int) -> list[OutputEvent]:
        st = self._steps.get(step_id)
        return list(st.tails.get(attempt, ())) if st is not None and st.tails is not None else []

    def staged_parts(self, step_id: StepId, attempt: int) -> list[str]:
        st = self._steps.get(step_id)
        return list(st.staged.get(attempt, ())) if st is not None and st.staged is not None else []

    def record_worker_stats(self, step_id: StepId, attempt: int, stats: Mapping[str, Any]) -> None:
        st = self._steps.get(step_id)
        if st is None:
            return
        if st.stats is None:
            st.stats = {}
        current = st.stats.get(attempt)
        if current is None:
            st.stats[attempt] = {**stats}
        else:
            current.update(stats)

    def worker_stats(self, step_id: StepId, attempt: int) -> dict[str, Any]:
        st = self._steps.get(step_id)
        return dict(st.stats.get(attempt, {})) if st is not None and st.stats is not None else {}

    def worker_record(self, token: CapToken) -> TokenRecord:
        """The live record of a token presented from outside: signature, expiry and role checked."""
        return self._tokens.verify(token, _V.VERIFY_TOKEN)

    def resolve_handle(self, handle: str) -> TokenRecord:
        """The live worker-token record behind a `wh-` handle."""
        return self._tokens.resolve_handle(handle)

    def remint_worker_token(self, token: CapToken, *, with_handle: bool = False) -> CapToken:
        """A fresh worker token (and `wh-` handle) for the same step; the caller forgets it when done."""
        return self._tokens.remint(token, self.config.worker_token_ttl_secs, with_handle=with_handle)

    def handle_of(self, token: CapToken) -> str | None:
        return self._tokens.handle_of(token)

    def forget_worker_token(self, token: CapToken) -> None:
        """Drop a re-minted worker token and its handle: later uses are refused."""
        self._tokens.forget(token)

    def set_resource(self, key: str, value: Any) -> None:
        self._resources[key] = value

    async def fetch_data(self, token: CapToken, key: str) -> Any:
        self._tokens.verify(token, _V.FETCH_DATA)
        if key not in self._resources:
            raise ResourceNotFound(f"no resource named {key!r}")
        return self._resources[key]

    # ── senior escalation ────────────────────────────────────────────────

    async def query_senior(self, token: CapToken, step_id: StepId, question: Any) -> ResumeKey:
        """Suspend the step until `resume(key, answer)`."""
        self._tokens.verify(token, _V.QUERY_SENIOR, step_id)
        st = self._step(step_id)
        self._set_status(st, _S.SUSPENDED)
        key = ResumeKey.for_senior(step_id)
        st.suspended_on = key
        self._resumes[key] = asyncio.get_running_loop().create_future()
        if self._bus.active:
            self.publish("senior_queried", step_id, key=key, question=question)
            self.publish("task_suspended", step_id, key=key)
        return key

    def resume(self, key: ResumeKey, answer: Any) -> None:
        """Answer a suspended step; it goes back to running."""
        future = self._resumes.get(key)
        if future is None:
            raise ResumeKeyNotFound(f"no pending question under {key}")
        if not future.done():
            future.set_result(answer)
        for st in self._steps.values():
            if st.suspended_on == key and st.status is _S.SUSPENDED:
                st.suspended_on = None
                self._set_status(st, _S.RUNNING)
                if self._bus.active:
                    self.publish("task_resumed", st.id, key=key)
                    self.publish("senior_answered", st.id, answer=answer)

    async def await_resume(self, key: ResumeKey, timeout_secs: float) -> Any:
        future = self._resumes.get(key)
        if future is None:
            raise ResumeKeyNotFound(f"no pending question under {key}")
        if future.done():
            return self._resumes.pop(key).result()
        if timeout_secs <= 0:
            raise PollTimeout(f"no answer under {key} yet")
        try:
            async with asyncio.timeout(timeout_secs):
                answer = await asyncio.shield(future)
        except TimeoutError:
            raise PollTimeout(f"no answer under {key} after {timeout_secs}s") from None
        self._resumes.pop(key, None)
        return answer

    # ── events ────────────────────────────────────────────────────────────

    def events(self, prefixes: tuple[str, ...] | None = None) -> EventStream:
        """Subscribe to engine events (use `async with engine.events() as stream: async for ev in stream`).

        With `prefixes`, only kinds starting with one of them are delivered, and the engine does not
        build its per-step events for this subscriber.
        """
        return self._bus.subscribe(prefixes)

    def publish(self, kind: str, step_id: StepId | None = None, **data: Any) -> None:
        """Send an event to the subscribers that want it; layers use namespaced kinds such as `mw.rate_limited`."""
        if self._bus.heard and self._bus.wants(kind):
            self._bus.publish(Event(kind, step_id, data))

    @property
    def has_subscribers(self) -> bool:
        return self._bus.active

    # ── introspection ────────────────────────────────────────────────────

    def live_step_count(self) -> int:
        return len(self._steps)

    def token_count(self) -> int:
        return len(self._tokens)

    def _step(self, step_id: StepId) -> _Step:
        st = self._steps.get(step_id)
        if st is None:
            raise TaskNotFound(step_id)
        return st

    @staticmethod
    def _snapshot(st: _Step) -> StepSnapshot:
        return StepSnapshot(
            st.id, st.spec.agent, st.status, st.attempt, st.last_result, st.created_at, st.updated_at, st.suspended_on
        )


_OVER = sys.maxsize
"""`_Step.held` of an attempt whose output passed its budget: every later event is refused too."""


def _cancelled(st: _Step) -> bool:
    return st.status is _S.CANCELLED


def _past(scope: asyncio.Timeout) -> bool:
    """The deadline passed while the worker held the loop, so the timer never had a chance to fire."""
    when = scope.when()
    return when is not None and asyncio.get_running_loop().time() > when


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _reap(worker: Worker) -> None:
    """Wait for a cancelled worker to finish (its spawner bounds how long that takes)."""
    with contextlib.suppress(WorkerError):
        await worker.join()


__all__ = [
    "DispatchOutcome",
    "Engine",
    "RunContext",
    "StepSnapshot",
    "StepStatus",
    "TaskSpec",
    "VerdictContract",
]
