"""A short description of the machine and software versions, printed with every run."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

from .harness import REPO_ROOT

PACKAGES = ("mlua-swarm", "langgraph", "langgraph-checkpoint-sqlite", "dbos", "lupa")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gb() -> str:
    try:
        with open("/proc/meminfo") as fh:
            kb = int(fh.readline().split()[1])
        return f"{kb / 1e6:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        return "unknown RAM"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def commit() -> str:
    """The short commit id of this checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def load() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews every figure."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f}"


def load_now() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def describe() -> list[str]:
    """Lines naming the CPU, cores, memory, OS, Python and the versions on both sides."""
    versions = ", ".join(f"{p} {_version(p)}" for p in PACKAGES if p != "mlua-swarm")
    return [
        f"{_cpu_model()}, {os.cpu_count()} cores, {_memory_gb()}, {platform.system()} {platform.release()}",
        f"{platform.python_implementation()} {platform.python_version()}; mlua-swarm at commit {commit()}",
        versions,
    ]
