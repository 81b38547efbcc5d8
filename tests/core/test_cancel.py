import asyncio

from mlua_swarm.cancel import CancellationToken


async def test_cancel_wakes_waiters_runs_callbacks_and_is_idempotent() -> None:
    token = CancellationToken()
    seen: list[str] = []
    token.on_cancel(lambda: seen.append("cb"))
    waiter = asyncio.create_task(token.cancelled())
    await asyncio.sleep(0)
    assert not waiter.done() and not token.is_cancelled()
    token.cancel()
    token.cancel()
    await waiter
    assert token.is_cancelled() and seen == ["cb"]


async def test_child_fires_with_parent_but_not_the_reverse() -> None:
    parent = CancellationToken()
    child = parent.child_token()
    other_child = parent.child_token()
    other_child.cancel()
    assert not parent.is_cancelled()
    parent.cancel()
    assert child.is_cancelled()
    await child.cancelled()


def test_callback_registered_after_cancel_runs_at_once_and_can_be_removed() -> None:
    token = CancellationToken()
    seen: list[int] = []
    remove = token.on_cancel(lambda: seen.append(1))
    remove()
    token.cancel()
    token.on_cancel(lambda: seen.append(2))
    assert seen == [2]
