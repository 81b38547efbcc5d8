"""`start_eager`: a coroutine runs up to its first suspension at once, and the task that awaits it
carries it on (so its first part and the rest run in one task)."""

import asyncio

import pytest

from mlua_swarm.eager import start_eager


async def test_a_coroutine_that_never_suspends_completes_inside_the_call() -> None:
    async def quick() -> int:
        return 7

    eager = start_eager(quick())
    assert eager.done() and eager.result() == 7 and await eager == 7


async def test_an_exception_before_the_first_suspension_is_raised_to_the_joiner() -> None:
    async def broken() -> None:
        raise KeyError("x")

    eager = start_eager(broken())
    assert eager.done() and isinstance(eager.exception(), KeyError)
    with pytest.raises(KeyError):
        await eager


async def test_a_suspending_coroutine_is_carried_on_by_the_task_that_awaits_it() -> None:
    gate = asyncio.Event()
    tasks: list[asyncio.Task[object] | None] = []

    async def waits() -> str:
        tasks.append(asyncio.current_task())
        await gate.wait()
        tasks.append(asyncio.current_task())
        return "done"

    async def joiner() -> str:
        return await eager

    eager = start_eager(waits())
    assert len(tasks) == 1 and not eager.done()
    joining = asyncio.ensure_future(joiner())
    await asyncio.sleep(0)
    gate.set()
    assert await joining == "done"
    assert tasks == [asyncio.current_task(), joining]


async def test_a_timeout_entered_before_the_first_suspension_cancels_the_carrying_task() -> None:
    async def waits() -> str:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()
        except TimeoutError:
            return "timed out inside"
        return "never"

    eager = start_eager(waits())
    assert await eager == "timed out inside"


async def test_cancel_before_it_is_carried_is_delivered_inside_the_coroutine() -> None:
    seen: list[str] = []
    eager = start_eager(_waits_for_cancel(seen))
    eager.cancel()
    with pytest.raises(asyncio.CancelledError):
        await eager
    assert seen == ["cancelled inside"] and eager.cancelled()


async def test_cancel_while_carried_reaches_the_current_await() -> None:
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

    eager = start_eager(waits())
    joining = asyncio.ensure_future(_join(eager))
    await parked.wait()
    eager.cancel()
    assert await joining == "cleaned up" and seen == ["cancelled inside"]
    assert not joining.cancelled()


async def test_the_joiners_own_cancellation_reaches_the_coroutine_and_goes_on_up() -> None:
    seen: list[str] = []
    eager = start_eager(_waits_for_cancel(seen))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await eager
    assert seen == ["cancelled inside"] and eager.cancelled()


async def _waits_for_cancel(seen: list[str]) -> None:
    """Waits for ever; notes a cancellation that reaches it, and lets it go on."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        seen.append("cancelled inside")
        raise


async def _join(eager: object) -> object:
    return await eager  # type: ignore[misc]
