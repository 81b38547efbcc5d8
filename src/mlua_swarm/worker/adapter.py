"""Python-function workers, and the shapes every spawner shares (`SpawnerAdapter` itself is `core.contract`'s).

A spawner pulls the attempt's prompt itself (`engine.fetch_prompt`) and delivers it however its
worker kind wants (an invocation field, stdin, a frame). `InProcSpawner` is the registry of Python
functions; every other spawner follows its pattern: build a `WorkerJoinHandler`, run the work in a
task the worker owns, and fold the result into exactly one `Final` on the engine's output tail.

A plain `def` function runs in a worker thread or on the event loop: by default it starts in
threads, moves onto the loop once it has proved quick there, and goes back to threads after a slow
call on the loop (`InProcSpawner`).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import json
import time
import types
from asyncio.events import _get_running_loop, _set_running_loop
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeAlias, TypeVar

import orjson

from ..cancel import CancellationToken
from ..core.contract import (
    NotRegistered,
    RejectedByMiddleware,
    SpawnerAdapter,
    SpawnError,
    SpawnInternalError,
    Worker,
    WorkerCancelled,
    WorkerError,
    WorkerFailed,
)
from ..core.ctx import AgentContextView, Ctx
from ..eager import Eager, start_eager
from ..errors import EngineError, VerdictRejected
from ..ids import StepId
from ..jsontext import JsonValueError, check_value, compact
from ..jsontext import text_of as render_prompt
from . import JoinHandleWorker, MiddlewareWorker, WorkerJoinHandler
from .output import EngineSink, Final, Inline, OutputSink
from .threads import RunTime, in_thread

if TYPE_CHECKING:
    from ..core.engine import Engine
    from ..tokens import CapToken


@dataclass(slots=True)
class WorkerResult:
    """What a worker function hands back: the value, whether the agent considers it a success, stats."""

    value: Any
    ok: bool = True
    stats: dict[str, Any] | None = None


_UNSET: Any = object()


@dataclass(slots=True)
class WorkerInvocation:
    """Everything a worker function gets for one attempt.

    `directive` is the step's input as the engine holds it, shared with the flow's ctx, so read it and
    never change it (`input` is the function's own copy): a string is the prompt itself, any other
    JSON value is rendered to the prompt only when `prompt` is read, so a function that reads only
    `input` never pays for the text.
    """

    token: CapToken
    task_id: StepId
    attempt: int
    agent: str
    directive: Any
    sink: OutputSink | None = None
    cancel_token: CancellationToken | None = None
    context: AgentContextView | None = None
    _input: Any = _UNSET
    _prompt: str | None = None

    @property
    def prompt(self) -> str:
        """The input as text: a string as is, anything else as compact JSON."""
        if self._prompt is None:
            self._prompt = render_prompt(self.directive)
        return self._prompt

    @property
    def input(self) -> Any:
        """The prompt parsed as JSON when it parses, else the string itself; never shared with the
        flow ctx, so the function may change it."""
        if self._input is _UNSET:
            self._input = _parsed(self.directive) if isinstance(self.directive, str) else json_copy(self.directive)
        return self._input


def _parsed(text: str) -> Any:
    try:
        return _built(orjson.loads, text, len(text))
    except orjson.JSONDecodeError:
        pass
    try:
        return _built(json.loads, text, len(text))
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return text


_IMMUTABLE = frozenset({int, float, bool, type(None)})


def json_copy(value: Any) -> Any:
    """An independent copy of a JSON value: what rendering it (as a prompt is, a non-finite number as
    `null`) and parsing it back gives, a large value built with the cyclic GC held off (see `_built`)."""
    if type(value) in _IMMUTABLE:
        return value
    try:
        data = orjson.dumps(value)
    except orjson.JSONEncodeError:
        text = compact(value)
        return _built(json.loads, text, len(text))
    return _built(orjson.loads, data, len(data))


_QUIET_GC_BYTES = 32 * 1024
"""JSON text from this size on is parsed with the cyclic GC held off (see `_built`)."""


def _built(parse: Callable[[Any], Any], text: Any, size: int) -> Any:
    """`parse(text)`, holding the cyclic GC off while a large text becomes a tree of new containers.

    Left on, the collector runs every few hundred new containers while the tree is half built, moves
    its parts to the older generations, and the full collections that follow scan the whole heap (for
    a megabyte of input, about as long again as the parse). A caller that keeps the GC off
    (`gc.disable()`) finds it still off.

    Nor is the finished tree traced young: for a megabyte of JSON (~14k containers) the first young
    collection after the GC is back on would take ~1.5 ms while the worker still holds the copy.
    JSON data forms no cycles, so the young generation, tree and all, moves to the oldest one
    unexamined (`gc.freeze()` then `gc.unfreeze()`: two list splices, and the young count back to
    zero). A copy that dies with its step is freed by its reference count wherever it sits; other
    young cyclic garbage waits for the next full collection. Skipped in a process that froze objects
    itself (`mse` commands freeze their heap at start), since `unfreeze` would thaw them.
    """
    if size < _QUIET_GC_BYTES or not gc.isenabled():
        return parse(text)
    gc.disable()
    try:
        return parse(text)
    finally:
        if not gc.get_freeze_count():
            gc.freeze()
            gc.unfreeze()
        gc.enable()


WorkerFn: TypeAlias = Callable[[WorkerInvocation], Any | Awaitable[Any]]
W = TypeVar("W", bound=JoinHandleWorker)


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


class InProcSpawner(SpawnerAdapter, Generic[W]):
    """A registry of Python worker functions keyed by agent name.

    A function may be `async` or plain. It returns a `WorkerResult` or any JSON value (meaning
    `ok=True`); raising means `WorkerFailed`. The function starts at once, inside `spawn`: an `async`
    one that never suspends is finished, Final and all, before `spawn` returns; one that suspends is
    carried on by the task that joins it (`start_eager`).

    Where a plain one runs is its registration's `inline`:

    - `False`: always in a worker thread (`worker/threads.py`), so it may block: a timeout or cancel
      ends its step at once while the function finishes in its thread.
    - `True`: always on the event loop, which saves the thread round trip (a few tens of
      microseconds, most of a trivial step) but stalls every other step, timeout and cancel while it
      runs.
    - `None` (the default), adaptive: its first calls run in worker threads, each timed there. Once
      `PROMOTE_AFTER` calls in a row returned within `QUICK_CALL_SECS`, it is called on the event
      loop; a call there that runs `SLOW_INLINE_SECS` or longer sends it back to worker threads,
      until eight times as many calls in a row were quick. That slow call could not be interrupted:
      it held the loop, and a timeout or cancel of its step, until it returned. What a function
      taught lives as long as this spawner (the compiled Blueprint).

    On the loop, a plain function sees no running event loop, as in a thread: `asyncio.run` inside
    it runs a loop of its own there. A function that waits for the event loop running the flow (for
    instance `asyncio.run_coroutine_threadsafe(..., loop).result()`) would wait forever there: it
    must not be registered `inline=True`, and adaptive placement leaves it in threads, since no
    such call returns within `QUICK_CALL_SECS`.
    """

    worker_kind = "rust_fn"

    def __init__(self, worker_type: type[W] | None = None) -> None:
        self.registry: dict[str, WorkerFn] = {}
        self._async: dict[str, bool] = {}
        self._placement: dict[str, _Placement] = {}
        self._worker_type: type[JoinHandleWorker] = worker_type or MiddlewareWorker

    @classmethod
    def typed(cls, worker_type: type[W]) -> InProcSpawner[W]:
        """A spawner whose workers are of `worker_type` (a per-kind subclass of `JoinHandleWorker`)."""
        return cls(worker_type)

    def register(self, agent: str, fn: WorkerFn, *, inline: bool | None = None) -> InProcSpawner[W]:
        """Register (or replace) the function for `agent`; chainable. `inline` (for a plain function):
        True on the event loop, False in a worker thread, None adaptive (see the class)."""
        self.registry[agent] = fn
        self._async[agent] = _is_async(fn)
        self._placement[agent] = _Placement(inline)
        return self

    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
        agent = ctx.agent
        fn = self.registry.get(agent)
        if fn is None:
            raise NotRegistered(agent)
        try:
            directive = engine.prompt(token, task_id)
        except EngineError as exc:
            raise SpawnInternalError(f"fetch_prompt: {exc}") from exc
        is_async = self._async.get(agent)
        if is_async is None:
            is_async = self._async[agent] = _is_async(fn)
        cancel = CancellationToken()
        view = ctx.meta.runtime.get("agent_context")  # the agent-context layer's view, when it made one
        inv = WorkerInvocation(
            token,
            task_id,
            attempt,
            agent,
            directive,
            EngineSink(engine, token, task_id, attempt),
            cancel,
            view if type(view) is AgentContextView else AgentContextView.from_ctx(ctx),
        )
        if is_async:
            completion = _start_async(engine, fn, inv, self.worker_kind)
        else:
            placement = self._placement.get(agent)
            if placement is None:
                placement = self._placement[agent] = _Placement(None)
            completion = start_eager(_drive(engine, fn, placement, inv, self.worker_kind))
        if isinstance(completion, Eager) and not completion.done():
            cancel.on_cancel(completion.cancel)
        return self._worker_type(WorkerJoinHandler(None, cancel, completion))


PROMOTE_AFTER = 8
"""Calls in a row an adaptive plain function must return within `QUICK_CALL_SECS` in worker threads
before it is called on the event loop; 8 times as many after each time it was sent back."""

QUICK_CALL_SECS = 0.00005
"""The run time (in its thread, the hop excluded) of a call that counts towards `PROMOTE_AFTER`.
Short enough that a function which needs the event loop running the flow to do something for it
(`asyncio.run_coroutine_threadsafe(..., loop).result()`: 64-355 µs here, two wake-ups at least)
does not qualify: on the loop it would wait for itself forever. A trivial function takes well under
a microsecond, a small file read ~11 µs; one that starts an event loop of its own (`asyncio.run`,
~70 µs), waits on the network, a lock or another thread stays in worker threads, where the hop is
a smaller share of its call."""

SLOW_INLINE_SECS = 0.001
"""A call on the event loop of an adaptive function that runs this long sends it back to worker
threads. Not for good: a call of a quick function may run this long through no fault of its own
(the process preempted while in it: on a loaded 2-core VM about one call in 25,000), so it may come
back after `PROMOTE_AFTER` times 8, 64, ... quick calls in a row. A function that does block now and
then thus holds up the loop a few times at most, once more for each eightfold run of quick calls."""


class _Placement:
    """Where a plain function's calls run: on the event loop when `inline`, else in a worker thread;
    an `adaptive` one learns it from its calls (see `InProcSpawner`)."""

    __slots__ = ("adaptive", "inline", "quick_calls", "quick_needed")

    def __init__(self, inline: bool | None) -> None:
        self.adaptive = inline is None
        self.inline = inline is True
        self.quick_calls = 0
        self.quick_needed = PROMOTE_AFTER

    def ran_in_thread(self, secs: float) -> None:
        if secs < QUICK_CALL_SECS:
            self.quick_calls += 1
            if self.quick_calls >= self.quick_needed:
                self.inline = True
        else:
            self.quick_calls = 0

    def ran_slow_inline(self) -> None:
        if self.adaptive:
            self.inline = False
            self.quick_calls = 0
            self.quick_needed *= 8


BLOCKED_LOOP_WARN_SECS = 1.0
"""An async worker running this long without yielding gets a `warnings` entry in its step's stats."""


class _LoopWatch:
    """The longest stretch a coroutine ran without giving the event loop back."""

    __slots__ = ("longest",)

    def __init__(self, longest: float = 0.0) -> None:
        self.longest = longest


def _start_async(
    engine: Engine, fn: WorkerFn, inv: WorkerInvocation, kind: str
) -> Eager[None] | asyncio.Future[None] | None:
    """Run an `async` function up to its first suspension right here.

    One that finishes without suspending is settled at once (its Final submitted; no completion to
    wait for when it ended well): no task, no future, no coroutine of ours around it. One that
    suspends goes on in `_drive_on`, carried on by the task that joins the worker. Either way it runs
    in a copy of the current `contextvars`, as a task of its own would: what it sets stays its own.
    """
    clock = time.monotonic
    context = contextvars.copy_context()
    began = clock()
    try:
        pending, first = context.run(_first_part, fn, inv)
    except BaseException as exc:
        return _settled(engine, inv, kind, clock() - began, None, exc)
    if pending is None:
        return _settled(engine, inv, kind, clock() - began, first, None)
    return start_eager(_drive_on(engine, pending, first, _LoopWatch(clock() - began), inv, kind), context)


def _first_part(fn: WorkerFn, inv: WorkerInvocation) -> tuple[Coroutine[Any, Any, Any] | None, Any]:
    """Call `fn` and run its coroutine up to its first suspension: (the coroutine, what it yielded),
    or (None, its result) when it returned without suspending."""
    pending = fn(inv)
    if type(pending) is not types.CoroutineType and not inspect.iscoroutine(pending):
        pending = _awaiting(pending)
    try:
        return pending, pending.send(None)
    except StopIteration as stop:  # caught here, in the frame it is raised into
        return None, stop.value


def _settled(
    engine: Engine, inv: WorkerInvocation, kind: str, ran: float, result: Any, raised: BaseException | None
) -> asyncio.Future[None] | None:
    """Submit the result of an attempt whose function already returned `result` (or raised `raised`)
    after running `ran` seconds: None when it ended well, else a done future holding the attempt's
    `WorkerError`."""
    try:
        if raised is not None:
            _raise_worker_error(raised)
        submit_result(engine, inv.token, inv.task_id, inv.attempt, result, kind)
    except WorkerError as exc:
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(exc)
        return failed
    finally:
        if ran >= BLOCKED_LOOP_WARN_SECS:
            _note_blocking(engine, inv, ran)
    return None


async def _drive_on(
    engine: Engine, coro: Coroutine[Any, Any, Any], first: Any, watch: _LoopWatch, inv: WorkerInvocation, kind: str
) -> None:
    """Carry on an `async` function that suspended (yielding `first`), then submit its result."""
    try:
        try:
            result = await _watched(coro, first, watch)
        except GeneratorExit:
            raise
        except BaseException as exc:
            _raise_worker_error(exc)
        submit_result(engine, inv.token, inv.task_id, inv.attempt, result, kind)
    finally:
        _note_blocking(engine, inv, watch.longest)


async def _awaiting(awaitable: Awaitable[Any]) -> Any:
    """A coroutine over an awaitable that is not one (an `async`-looking callable's other awaitable)."""
    return await awaitable


@types.coroutine
def _watched(coro: Coroutine[Any, Any, Any], first: Any, watch: _LoopWatch) -> Generator[Any, Any, Any]:
    """`await coro` for a coroutine that has already yielded `first`, timing every stretch it runs."""
    clock = time.monotonic
    pending = first
    while True:
        sent: Any = None
        thrown: BaseException | None = None
        try:
            sent = yield pending
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            thrown = exc
        began = clock()
        try:
            pending = coro.send(sent) if thrown is None else coro.throw(thrown)
        except StopIteration as stop:
            return stop.value
        finally:
            watch.longest = max(watch.longest, clock() - began)


async def _drive(engine: Engine, fn: WorkerFn, placement: _Placement, inv: WorkerInvocation, kind: str) -> None:
    """Run a plain function (on the loop or in a worker thread, as `placement` says, teaching it the
    call's run time), then fold its result into the attempt's one `Final`.

    Whatever the function raises is this attempt's failure, `SystemExit` and `KeyboardInterrupt`
    included: only the run's own cancellation (`CancelledError`) leaves as cancellation.
    """
    watch = _LoopWatch()
    try:
        try:
            if placement.inline:
                # no running loop to be seen, as in a worker thread: `asyncio.run` in it runs its own
                loop = _get_running_loop()
                _set_running_loop(None)
                began = time.monotonic()
                try:
                    result = fn(inv)
                finally:
                    watch.longest = time.monotonic() - began
                    _set_running_loop(loop)
                    if watch.longest >= SLOW_INLINE_SECS:
                        placement.ran_slow_inline()
            elif placement.adaptive:
                run_time = RunTime()
                try:
                    result = await in_thread(fn, inv, run_time)
                finally:
                    placement.ran_in_thread(run_time.secs)
            else:
                result = await in_thread(fn, inv)
        except GeneratorExit:
            raise
        except BaseException as exc:
            _raise_worker_error(exc)
        submit_result(engine, inv.token, inv.task_id, inv.attempt, result, kind)
    finally:
        _note_blocking(engine, inv, watch.longest)


def _raise_worker_error(exc: BaseException) -> NoReturn:
    """Raise what a worker function's exception means for its attempt: the exception itself when it
    stands as it is (a `WorkerError`, or a `CancelledError` of the task carrying the worker on, the one
    that joined it: a timeout around the join, its owner's cancellation, which must go on up as such),
    else the attempt's `WorkerError`, caused by it."""
    if isinstance(exc, WorkerError):
        raise exc
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is not None and task.cancelling() > 0:
            raise exc
        raise WorkerCancelled() from exc
    if isinstance(exc, SpawnError):
        raise WorkerFailed(str(exc)) from exc
    raise WorkerFailed(_describe(exc)) from exc


def _note_blocking(engine: Engine, inv: WorkerInvocation, longest: float) -> None:
    """A warning in the attempt's stats when the function held the event loop `longest` seconds at a stretch."""
    if longest >= BLOCKED_LOOP_WARN_SECS:
        known = engine.worker_stats(inv.task_id, inv.attempt).get("warnings")
        warning = f"blocked the event loop for {longest:.1f} s"
        engine.record_worker_stats(
            inv.task_id, inv.attempt, {"warnings": [*(known if isinstance(known, list) else ()), warning]}
        )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def submit_result(engine: Engine, token: CapToken, task_id: StepId, attempt: int, result: Any, kind: str) -> None:
    """Fold a worker's return value into one `Final` (and its stats); used by every in-process kind,
    on the event loop's thread.

    The value must be JSON data with finite numbers, at most `EngineConfig.max_value_bytes` of JSON
    text (the in-process twin of a child's frame cap); anything else fails the attempt.
    """
    if isinstance(result, WorkerResult):
        value, ok, stats = result.value, result.ok, result.stats
    else:
        value, ok, stats = result, True, None
    engine.record_worker_stats(task_id, attempt, {"worker_kind": kind, **stats} if stats else {"worker_kind": kind})
    try:
        size = check_value(value, engine.config.max_value_bytes)
    except JsonValueError as exc:
        raise WorkerFailed(f"the worker's result is refused: {exc}") from None
    try:
        engine.emit(token, task_id, attempt, Final(Inline(value), ok), size=size)
    except VerdictRejected as exc:
        raise WorkerFailed(f"Final rejected before output_tail: {exc}") from exc
    except EngineError as exc:
        raise WorkerFailed(f"Final refused: {exc}") from exc


__all__ = [
    "BLOCKED_LOOP_WARN_SECS",
    "PROMOTE_AFTER",
    "QUICK_CALL_SECS",
    "SLOW_INLINE_SECS",
    "InProcSpawner",
    "NotRegistered",
    "RejectedByMiddleware",
    "SpawnError",
    "SpawnInternalError",
    "SpawnerAdapter",
    "WorkerCancelled",
    "WorkerError",
    "WorkerFailed",
    "WorkerFn",
    "WorkerInvocation",
    "WorkerResult",
    "render_prompt",
    "submit_result",
]
