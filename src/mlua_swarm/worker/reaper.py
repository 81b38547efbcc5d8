"""Every descendant of a step's child is killed when the step ends, even one that left its process group.

On Linux the engine makes itself a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`): a process
whose parent exits is re-parented to the engine instead of to init, so nothing a step started can
leave the engine's process tree, `setsid()` or double fork included. Each step's child carries a
unique tag in its environment (its worker token's nonce, `MSE_TOKEN_NONCE`), which its descendants
inherit. A sweep walks the engine's descendants once, SIGKILLs those carrying any of the tags it
was given and reaps the ones re-parented to the engine. A descendant that clears its environment
before `exec`, or one that ended on its own after its parent, is not seen (the latter may linger as
a zombie until the engine exits). On other systems every call here does nothing and the process
group kill is what remains.

`kill_tagged` sweeps at once, in the caller (a timeout or a cancel). `sweep_soon` is for a step
whose child exited on its own: walking /proc costs milliseconds, too much to pay on the event loop
at the end of every step, so the tag is handed to one background thread that sweeps every pending
tag in a single walk, at most once per `SWEEP_GAP_SECS` and walking at most `SWEEP_DUTY` of the
time. `flush` sweeps whatever is pending before returning; it runs at interpreter exit, so a
short-lived `mse run` still kills what its steps left.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
TAG_VARIABLE = "MSE_TOKEN_NONCE"
SWEEP_GAP_SECS = 0.02
"""The least time between two background sweeps, so a stream of short steps costs a bounded share of a core."""
SWEEP_DUTY = 0.05
"""The largest share of the time the background sweeper spends walking /proc: after a walk that took
`t` seconds it waits at least `t / SWEEP_DUTY` (a walk's cost grows with the processes on the machine,
and it holds the GIL the event loop needs between its system calls)."""
_PROC = Path("/proc")
_STAT_HEAD = 512
"""Bytes of /proc/<pid>/stat read: the parent pid is the fourth field, well within them."""
_REAP_TRIES = 200
_REAP_PAUSE_SECS = 0.01

_lock = threading.Lock()
_state: list[bool] = []
"""Empty until `become_subreaper` ran; then whether it succeeded."""


def become_subreaper() -> bool:
    """Make this process a child subreaper (once; Linux only). True when it is one."""
    with _lock:
        if not _state:
            _state.append(_set_subreaper())
        return _state[0]


def _set_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _is_subreaper() -> bool:
    return bool(_state and _state[0])


def kill_tagged(tag: str, *, spare: int | None = None) -> list[int]:
    """SIGKILL this process's descendants whose environment carries `MSE_TOKEN_NONCE=tag`; returns their pids.

    `spare` is a pid that must not be reaped here (the step's own child, which asyncio waits for).
    Re-parented ones are reaped in a background thread once they are gone.
    """
    if not _is_subreaper():
        return []
    return _sweep({tag: spare})


def sweep_soon(tag: str, *, spare: int | None = None) -> None:
    """Have the background sweeper kill the descendants tagged `tag` shortly; returns at once.

    `spare` is as for `kill_tagged`.
    """
    if _is_subreaper():
        _sweeper.add(tag, spare)


def flush() -> None:
    """Sweep every tag handed to `sweep_soon` so far, waiting for a sweep under way to finish."""
    _sweeper.flush()


class _Sweeper:
    """Pending tags and the one daemon thread that sweeps them in batches."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._pending: dict[str, int | None] = {}
        self._active = 0
        self._next_start = 0.0
        """When the background thread may start its next walk."""
        self._thread: threading.Thread | None = None

    def add(self, tag: str, spare: int | None) -> None:
        with self._changed:
            idle = not self._pending
            self._pending[tag] = spare
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mse-sweeper", daemon=True)
                self._thread.start()
                atexit.register(self.flush)
            if idle:
                # only a thread waiting for work needs waking: one that holds pending tags already
                # sweeps them all once its wait is over, and a wake-up per step costs a thread switch
                self._changed.notify_all()

    def flush(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._active == 0)
            batch = self._take()
        self._sweep(batch)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._pending))
                while self._pending and (delay := self._next_start - time.monotonic()) > 0:
                    self._changed.wait(delay)
                batch = self._take()
            self._sweep(batch)

    def _take(self) -> dict[str, int | None]:
        """Every pending tag, now counted as a sweep under way (call with the condition held)."""
        batch, self._pending = self._pending, {}
        if batch:
            self._active += 1
        return batch

    def _sweep(self, batch: dict[str, int | None]) -> None:
        if not batch:
            return
        started = time.monotonic()
        try:
            with contextlib.suppress(OSError):
                _sweep(batch)
        finally:
            with self._changed:
                self._active -= 1
                ended = time.monotonic()
                self._next_start = ended + max(SWEEP_GAP_SECS, (ended - started) / SWEEP_DUTY)
                self._changed.notify_all()


_sweeper = _Sweeper()


def _sweep(spares: dict[str, int | None]) -> list[int]:
    """SIGKILL the descendants carrying any tag in `spares` (tag → pid not to reap); returns their pids."""
    parents = _parents()
    markers = {f"{TAG_VARIABLE}={tag}".encode() for tag in spares}
    killed: list[int] = []
    for pid in _descendants(os.getpid(), parents):
        if _tagged(pid, markers):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    spared = set(spares.values())
    orphans = [pid for pid in killed if pid not in spared]
    if orphans:
        threading.Thread(target=_reap, args=(orphans,), name="mse-reaper", daemon=True).start()
    return killed


def _parents() -> dict[int, int]:
    """pid → parent pid of every process visible in /proc (plain `os` calls: this runs once per sweep)."""
    parents: dict[int, int] = {}
    for name in os.listdir(_PROC):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"{_PROC}/{name}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            stat = os.read(fd, _STAT_HEAD)
        except OSError:
            continue
        finally:
            os.close(fd)
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split(None, 2)
        if len(fields) > 1:
            parents[int(name)] = int(fields[1])
    return parents


def _descendants(root: int, parents: dict[int, int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    pending = list(children.get(root, ()))
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


def _tagged(pid: int, markers: set[bytes]) -> bool:
    try:
        environ = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return not markers.isdisjoint(environ.split(b"\0"))


def _reap(pids: list[int]) -> None:
    """Collect the exit status of killed processes once they are this process's children and gone."""
    pending = set(pids)
    for _ in range(_REAP_TRIES):
        for pid in list(pending):
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                # Not (yet) our child: its parent is still dying, or it is already gone.
                if not (_PROC / str(pid)).exists():
                    pending.discard(pid)
                continue
            if done:
                pending.discard(pid)
        if not pending:
            return
        time.sleep(_REAP_PAUSE_SECS)


__all__ = ["SWEEP_DUTY", "SWEEP_GAP_SECS", "TAG_VARIABLE", "become_subreaper", "flush", "kill_tagged", "sweep_soon"]
