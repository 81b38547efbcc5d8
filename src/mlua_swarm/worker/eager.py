"""Eager start: run a coroutine at once, and only hand it to a task if it has to wait.

Worker functions often finish without ever suspending; running them inline up to their first
suspension (what Python 3.12's eager task factory does) saves creating and scheduling a task per
step. A coroutine that does suspend continues in an ordinary asyncio task.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


class _State:
    __slots__ = ("cancel_early", "started")

    def __init__(self) -> None:
        self.started = False
        self.cancel_early = False


def start_eager(coro: Coroutine[Any, Any, T]) -> tuple[asyncio.Future[T], Callable[[], None]]:
    """Run `coro` now. Returns a future of its result (already done if it never suspended) and a
    function that cancels it: the `CancelledError` is delivered inside the coroutine even when its
    task has not had its first turn yet."""
    loop = asyncio.get_running_loop()
    try:
        first = coro.send(None)
    except StopIteration as stop:
        done: asyncio.Future[T] = loop.create_future()
        done.set_result(stop.value)
        return done, _noop
    except BaseException as exc:
        failed: asyncio.Future[T] = loop.create_future()
        failed.set_exception(exc)
        return failed, _noop
    state = _State()
    task = loop.create_task(_continue(coro, first, state))

    def cancel() -> None:
        if task.done():
            return
        if state.started:
            task.cancel()
        else:
            state.cancel_early = True

    return task, cancel


async def _continue(coro: Coroutine[Any, Any, T], first: Any, state: _State) -> T:
    return await _resume(coro, first, state)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, T], first: Any, state: _State) -> Generator[Any, Any, T]:
    """`yield from coro` for a coroutine that has already yielded `first`."""
    state.started = True
    pending = first
    if state.cancel_early:
        try:
            pending = coro.throw(asyncio.CancelledError())
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
    while True:
        try:
            sent = yield pending
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                pending = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            continue
        try:
            pending = coro.send(sent)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


def _noop() -> None:
    return None


__all__ = ["start_eager"]
