"""Every descendant of a step's child is killed when the step ends, even one that left its process group.

On Linux the engine makes itself a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`): a process
whose parent exits is re-parented to the engine instead of to init, so nothing a step started can
leave the engine's process tree, `setsid()` or double fork included. Each step's child carries a
unique tag in its environment (its worker token's nonce, `MSE_TOKEN_NONCE`), which its descendants
inherit; `kill_tagged` walks the engine's descendants, SIGKILLs those carrying the tag and reaps
the ones re-parented to the engine. A descendant that clears its environment before `exec`, or one
that ended on its own after its parent, is not seen (the latter may linger as a zombie until the
engine exits). On other systems both calls do nothing and the process group kill is what remains.
"""

from __future__ import annotations

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
_PROC = Path("/proc")
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


def kill_tagged(tag: str, *, spare: int | None = None) -> list[int]:
    """SIGKILL this process's descendants whose environment carries `MSE_TOKEN_NONCE=tag`; returns their pids.

    `spare` is a pid that must not be reaped here (the step's own child, which asyncio waits for).
    Re-parented ones are reaped in a background thread once they are gone.
    """
    if not (_state and _state[0]):
        return []
    parents = _parents()
    marker = f"{TAG_VARIABLE}={tag}".encode()
    killed: list[int] = []
    for pid in _descendants(os.getpid(), parents):
        if _tagged(pid, marker):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    orphans = [pid for pid in killed if pid != spare]
    if orphans:
        threading.Thread(target=_reap, args=(orphans,), name="mse-reaper", daemon=True).start()
    return killed


def _parents() -> dict[int, int]:
    """pid → parent pid of every process visible in /proc."""
    parents: dict[int, int] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            parents[int(entry.name)] = int(fields[1])
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


def _tagged(pid: int, marker: bytes) -> bool:
    try:
        environ = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return marker in environ.split(b"\0")


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


__all__ = ["TAG_VARIABLE", "become_subreaper", "kill_tagged"]
