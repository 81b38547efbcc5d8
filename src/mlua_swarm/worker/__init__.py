"""Workers: what a spawner returns, already running, and the building blocks worker kinds share.

`Worker` itself is part of the engine's contract (`core.contract`): the engine touches a worker
through `id`, `cancel_token()` and `join()` only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ..cancel import CancellationToken
from ..core.contract import Worker, WorkerCancelled, WorkerError, WorkerFailed
from ..eager import Eager
from ..ids import WorkerId

Completion = Callable[[BaseException | None], Awaitable[BaseException | None]]


class WorkerJoinHandler:
    """The common building block: an id, a cancel token, and a completion to await.

    `completion` resolves to `None` or raises a `WorkerError`; None means the work has already ended
    well. A future (usually the asyncio task doing the work) is shielded while joined: a worker is
    stopped through its cancel token, so the joiner can then wait for the worker's real end. An
    `Eager` coroutine (`mlua_swarm.eager`) is carried on by the joining task itself, so the joiner's own
    cancellation reaches it directly.
    """

    __slots__ = ("_worker_id", "cancel", "completion")

    def __init__(
        self,
        worker_id: WorkerId | None,
        cancel: CancellationToken,
        completion: asyncio.Future[Any] | Eager[Any] | None,
    ) -> None:
        self._worker_id = worker_id
        self.cancel = cancel
        self.completion = completion

    @property
    def worker_id(self) -> WorkerId:
        """The worker's id; None given at construction means one is made when first asked for."""
        worker_id = self._worker_id
        if worker_id is None:
            worker_id = self._worker_id = WorkerId.new()
        return worker_id

    async def await_completion(self) -> None:
        completion = self.completion
        if completion is None:
            return
        awaited: Awaitable[Any]
        if isinstance(completion, Eager):
            if completion.cancelled():
                raise WorkerCancelled()
            awaited = completion
        else:
            awaited = completion if completion.done() else asyncio.shield(completion)
        try:
            await awaited
        except asyncio.CancelledError:
            if not isinstance(completion, Eager) and completion.cancelled():
                raise WorkerCancelled() from None
            raise
        except WorkerError:
            raise
        except Exception as exc:
            raise WorkerFailed(f"{type(exc).__name__}: {exc}") from exc


class JoinHandleWorker(Worker):
    """A worker that is nothing but a `WorkerJoinHandler`; each worker kind subclasses it for its name."""

    __slots__ = ("handler",)

    def __init__(self, handler: WorkerJoinHandler) -> None:
        self.handler = handler

    @property
    def id(self) -> WorkerId:
        return self.handler.worker_id

    def cancel_token(self) -> CancellationToken:
        return self.handler.cancel

    def join(self) -> Coroutine[Any, Any, None]:
        return self.handler.await_completion()

    def settled(self) -> bool:
        completion = self.handler.completion
        return completion is None or (
            completion.done() and not completion.cancelled() and completion.exception() is None
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.handler.worker_id})"


class MiddlewareWorker(JoinHandleWorker):
    """The generic worker type: in-process functions and middleware wrappers."""


def wrap_join(inner: Worker, post: Completion) -> Worker:
    """A worker with `inner`'s id and cancel token whose completion is `post(result of inner.join())`.

    `post` receives `None` on success or the `WorkerError` raised, and returns the error to raise
    (or `None` for success). It runs in the task that joins, so it is owned by the joiner.
    """
    return _PostJoinWorker(inner, post)


class _PostJoinWorker(Worker):
    __slots__ = ("_inner", "_post")

    def __init__(self, inner: Worker, post: Completion) -> None:
        self._inner = inner
        self._post = post

    @property
    def id(self) -> WorkerId:
        return self._inner.id

    def cancel_token(self) -> CancellationToken:
        return self._inner.cancel_token()

    async def join(self) -> None:
        outcome: BaseException | None = None
        try:
            await self._inner.join()
        except WorkerError as exc:
            outcome = exc
        result = await self._post(outcome)
        if result is not None:
            raise result

    def __repr__(self) -> str:
        return f"wrap_join({self._inner!r})"


__all__ = [
    "JoinHandleWorker",
    "MiddlewareWorker",
    "Worker",
    "WorkerCancelled",
    "WorkerError",
    "WorkerFailed",
    "WorkerJoinHandler",
    "wrap_join",
]
