"""Plain `def` worker functions run off the event loop, in long-lived threads of our own.

`asyncio.to_thread` costs about two microseconds of Python per call but several cross-thread
wake-ups: the pool thread wakes only to find the loop holding the GIL, the loop wakes to the
self-pipe only to wait for the thread to give the GIL back, and the result travels through a
`concurrent.futures.Future` chained to an asyncio one. On a small VM each wake-up is tens of
microseconds, most of a trivial step.

`call` does the same job with fewer wake-ups. Its threads take jobs from one `queue.SimpleQueue`.
When a job is the only one in the pool, the loop thread waits for it, the GIL released, for at most
`QUICK_WAIT_SECS`: a quick function (the common case) hands its result straight back, one wake-up
each way and no self-pipe. A function still running after that, or any job started while others
run (a fanout), is awaited the ordinary way: the thread hands the result to the loop with one
`call_soon_threadsafe`. So the loop stalls for at most `QUICK_WAIT_SECS` per call, and only when
nothing else of the pool is running.

The pool holds at most `MAX_THREADS` threads (the bound of asyncio's default executor), started as
jobs need them and kept for the life of the process. They are daemon threads: an idle pool, or a
function still running after its step was cancelled or timed out, never holds up interpreter exit.
The caller's `contextvars` are visible in the function, as with `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")

MAX_THREADS = min(32, (os.cpu_count() or 1) + 4)
"""Functions running at once; more wait in the queue for a thread to come free."""

QUICK_WAIT_SECS = 0.0005
"""How long the loop thread waits, the GIL released, for a job alone in the pool before awaiting it."""


class _Job(Generic[A, R]):
    __slots__ = ("arg", "context", "done", "failure", "finished", "fn", "future", "loop", "value")

    def __init__(self, fn: Callable[[A], R], arg: A, done: threading.Lock | None) -> None:
        self.fn = fn
        self.arg = arg
        self.context = contextvars.copy_context()
        self.done = done
        self.finished = False
        self.value: R | None = None
        self.failure: BaseException | None = None
        self.future: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def outcome(self) -> R:
        failure = self.failure
        if failure is not None:
            self.failure = None
            raise failure
        return self.value  # type: ignore[return-value]


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class WorkerThreads:
    """A bounded pool of daemon threads running plain functions for the event loop (see the module)."""

    def __init__(self, max_threads: int = MAX_THREADS, quick_wait: float = QUICK_WAIT_SECS) -> None:
        self.max_threads = max_threads
        self.quick_wait = quick_wait
        self._reset()

    def _reset(self) -> None:
        self._jobs: queue.SimpleQueue[_Job[Any, Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._running = 0

    @property
    def threads(self) -> int:
        """Threads started so far (never more than `max_threads`)."""
        return len(self._threads)

    async def call(self, fn: Callable[[A], R], arg: A) -> R:
        """`fn(arg)` in a pool thread; its exception is raised here. Cancelling the caller returns
        at once and leaves the function to finish in its thread, its result dropped."""
        with self._lock:
            alone = self._running == 0
            self._running += 1
            if self._idle:
                self._idle -= 1
                start = False
            else:
                start = len(self._threads) < self.max_threads
                if start:
                    thread = threading.Thread(target=self._serve, name=f"mse-worker-{len(self._threads)}", daemon=True)
                    self._threads.append(thread)
        done = None
        if alone:
            done = threading.Lock()
            done.acquire()
        job: _Job[A, R] = _Job(fn, arg, done)
        self._jobs.put(job)
        if start:
            thread.start()
        if done is not None and done.acquire(timeout=self.quick_wait):
            return job.outcome()
        loop = asyncio.get_running_loop()
        with self._lock:
            if not job.finished:
                job.loop = loop
                job.future = loop.create_future()
        if job.future is not None:
            await job.future
        return job.outcome()

    def close(self) -> None:
        """Let every thread end once the jobs already queued are done (a pool of one's own, not `THREADS`)."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)

    def _serve(self) -> None:
        jobs = self._jobs
        lock = self._lock
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                job.value = job.context.run(job.fn, job.arg)
            except BaseException as exc:
                job.failure = exc
            with lock:
                job.finished = True
                self._running -= 1
                self._idle += 1
                future = job.future
            if job.done is not None:
                job.done.release()
            if future is not None and job.loop is not None:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for the result
                    job.loop.call_soon_threadsafe(_wake, future)
            del job, future


THREADS = WorkerThreads()
"""The process's pool for plain `def` worker functions."""

os.register_at_fork(after_in_child=THREADS._reset)


async def in_thread(fn: Callable[[A], R], arg: A) -> R:
    """`fn(arg)` off the event loop, in `THREADS`."""
    return await THREADS.call(fn, arg)


__all__ = ["MAX_THREADS", "QUICK_WAIT_SECS", "THREADS", "WorkerThreads", "in_thread"]
