"""Eager start: run a coroutine up to its first suspension at once; whoever joins it carries it on.

Worker functions often finish without ever suspending; running them right away (what Python 3.12's
eager task factory does) saves a task and a loop turn per step, and the engine need not wait for a
function that has already finished. One that suspends is carried on by the task that joins it (the
step's own task, which waits for it anyway), not by a task of its own: the function's first part
and the rest then run in the same task, so whatever it ties to `asyncio.current_task()` in its first
part (`asyncio.timeout`, a `TaskGroup`) acts on the task that runs the rest.

Cancelling an `Eager` delivers a `CancelledError` inside the coroutine the way `Task.cancel` does:
the future it waits on is cancelled, or, when it waits on nothing or is not being carried on, the
error is thrown in at its next step. The joining task's own cancellation (a timeout around the join,
the run being cancelled) reaches the coroutine in the same place.

Like a task, the coroutine runs in a context of its own (a copy of its starter's `contextvars`), so a
context variable it sets is not seen by its starter, its joiner or the steps after it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Eager(Generic[T]):
    """A coroutine run up to its first suspension; `await` it to carry it on to its end.

    It answers `done`, `cancelled`, `exception` and `result` as a future does. A coroutine that
    ended by a `CancelledError` counts as cancelled; the joiner that carried it to that end gets the
    error itself (so its own cancellation goes on up), later joins see it cancelled.
    """

    __slots__ = ("_carried", "_context", "_coro", "_done", "_error", "_inject", "_pending", "_result")

    def __init__(self, coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None) -> None:
        self._coro = coro
        self._context = contextvars.copy_context() if context is None else context
        self._done = False
        self._result: Any = None
        self._error: BaseException | None = None
        self._pending: Any = None
        self._inject = False
        self._carried = False
        self._step(coro.send, None)

    def _step(self, advance: Any, arg: Any) -> None:
        try:
            self._pending = self._context.run(advance, arg)
        except StopIteration as stop:
            self._done, self._result, self._pending = True, stop.value, None
        except BaseException as exc:
            self._done, self._error, self._pending = True, exc, None

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._done and isinstance(self._error, asyncio.CancelledError)

    def exception(self) -> BaseException | None:
        if self.cancelled():
            raise asyncio.CancelledError()
        return self._error

    def result(self) -> T:
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[no-any-return]

    def cancel(self) -> None:
        """Deliver a `CancelledError` inside the coroutine (no effect once it has ended)."""
        if self._done:
            return
        pending = self._pending
        if not (self._carried and isinstance(pending, asyncio.Future) and pending.cancel()):
            self._inject = True

    def __await__(self) -> Generator[Any, Any, T]:
        coro = self._coro
        while not self._done:
            if self._inject:
                self._inject = False
                self._step(coro.throw, asyncio.CancelledError())
                continue
            self._carried = True
            try:
                sent = yield self._pending
            except GeneratorExit:
                self._carried = False
                coro.close()
                raise
            except BaseException as exc:
                self._carried = False
                self._step(coro.throw, exc)
                continue
            self._carried = False
            if not self._inject:  # else the cancel asked for meanwhile is thrown in at the loop's top
                self._step(coro.send, sent)
        error = self._error
        if error is not None:
            raise error
        return self._result  # type: ignore[no-any-return]


def start_eager(coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None) -> Eager[T]:
    """Run `coro` now, up to its first suspension or its end, in `context` (default: a copy of the
    current one)."""
    return Eager(coro, context)


__all__ = ["Eager", "start_eager"]
