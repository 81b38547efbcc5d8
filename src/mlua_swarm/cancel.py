"""`CancellationToken`: a one-way latch that owners fire and workers observe.

Firing runs the registered callbacks (for example cancelling an asyncio task or signalling a child
process) and wakes everyone awaiting `cancelled()`. Children fire with their parent, never the reverse.
Use from the event loop's thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class CancellationToken:
    __slots__ = ("_callbacks", "_cancelled", "_waiter")

    def __init__(self) -> None:
        self._cancelled = False
        self._callbacks: list[Callable[[], object]] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def cancel(self) -> None:
        """Fire the token; idempotent."""
        if self._cancelled:
            return
        self._cancelled = True
        callbacks, self._callbacks = self._callbacks, None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        for callback in callbacks or ():
            callback()

    def is_cancelled(self) -> bool:
        return self._cancelled

    async def cancelled(self) -> None:
        """Wait until the token fires."""
        if self._cancelled:
            return
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)

    def on_cancel(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Run `callback` when the token fires (now, if it already has); returns an unregister function."""
        if self._cancelled:
            callback()
            return _noop
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(callback)

        def remove() -> None:
            if self._callbacks is not None and callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def child_token(self) -> CancellationToken:
        """A token fired whenever this one is (and cancellable on its own)."""
        child = CancellationToken()
        self.on_cancel(child.cancel)
        return child

    def __repr__(self) -> str:
        return f"CancellationToken(cancelled={self._cancelled})"


def _noop() -> None:
    return None


__all__ = ["CancellationToken"]
