"""The one checked way to turn a name into a path under a root folder, or into a segment of a URL path.

Every name that arrives from a Blueprint, a worker, an HTTP client or the command line and becomes a
file path (projection names, part names, `$file` references, run artifacts, operator uploads) goes
through `under_root`: it refuses empty names, NUL bytes and other control characters, absolute
paths, drive letters, `..` components and symbolic links that lead out of the root, so a name can
only ever land inside it.
A name that becomes part of a URL of `mse serve` (a run id, a Blueprint id) goes through
`url_segment`, so it addresses exactly one segment: `../runs/R-1/cancel?` cannot turn a request into
another route's.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import quote


class PathRefused(ValueError):
    """A name that may not become a path under the root; the message says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name!r} refused: {reason}")
        self.name = name
        self.reason = reason


def name_problem(name: str) -> str | None:
    """Why `name` may not be used as a relative path (without touching the disk), or None when it may."""
    if not isinstance(name, str) or not name.strip():
        return "the path is empty"
    if "\0" in name:
        return "the path contains a NUL byte"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
        return "the path contains a control character"
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        return "absolute paths are not allowed"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "'..' is not allowed in a path"
    return None


def under_root(root: str | Path, name: str) -> Path:
    """`root / name`, resolved, after checking that it stays inside `root` (symbolic links included).

    Raises `PathRefused` when it would not. The returned path may not exist yet.
    """
    problem = name_problem(name)
    if problem is not None:
        raise PathRefused(name, problem)
    base = Path(root).resolve()
    target = (base / name).resolve()
    if not target.is_relative_to(base):
        raise PathRefused(name, f"it leads out of {base} through a symbolic link")
    return target


def url_segment(name: str) -> str:
    """`name` as one segment of a URL path: every character but letters, digits and `-._~`
    percent-encoded, and a name of dots alone (`.`, `..`), which a client would resolve as a step
    up, written `%2E…`; the server decodes it back to `name`."""
    encoded = quote(name, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


__all__ = ["PathRefused", "name_problem", "under_root", "url_segment"]
