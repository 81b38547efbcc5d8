"""Helpers for a layer's "after" part: a join post-processor that runs once, and the tail's last Final."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from ..worker import Worker, wrap_join
from ..worker.output import Final, OutputEvent

Post = Callable[[BaseException | None], Awaitable[BaseException | None]]


def after_join(worker: Worker, post: Post) -> Worker:
    """`wrap_join(worker, post)`, where `post` runs at most once.

    The engine joins a cancelled worker a second time to reap it; the second join must not repeat an
    escalation or an audit, nor release a slot twice. A repeat passes the signal through untouched.
    """
    ran = False

    async def once(err: BaseException | None) -> BaseException | None:
        nonlocal ran
        if ran:
            return err
        ran = True
        return await post(err)

    return wrap_join(worker, once)


def last_final(tail: Sequence[OutputEvent]) -> Final | None:
    """The last `Final` on an attempt's tail (the one that decides its value), or None."""
    for event in reversed(tail):
        if type(event) is Final:
            return event
    return None


__all__ = ["Post", "after_join", "last_final"]
