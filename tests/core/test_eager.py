import asyncio

import pytest

from mlua_swarm.worker.eager import start_eager


async def test_a_coroutine_that_never_suspends_completes_inside_the_call() -> None:
    async def quick() -> int:
        return 7

    future, _ = start_eager(quick())
    assert future.done() and future.result() == 7


async def test_an_exception_before_the_first_suspension_lands_on_the_future() -> None:
    async def broken() -> None:
        raise KeyError("x")

    future, _ = start_eager(broken())
    with pytest.raises(KeyError):
        await future


async def test_a_suspending_coroutine_runs_eagerly_then_continues_in_a_task() -> None:
    gate = asyncio.Event()
    trail: list[str] = []

    async def waits() -> str:
        trail.append("started")
        await gate.wait()
        trail.append("resumed")
        return "done"

    future, _ = start_eager(waits())
    assert trail == ["started"] and not future.done()
    gate.set()
    assert await future == "done" and trail == ["started", "resumed"]


async def test_cancel_before_the_task_had_a_turn_is_delivered_inside_the_coroutine() -> None:
    seen: list[str] = []

    async def waits() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled inside")
            raise

    future, cancel = start_eager(waits())
    cancel()
    with pytest.raises(asyncio.CancelledError):
        await future
    assert seen == ["cancelled inside"]


async def test_cancel_after_the_task_started_reaches_the_current_await() -> None:
    seen: list[str] = []
    parked = asyncio.Event()

    async def waits() -> str:
        await asyncio.sleep(0)
        parked.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled inside")
            return "cleaned up"
        return "never"

    future, cancel = start_eager(waits())
    await parked.wait()
    cancel()
    assert await future == "cleaned up" and seen == ["cancelled inside"]
