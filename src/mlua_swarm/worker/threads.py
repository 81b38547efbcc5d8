"""Plain `def` worker functions run off the event loop, in long-lived threads of our own.

`asyncio.to_thread` costs a few microseconds of Python per call but several thread switches: the
pool thread is woken while the loop still holds the GIL, only to sleep again until the loop gives
it up; the loop is woken through its self-pipe while the thread still holds the GIL, and sleeps
again too; the result travels through a `concurrent.futures.Future` chained to an asyncio one. On
a small VM each switch costs microseconds to tens of them, most of a trivial step.

`WorkerThreads.call` needs two switches, the least a round trip to another thread can cost:

- the loop thread wakes an idle pool thread with an `os.write` on the pool's pipe, which releases
  the GIL before it wakes the reader, so the woken thread finds the GIL free;
- when a thread is free to start the job at once, the loop thread waits for it for at most
  `QUICK_WAIT_SECS`, and the thread's reply is the last thing it does before it blocks again, so a
  quick function (the common case) hands its result straight back.

The loop thread waits without sleeping: between looks at the reply it yields its CPU and the GIL
(`os.sched_yield`) but stays runnable. A thread that blocks in the kernel must be woken, and a
wake-up is the expensive and erratic part of a round trip: on an idle virtual CPU it is a halt and
an interrupt (tens of microseconds), on a busy machine the woken loop thread, which uses its CPU
all the time, often waits for another process's time slice (milliseconds). Only the pool thread,
which spends most of its time blocked, is woken per call.

A function still running after `QUICK_WAIT_SECS` is awaited the ordinary way (its thread hands the
result to the loop with one `call_soon_threadsafe`), and so are the calls that follow, until some
function returns within `QUICK_WAIT_SECS` again: a run of blocking functions, or a fanout of
them, stalls the loop once, for `QUICK_WAIT_SECS`.

The pool holds at most `MAX_THREADS` threads (the bound of asyncio's default executor), started as
jobs need them and kept for the life of the process; more jobs wait in its queue for a free thread.
They are daemon threads: an idle pool, or a function still running after its step was cancelled or
timed out, never holds up interpreter exit. The caller's `contextvars` are visible in the function,
as with `asyncio.to_thread`.

A caller may pass a `RunTime` to learn how long the function itself ran in its thread, the hop
excluded: `InProcSpawner` uses it to move a plain function that proves quick onto the event loop
(`worker/adapter.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")

MAX_THREADS = min(32, (os.cpu_count() or 1) + 4)
"""Functions running at once; more wait in the queue for a thread to come free."""

QUICK_WAIT_SECS = 0.0005
"""How long the loop thread waits for a function to return before awaiting it."""


class RunTime:
    """How long a function ran in its pool thread, in seconds (`math.inf` until it has returned or
    raised); set before its caller hears of the outcome."""

    __slots__ = ("secs",)

    def __init__(self) -> None:
        self.secs = math.inf


class _Job(Generic[A, R]):
    __slots__ = ("arg", "context", "done", "failure", "finished", "fn", "future", "loop", "run_time", "value")

    def __init__(self, fn: Callable[[A], R], arg: A, run_time: RunTime | None) -> None:
        self.fn = fn
        self.arg = arg
        self.run_time = run_time
        self.context = contextvars.copy_context()
        self.done: threading.Lock | None = None
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


def _released_within(done: threading.Lock, limit: float) -> bool:
    """Acquire `done` once its holder releases it, within `limit` seconds, yielding the CPU and the GIL
    between tries instead of sleeping (see the module)."""
    acquire, pause, clock = done.acquire, os.sched_yield, time.monotonic
    until = clock() + limit
    while not acquire(False):
        if clock() >= until:
            return False
        pause()
    return True


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class WorkerThreads:
    """A bounded pool of daemon threads running plain functions for the event loop (see the module)."""

    def __init__(self, max_threads: int = MAX_THREADS, quick_wait: float = QUICK_WAIT_SECS) -> None:
        self.max_threads = max_threads
        self.quick_wait = quick_wait
        self._start()

    def _start(self) -> None:
        self._jobs: deque[_Job[Any, Any]] = deque()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        """Threads blocked (or about to block) reading the pipe with no byte written for them."""
        self._late = False
        """A function outlasted the quick wait and none has returned within it since."""
        self._read_end, self._write_end = os.pipe()

    def _restart_in_child(self) -> None:
        os.close(self._read_end)
        os.close(self._write_end)
        self._start()

    @property
    def threads(self) -> int:
        """Threads started so far (never more than `max_threads`)."""
        return len(self._threads)

    async def call(self, fn: Callable[[A], R], arg: A, run_time: RunTime | None = None) -> R:
        """`fn(arg)` in a pool thread; its exception is raised here. Cancelling the caller returns
        at once and leaves the function to finish in its thread, its result dropped. `run_time`, when
        given, gets how long the function ran."""
        job: _Job[A, R] = _Job(fn, arg, run_time)
        done = None
        with self._lock:
            self._jobs.append(job)
            start = wake = False
            if self._idle:
                self._idle -= 1
                free = wake = True
            else:
                free = start = len(self._threads) < self.max_threads
                if start:
                    thread = threading.Thread(target=self._serve, name=f"mse-worker-{len(self._threads)}", daemon=True)
                    self._threads.append(thread)
            if free and not self._late and self.quick_wait > 0:
                job.done = done = threading.Lock()
                done.acquire()
        if start:
            thread.start()
        elif wake:
            os.write(self._write_end, b"\0")
        if done is not None and _released_within(done, self.quick_wait):
            return job.outcome()
        loop = asyncio.get_running_loop()
        with self._lock:
            if not job.finished:
                self._late = self._late or done is not None
                job.loop = loop
                job.future = loop.create_future()
        if job.future is not None:
            await job.future
        return job.outcome()

    def close(self) -> None:
        """End the threads once they are idle and close the pipe (a pool of one's own, not `THREADS`)."""
        os.close(self._write_end)
        for thread in self._threads:
            thread.join()
        os.close(self._read_end)

    def _serve(self) -> None:
        jobs = self._jobs
        lock = self._lock
        clock = time.monotonic
        read_end = self._read_end
        job = self._next()
        while True:
            if job is None:
                if not os.read(read_end, 1):
                    return
                job = self._next()
                continue
            began = clock()
            try:
                job.value = job.context.run(job.fn, job.arg)
            except BaseException as exc:
                job.failure = exc
            ran = clock() - began
            if job.run_time is not None:
                job.run_time.secs = ran
            quick = ran < self.quick_wait
            with lock:
                job.finished = True
                if quick:
                    self._late = False
                future = job.future
                # counted idle before the caller hears of the result, so its next call finds a free thread
                following = jobs.popleft() if jobs else None
                if following is None:
                    self._idle += 1
            if future is not None and job.loop is not None:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for the result
                    job.loop.call_soon_threadsafe(_wake, future)
            done = job.done
            job = following
            if done is not None:
                # the last thing before blocking: the woken loop thread should find the GIL free
                done.release()

    def _next(self) -> _Job[Any, Any] | None:
        """The next queued job, or None after counting this thread idle."""
        with self._lock:
            if self._jobs:
                return self._jobs.popleft()
            self._idle += 1
            return None


THREADS = WorkerThreads()
"""The process's pool for plain `def` worker functions."""

os.register_at_fork(after_in_child=THREADS._restart_in_child)


in_thread = THREADS.call
"""`await in_thread(fn, arg)`: `fn(arg)` off the event loop, in `THREADS`."""


__all__ = ["MAX_THREADS", "QUICK_WAIT_SECS", "THREADS", "RunTime", "WorkerThreads", "in_thread"]
