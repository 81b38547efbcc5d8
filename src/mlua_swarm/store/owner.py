"""Which process owns a run, and whether that process is still the one alive under its pid."""

from __future__ import annotations

import functools
import os
import socket

from .records import RunOwner

START_TIME_TOLERANCE_SECS = 10.0
"""Two start times closer than this are the same process. A start time is the boot time plus the
process's age in clock ticks, and the kernel derives the boot time from the wall clock, so two
processes reading it minutes apart can disagree by the clock's adjustments in between (seconds on a
VM whose clock is being corrected), not only by rounding. A pid taken again by a process started
within this window of the first is the rare case this gives up."""


@functools.cache
def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def process_start_time(pid: int) -> float | None:
    """Epoch seconds the process `pid` started, from /proc; None when it does not exist or is unknowable."""
    boot = _boot_time()
    if boot is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields after it are plain.
    fields = stat[stat.rfind(")") + 2 :].split()
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 probe; assumed alive where that probe is unsafe)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def current_owner() -> RunOwner:
    """This process as a run owner."""
    return _owner_of(os.getpid())


@functools.cache
def _owner_of(pid: int) -> RunOwner:
    """Keyed by pid, so a forked child is its own owner; /proc is read once per process."""
    return RunOwner(socket.gethostname(), pid, process_start_time(pid) or 0.0)


def owner_gone(owner: RunOwner) -> bool | None:
    """On this host: True when the pid is dead or now belongs to a later process; None on another host."""
    if owner.host != socket.gethostname():
        return None
    if not pid_alive(owner.pid):
        return True
    started = process_start_time(owner.pid)
    if started is None or not owner.started_at:
        return False
    return abs(started - owner.started_at) > START_TIME_TOLERANCE_SECS
