"""Durable runs: one store interface (memory, SQLite and PostgreSQL backends), the per-run journal, run lifecycle.

The names below are imported on first use, so a module of this package that needs none of them
(the listing read path, `store.listing`) loads without the backends, the journal or asyncio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

if TYPE_CHECKING:
    from .base import DEFAULT_STALE_SECS, DEFAULT_TRACE_CAP, TRACE_PAYLOAD_CAP, Store
    from .errors import (
        BadStoreUrl,
        BlueprintNotFound,
        Duplicate,
        InvalidRunTransition,
        RunNotFound,
        RunNotResumable,
        SchemaTooNew,
        StoreError,
        StoreInUse,
        StoreUnusable,
        StoreWriteFailed,
        TaskRecordNotFound,
    )
    from .factory import default_store_path, mse_home, open_store, store_from_url
    from .journal import ReplayHit, RunJournal
    from .lifecycle import (
        ResumePlan,
        cancel_run,
        claim_run,
        create_run,
        durable_run,
        heartbeat,
        load_launch,
        prepare_rerun_from,
        prepare_resume,
    )
    from .memory import MemoryStore
    from .postgres import PostgresStore
    from .records import (
        BlueprintVersion,
        Durability,
        LaunchSnapshot,
        OutputRecord,
        ReplayRow,
        RunOwner,
        RunRecord,
        RunStatus,
        StepEntry,
        TaskRecord,
        TraceEvent,
    )
    from .sqlite import SqliteStore

_EXPORTS: dict[str, str] = {
    "DEFAULT_STALE_SECS": ".base",
    "DEFAULT_TRACE_CAP": ".base",
    "TRACE_PAYLOAD_CAP": ".base",
    "Store": ".base",
    "BadStoreUrl": ".errors",
    "BlueprintNotFound": ".errors",
    "Duplicate": ".errors",
    "InvalidRunTransition": ".errors",
    "RunNotFound": ".errors",
    "RunNotResumable": ".errors",
    "SchemaTooNew": ".errors",
    "StoreError": ".errors",
    "StoreInUse": ".errors",
    "StoreUnusable": ".errors",
    "StoreWriteFailed": ".errors",
    "TaskRecordNotFound": ".errors",
    "default_store_path": ".factory",
    "mse_home": ".factory",
    "open_store": ".factory",
    "store_from_url": ".factory",
    "ReplayHit": ".journal",
    "RunJournal": ".journal",
    "ResumePlan": ".lifecycle",
    "cancel_run": ".lifecycle",
    "claim_run": ".lifecycle",
    "create_run": ".lifecycle",
    "durable_run": ".lifecycle",
    "heartbeat": ".lifecycle",
    "load_launch": ".lifecycle",
    "prepare_rerun_from": ".lifecycle",
    "prepare_resume": ".lifecycle",
    "MemoryStore": ".memory",
    "PostgresStore": ".postgres",
    "BlueprintVersion": ".records",
    "Durability": ".records",
    "LaunchSnapshot": ".records",
    "OutputRecord": ".records",
    "ReplayRow": ".records",
    "RunOwner": ".records",
    "RunRecord": ".records",
    "RunStatus": ".records",
    "StepEntry": ".records",
    "TaskRecord": ".records",
    "TraceEvent": ".records",
    "SqliteStore": ".sqlite",
}


__getattr__, __dir__ = lazy_attributes(globals(), _EXPORTS)

__all__ = [
    "DEFAULT_STALE_SECS",
    "DEFAULT_TRACE_CAP",
    "TRACE_PAYLOAD_CAP",
    "BadStoreUrl",
    "BlueprintNotFound",
    "BlueprintVersion",
    "Duplicate",
    "Durability",
    "InvalidRunTransition",
    "LaunchSnapshot",
    "MemoryStore",
    "OutputRecord",
    "PostgresStore",
    "ReplayHit",
    "ReplayRow",
    "ResumePlan",
    "RunJournal",
    "RunNotFound",
    "RunNotResumable",
    "RunOwner",
    "RunRecord",
    "RunStatus",
    "SchemaTooNew",
    "SqliteStore",
    "StepEntry",
    "Store",
    "StoreError",
    "StoreInUse",
    "StoreUnusable",
    "StoreWriteFailed",
    "TaskRecord",
    "TaskRecordNotFound",
    "TraceEvent",
    "cancel_run",
    "claim_run",
    "create_run",
    "default_store_path",
    "durable_run",
    "heartbeat",
    "load_launch",
    "mse_home",
    "open_store",
    "prepare_rerun_from",
    "prepare_resume",
    "store_from_url",
]
