"""Prefixed identifiers: `ST-` step, `R-` run, `T-` task, `S-` session, `W-` worker, `wh-` handle.

Each id is a `str` subclass, so it serialises as a plain JSON string; `parse` (also used when
pydantic decodes one) refuses a wrong prefix or an empty suffix.
"""

from __future__ import annotations

import itertools
import os
import secrets
from typing import Any, ClassVar, Self

_COUNTER = itertools.count(secrets.randbits(63))
"""Counts up from a random start: ids of two processes meet only if their starts are within the ids
they make of each other (about 1 in 2**63 per id made)."""


def uid_hex() -> str:
    """16 hex chars, unique within this process; not secret."""
    return format(next(_COUNTER), "016x")


_POOL_SIZE = 4096
_pool = b""
_offset = 0


def secure_hex(nbytes: int) -> str:
    """Hex from the OS random source, for anything that acts as a secret.

    Bytes are drawn from the OS in 4 KiB batches (one syscall per ~200 tokens) and never reused.
    """
    global _pool, _offset
    end = _offset + nbytes
    if end > len(_pool):
        _pool, _offset, end = os.urandom(max(_POOL_SIZE, nbytes)), 0, nbytes
    chunk = _pool[_offset:end]
    _offset = end
    return chunk.hex()


class PrefixedId(str):
    """Base of every prefixed id type; each subclass declares `__slots__ = ()` too, so an id is just its
    string (no per-instance `__dict__`: an engine keeps one per retained step)."""

    prefix: ClassVar[str] = ""
    kind: ClassVar[str] = "id"

    __slots__ = ()

    _format: ClassVar[str] = "%016x"

    def __init_subclass__(cls) -> None:
        cls._format = cls.prefix + "%016x"  # a prefix holds no `%`

    @classmethod
    def new(cls) -> Self:
        return str.__new__(cls, cls._format % next(_COUNTER))  # the prefix, then `uid_hex`

    @classmethod
    def parse(cls, value: object) -> Self:
        if isinstance(value, cls):
            return value
        if not isinstance(value, str) or not value.startswith(cls.prefix) or len(value) <= len(cls.prefix):
            raise ValueError(f'invalid {cls.kind} id "{value}": expected "{cls.prefix}" prefix')
        return str.__new__(cls, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str.__repr__(self)})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(cls.parse, serialization=core_schema.to_string_ser_schema())


class StepId(PrefixedId):
    """One dispatched Blueprint step; stable across its attempts."""

    prefix = "ST-"
    kind = "step"

    __slots__ = ()


class RunId(PrefixedId):
    """One execution of a task; reused by resume and rerun-from."""

    prefix = "R-"
    kind = "run"

    __slots__ = ()


class TaskId(PrefixedId):
    """A persisted work item, run one or more times."""

    prefix = "T-"
    kind = "task"

    __slots__ = ()


class SessionId(PrefixedId):
    """An attached operator session."""

    prefix = "S-"
    kind = "session"

    __slots__ = ()


class WorkerId(PrefixedId):
    """One spawned worker (observability only)."""

    prefix = "W-"
    kind = "worker"

    __slots__ = ()


class WorkerHandle(PrefixedId):
    """A short bearer (`wh-` + 8 random hex) standing for a worker token; expires with it."""

    prefix = "wh-"
    kind = "worker handle"

    __slots__ = ()

    @classmethod
    def new(cls) -> Self:
        return cls.of_hex(secure_hex(4))

    @classmethod
    def of_hex(cls, random_hex: str) -> Self:
        """The handle over 8 hex digits the caller drew from `secure_hex`."""
        return str.__new__(cls, cls.prefix + random_hex)


class ResumeKey(PrefixedId):
    """Handle of a suspended step waiting for an answer."""

    prefix = "RK-"
    kind = "resume key"

    __slots__ = ()

    @classmethod
    def for_senior(cls, step_id: StepId) -> Self:
        return str.__new__(cls, f"{cls.prefix}senior-{step_id}")


__all__ = [
    "PrefixedId",
    "ResumeKey",
    "RunId",
    "SessionId",
    "StepId",
    "TaskId",
    "WorkerHandle",
    "WorkerId",
    "secure_hex",
    "uid_hex",
]
