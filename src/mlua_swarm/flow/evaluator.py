"""The async flow evaluator: walks a parsed node tree over one JSON ctx, dispatching steps.

Ownership rule that keeps this cheap: only the root object of a scope's ctx is mutated in place; every
nested value is shared and never changed (path writes copy what they pass through). So a `try` snapshot
and a fanout lane's starting ctx are shallow copies of the root.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, Protocol

from mlua_swarm.eager import Eager
from mlua_swarm.flow.errors import (
    EvalError,
    ExprTypeError,
    FanoutLaneCancelled,
    FlowFailed,
    NonBoolCond,
    StepBlocked,
    StepError,
)
from mlua_swarm.flow.exprs import NO_EXTERNS, Externs, eval_expr
from mlua_swarm.flow.nodes import Assign, Branch, Fanout, Join, Loop, Node, Seq, Step, Try
from mlua_swarm.flow.paths import json_type_name
from mlua_swarm.flow.skip import Skipped

TURN_SECS = 0.002
"""A flow makes sure the event loop has a turn about this often (checked after each step, loop round
and fanout lane run inline; at most twice this apart): steps that all finish without waiting (a
quick `async` agent is settled inside its spawn) would otherwise hold the event loop for the whole
flow, keeping the run's own timeout and cancellation, and every other task, from running."""

FlowCtx = dict[str, Any]
"""The JSON object a flow reads and writes (not `core.ctx.Ctx`, which describes one attempt to a spawner)."""


class StepDispatcher(Protocol):
    """Runs one step: returns its value (or a skip marker), or raises StepBlocked / StepFailed.

    `input` is the evaluated `in` expression, `$step_meta` envelope included; it shares structure with
    the flow ctx, so a dispatcher must treat it as read-only (strip envelopes into a new object).
    """

    async def dispatch(self, step: Step, input: Any) -> Any: ...


class _Turns:
    """When one chain of nodes (in one task) must next make sure the event loop has had a turn.

    A yield helps only a task that would otherwise go on running: when many tasks are ready at once
    the loop runs them all before its timers anyway. So the state is per chain, and a chain that
    waited since its last check (the loop ran `seen`) does not yield: a durable run's steps wait for
    their commits, and an extra turn would only split the commits their batching shares.
    """

    __slots__ = ("due", "seen")

    def __init__(self) -> None:
        self.due = time.monotonic() + TURN_SECS
        self.seen: _Seen | None = None
        """Set when first due: flips once the loop has run a callback queued then."""

    async def take(self) -> None:
        """Once `due`: yield to the loop unless it has run since the last time, and set the next due."""
        seen = self.seen
        if seen is not None and not seen.flag:
            await asyncio.sleep(0)
        self.seen = seen = _Seen()
        asyncio.get_running_loop().call_soon(seen.set)
        self.due = time.monotonic() + TURN_SECS


class _Seen:
    __slots__ = ("flag",)

    def __init__(self) -> None:
        self.flag = False

    def set(self) -> None:
        self.flag = True


class _Scope(_Turns):
    """The ctx one chain of nodes works on (the run, or one fanout lane)."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: FlowCtx) -> None:
        self.ctx = ctx
        self.due = time.monotonic() + TURN_SECS  # _Turns.__init__, inline: a scope per fanout lane
        self.seen = None


class _Runner:
    """Evaluates nodes for one run: the dispatcher and the externs; `_HANDLERS` picks the method per kind."""

    __slots__ = ("_in_lane_start", "dispatcher", "externs")

    def __init__(self, dispatcher: StepDispatcher, externs: Externs) -> None:
        self.dispatcher = dispatcher
        self.externs = externs
        self._in_lane_start = False
        """True while `_lanes` runs a lane inline: it sees to the loop's turns between lanes instead."""

    async def run(self, node: Node, scope: _Scope) -> None:
        """Evaluate `node` against `scope`, updating its ctx."""
        await _HANDLERS[type(node)](self, node, scope)

    async def _step(self, node: Step, scope: _Scope) -> None:
        value = eval_expr(node.input, scope.ctx, self.externs)
        try:
            result = await self.dispatcher.dispatch(node, value)
        except StepBlocked as err:
            raise StepError(node.ref, err, err.value) from err
        except Exception as err:
            raise StepError(node.ref, err) from err
        if type(result) is not Skipped:
            scope.ctx = node.out.set(scope.ctx, result)
        if not self._in_lane_start and time.monotonic() >= scope.due:
            await scope.take()

    async def _seq(self, node: Seq, scope: _Scope) -> None:
        handlers = _HANDLERS
        for child in node.children:
            await handlers[type(child)](self, child, scope)

    async def _branch(self, node: Branch, scope: _Scope) -> None:
        cond = eval_expr(node.cond, scope.ctx, self.externs)
        if cond is True:
            await self.run(node.then, scope)
        elif cond is False:
            await self.run(node.else_, scope)
        else:
            raise NonBoolCond(f"branch cond must evaluate to a boolean, got {json_type_name(cond)}")

    async def _loop(self, node: Loop, scope: _Scope) -> None:
        counter, cond_expr, body = node.counter, node.cond, node.body
        handler = _HANDLERS[type(body)]
        scope.ctx = counter.set(scope.ctx, 0)
        done = 0
        while done < node.max:
            cond = eval_expr(cond_expr, scope.ctx, self.externs)
            if cond is None or cond is False:
                return
            await handler(self, body, scope)
            done += 1
            scope.ctx = counter.set(scope.ctx, done)
            if time.monotonic() >= scope.due:
                await scope.take()

    async def _assign(self, node: Assign, scope: _Scope) -> None:
        scope.ctx = node.at.set(scope.ctx, eval_expr(node.value, scope.ctx, self.externs))

    async def _try(self, node: Try, scope: _Scope) -> None:
        snapshot = dict(scope.ctx)
        try:
            await self.run(node.body, scope)
            return
        except EvalError as err:
            message = str(err)
        scope.ctx = snapshot
        if node.err_at is not None:
            scope.ctx = node.err_at.set(scope.ctx, message)
        await self.run(node.catch, scope)

    async def _fanout(self, node: Fanout, scope: _Scope) -> None:
        items = eval_expr(node.items, scope.ctx, self.externs)
        if not isinstance(items, list):
            raise ExprTypeError(f"fanout items must be an array, got {json_type_name(items)}")
        if items:
            out = await self._join(node, scope.ctx, items)
        elif node.join in (Join.ALL, Join.ALL_SETTLED):
            out = []
        else:
            raise ExprTypeError(f"fanout join {node.join.value!r} needs at least one item")
        scope.ctx = node.out.set(scope.ctx, out)

    async def _lane(self, node: Fanout, parent: FlowCtx, index: int, item: Any, join: _Join) -> None:
        """One lane: its own shallow copy of the parent ctx with the item bound; reports to `join`."""
        try:
            lane = _Scope(node.bind.set(dict(parent), item))
            body = node.body
            await _HANDLERS[type(body)](self, body, lane)
            value = lane.ctx if node.collect is None else eval_expr(node.collect, lane.ctx, self.externs)
        except EvalError as err:
            join.failed(index, err)
        except asyncio.CancelledError:
            join.failed(index, FanoutLaneCancelled(f"fanout lane {index} was cancelled"))
            raise
        except Exception as err:
            join.crashed(err)
        else:
            join.passed(index, value)

    async def _join(self, node: Fanout, parent: FlowCtx, items: list[Any]) -> Any:
        """Run the lanes concurrently and combine them per the join mode; losers are cancelled and awaited."""
        loop = asyncio.get_running_loop()
        join = _Join(node.join, len(items), loop.create_future())
        # asyncio.Task itself unless the loop has a task factory: the same task, without create_task's checks
        start: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]] = (
            partial(asyncio.Task, loop=loop) if loop.get_task_factory() is None else loop.create_task
        )
        starter = start(self._lanes(node, parent, items, join, start))
        try:
            await join.decided
        finally:
            if join.remaining:
                await _cancel_and_await([starter, *(task for task in join.lanes if task is not None)])
        return join.outcome()

    async def _lanes(
        self,
        node: Fanout,
        parent: FlowCtx,
        items: list[Any],
        join: _Join,
        start: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    ) -> None:
        """Start the lanes one after another in this task, until one has to wait.

        Each lane runs in a copy of the context, as a task of its own would. A lane that ends without
        waiting (the common case for in-process agents) costs no task and no loop turn. The first lane
        that has to wait keeps this task for the rest of its life (`asyncio.current_task()`, timeouts
        and cancellation act on it as on a task of its own), and every lane not started yet gets a task
        of its own at once, so they all start in this loop turn. Lanes run here give the event loop its
        turns between them (a step inside one does not), so a long fanout of quick lanes neither holds
        the loop nor loses its lanes to tasks.
        """
        lane, tasks = self._lane, join.lanes
        turns = _Turns()
        for index, item in enumerate(items):
            self._in_lane_start = True
            try:
                started = Eager(lane(node, parent, index, item, join))
            finally:
                self._in_lane_start = False
            if started.done():
                # ended, or cancelled itself (reported as a cancelled lane): the next lane starts; a
                # cancellation of this task could only arrive while it waits, below or in a turn
                if not started.cancelled():
                    started.result()
                if time.monotonic() >= turns.due:
                    await turns.take()
                continue
            for later in range(index + 1, len(items)):
                tasks[later] = start(lane(node, parent, later, items[later], join))
            await started
            return


_HANDLERS: dict[type, Callable[[_Runner, Any, _Scope], Awaitable[None]]] = {
    Step: _Runner._step,
    Seq: _Runner._seq,
    Branch: _Runner._branch,
    Loop: _Runner._loop,
    Fanout: _Runner._fanout,
    Try: _Runner._try,
    Assign: _Runner._assign,
}
"""Each node kind's method, unbound: a runner holding its own bound methods would be a reference cycle,
and a finished run's objects are freed by reference counting, not left to the cyclic collector."""


class _Join:
    """One fanout's join: each lane reports its outcome as it ends (in completion order); `decided`
    resolves once the join mode needs no further lane. Reports after that are ignored."""

    __slots__ = ("crash", "decided", "failure", "lanes", "mode", "remaining", "result", "values")

    def __init__(self, mode: Join, lanes: int, decided: asyncio.Future[None]) -> None:
        self.mode = mode
        self.remaining = lanes
        self.lanes: list[asyncio.Task[None] | None] = [None] * lanes
        """The task running each lane, each dropped as its lane reports (so a finished lane's task and
        coroutine are freed at once, not kept until the whole fanout ends); None for a lane that runs
        in the task that starts them."""
        self.values: list[Any] = [None] * lanes if mode is Join.ALL or mode is Join.ALL_SETTLED else []
        self.result: Any = None
        self.failure: EvalError | None = None
        self.crash: Exception | None = None
        self.decided = decided

    def passed(self, index: int, value: Any) -> None:
        self.lanes[index] = None
        if self.decided.done():
            return
        self.remaining -= 1
        mode = self.mode
        if mode is Join.ALL:
            self.values[index] = value
        elif mode is Join.ALL_SETTLED:
            self.values[index] = {"status": "fulfilled", "value": value}
        else:
            self.result, self.failure = value, None
            self.decided.set_result(None)
            return
        if not self.remaining:
            self.decided.set_result(None)

    def failed(self, index: int, error: EvalError) -> None:
        self.lanes[index] = None
        if self.decided.done():
            return
        self.remaining -= 1
        mode = self.mode
        if mode is Join.ALL_SETTLED:
            self.values[index] = {"status": "rejected", "reason": str(error)}
        else:
            self.failure = error
            if mode is not Join.ANY:
                self.decided.set_result(None)
                return
        if not self.remaining:
            self.decided.set_result(None)

    def crashed(self, error: Exception) -> None:
        """A lane raised something that is not a flow error (a bug): the fanout re-raises it."""
        if not self.decided.done():
            self.remaining -= 1
            self.crash = error
            self.decided.set_result(None)

    def outcome(self) -> Any:
        if self.crash is not None:
            raise self.crash
        if self.failure is not None:
            raise self.failure
        return self.values if self.mode is Join.ALL or self.mode is Join.ALL_SETTLED else self.result


async def _cancel_and_await(lanes: list[asyncio.Task[None]]) -> None:
    """Cancel the lanes still running and wait until every one has ended, even when the caller is
    cancelled meanwhile (that cancellation is raised once they have)."""
    pending = [task for task in lanes if not task.done()]
    for task in pending:
        task.cancel()
    interrupted: asyncio.CancelledError | None = None
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError as exc:
            interrupted = exc
        pending = [task for task in pending if not task.done()]
    if interrupted is not None:
        raise interrupted


async def run_flow(
    node: Node,
    ctx: FlowCtx,
    dispatcher: StepDispatcher,
    *,
    externs: Externs | None = None,
    on_cancel: Callable[[FlowCtx], None] | None = None,
) -> FlowCtx:
    """Evaluate `node` over a copy of `ctx` and return the final ctx; an uncaught flow error raises FlowFailed.

    Cancelling the caller cancels (and awaits) every running fanout lane and step dispatch;
    `on_cancel` then receives the ctx as it stood (what the finished steps wrote).
    """
    if not isinstance(ctx, dict):
        raise TypeError(f"the initial ctx must be a JSON object, got {json_type_name(ctx)}")
    scope = _Scope(dict(ctx))
    runner = _Runner(dispatcher, NO_EXTERNS if externs is None else externs)
    try:
        await runner.run(node, scope)
    except EvalError as err:
        step_error = err if isinstance(err, StepError) else None
        raise FlowFailed(
            str(err),
            failed_step=step_error.ref if step_error else None,
            verdict_value=step_error.verdict_value if step_error else None,
            partial_ctx=scope.ctx,
        ) from err
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel(scope.ctx)
        raise
    return scope.ctx
