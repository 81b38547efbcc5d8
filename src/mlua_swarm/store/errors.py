"""Store errors: each has a stable `code` and a `hint` saying what to do about it."""

from __future__ import annotations

import sqlite3

from ..errors import MseError


class StoreError(MseError):
    code = "store_error"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(f"{message} (hint: {hint})" if hint else message)
        self.message = message
        self.hint = hint


class BadStoreUrl(StoreError):
    code = "bad_store_url"


class StoreUnusable(StoreError):
    """The store file is not a readable SQLite store (damaged, truncated, empty, a directory)."""

    code = "store_unusable"

    @classmethod
    def unreadable(cls, file: object, exc: BaseException) -> StoreUnusable:
        """A table or row the store's code cannot read: edited by hand, or damaged in a way SQLite's
        own page checks do not see."""
        return cls(
            f"the store {file} holds data this mlua-swarm cannot read ({type(exc).__name__}: {exc})",
            "the file was changed outside mse or is damaged: move it aside (`sqlite3 FILE .recover` may"
            " save its runs) to start a new store there, or pass --store with another file",
        )


UNREADABLE_ROW_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, ValueError, TypeError, KeyError)
"""What reading a damaged table or row raises (a missing table, a status or number that does not parse)."""


class StoreWriteFailed(StoreError):
    """The store could not be written (a full disk, an I/O error); the run stops, kept `interrupted`."""

    code = "store_write_failed"


class SchemaTooNew(StoreError):
    code = "store_schema_too_new"


class StoreInUse(StoreError):
    """An upgrade of the store's schema that would pull a table from under a process of an older
    release still running a run in it; the file is left as it was."""

    code = "store_in_use"


class RecordNotFound(StoreError):
    code = "not_found"


class RunNotFound(RecordNotFound):
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run not found: {run_id}", "list runs with `mse runs list`")
        self.run_id = run_id


class TaskRecordNotFound(RecordNotFound):
    code = "task_record_not_found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task not found: {task_id}")
        self.task_id = task_id


class BlueprintNotFound(RecordNotFound):
    code = "blueprint_not_found"


class Duplicate(StoreError):
    code = "duplicate"


class InvalidRunTransition(StoreError):
    code = "invalid_run_transition"

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"a run may not move from {current} to {target}")
        self.current = current
        self.target = target


class RunNotResumable(StoreError):
    """`resume` / `rerun-from` refused: wrong status, no launch snapshot, or the step is not in the log."""

    code = "run_not_resumable"

    def __init__(self, message: str, hint: str = "", *, reason: str = "status") -> None:
        super().__init__(message, hint)
        self.reason = reason
