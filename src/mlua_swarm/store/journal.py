"""The per-run journal the run layer's dispatcher writes through: replay lookups, step entries, trace, the finish.

`lookup` answers from the replay rows the journal was built with (a resume passes the stored log),
counting occurrences of each (step_ref, input_hash) so repeated identical steps replay in order.
Awaiting `record_step` reaches the commit point its durability asks for: in `sync` and `batch` a
step whose `record_step` was awaited is on disk; in `exit` everything waits in memory until
`finish`, and a crash loses the run's steps.
"""

from __future__ import annotations

import heapq
import json
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

from ..core.state import StepOutcome
from ..ids import RunId
from .base import StepRow, Store, encode_step, step_row
from .records import Durability, ReplayRow, RunStatus, StepEntry, dumps

_EXIT = Durability.EXIT
_SKIPPED = StepOutcome.SKIPPED


@dataclass(frozen=True, slots=True)
class ReplayHit:
    """A logged outcome to reuse instead of dispatching: the stored value, and whether it was a skip."""

    value: Any
    skip: bool
    occurrence: int


@dataclass(frozen=True, slots=True)
class _BufferedTrace:
    kind: str
    step_ref: str | None
    attempt: int | None
    payload: Any
    ts: float


class Occurrences:
    """How many occurrences of each fingerprint were handed out, in 16 to 32 bytes a fingerprint.

    A fingerprint seen once is a raw 64-bit slot of an open-addressing table (no Python object per
    key, so a run of a million distinct steps holds a few tens of MB at most); the few seen again
    move to a dict with their count.
    """

    __slots__ = ("_many", "_mask", "_size", "_table")

    def __init__(self) -> None:
        self._table = array("q", [0]) * 64
        self._mask = 63
        self._size = 0
        self._many: dict[int, int] = {}

    def take(self, fingerprint: int) -> int:
        """The next occurrence of `fingerprint` (0 the first time), counted."""
        fp = fingerprint or 1  # 0 marks an empty slot
        many = self._many
        if many:
            count = many.get(fp)
            if count is not None:
                many[fp] = count + 1
                return count
        table, mask = self._table, self._mask
        i = fp & mask
        while slot := table[i]:
            if slot == fp:
                many[fp] = 2
                return 1
            i = (i + 1) & mask
        table[i] = fp
        size = self._size = self._size + 1
        if size * 2 > mask:
            self._grow()
        return 0

    def _grow(self) -> None:
        mask = self._mask * 2 + 1
        table = array("q", [0]) * (mask + 1)
        for fp in filter(None, self._table):
            i = fp & mask
            while table[i]:
                i = (i + 1) & mask
            table[i] = fp
        self._table, self._mask = table, mask


async def _recorded() -> None:
    """Nothing more to wait for: an `exit` step is kept in memory until the run's finish."""


def _snapshot(value: Any) -> Any:
    """A deep copy through JSON, so later changes by the caller do not reach a buffered record."""
    return json.loads(dumps(value))


class RunJournal:
    """Durable history of one run, written by the process that owns the run."""

    def __init__(
        self,
        store: Store,
        run_id: RunId | str,
        durability: Durability | str | None = None,
        *,
        replay: list[ReplayRow] | tuple[ReplayRow, ...] = (),
    ) -> None:
        self.store = store
        self.run_id = RunId.parse(run_id)
        self.durability = store.durability if durability is None else Durability(durability)
        self.replayed = 0
        """How many lookups were answered from the log."""
        self.finished: RunStatus | None = None
        """The status `finish` left the run in."""
        self._log = {(r.step_ref, r.input_hash, r.occurrence or 0): r for r in replay}
        """Stored rows not replayed yet; each is dropped once replayed (an occurrence is looked up once)."""
        self._seen = Occurrences()
        """Occurrences handed out so far, by the key's fingerprint: `hash((step_ref, input_hash))`, a
        64-bit number rather than the strings, so a long run keeps a table slot per distinct step input
        rather than the key's text. Two keys that share a fingerprint share one counter; each
        (step_ref, input_hash, occurrence) handed out is still unique, and a resumed run that does not
        see the same collision (about one chance in 2**64 per pair) only runs the affected steps again."""
        self._unrecorded: dict[int, int | list[int]] = {}
        """Occurrences that missed the log and wait for their `record_step`, by fingerprint: one
        occurrence, or a heap of several (identical steps running side by side)."""
        self._carried: tuple[str, str, int, int] | None = None
        """The latest missed occurrence, waiting for its `record_step` outside `_unrecorded`:
        (step_ref, input_hash, fingerprint, occurrence). Only when no occurrence of its fingerprint
        waits in `_unrecorded`, so it is the lowest of its key; a sequential run's step then records
        with neither a second fingerprint nor the dict."""
        self._steps: list[StepRow] = []
        """`exit` durability: the run's steps, encoded (so later changes by the caller cannot reach them)."""
        self._traces: deque[_BufferedTrace] = deque(maxlen=store.trace_cap)

    def lookup(self, step_ref: str, input_hash: str) -> ReplayHit | None:
        """The logged outcome of this step's next occurrence with this input, or None to dispatch it."""
        key = hash((step_ref, input_hash))
        occurrence = self._seen.take(key)
        if self._log:
            row = self._log.pop((step_ref, input_hash, occurrence), None)
            if row is not None:
                self.replayed += 1
                return ReplayHit(row.value, row.skip, occurrence)
        unrecorded = self._unrecorded
        carried = self._carried
        if carried is not None:
            self._wait(carried[2], carried[3])
        if unrecorded and key in unrecorded:
            self._carried = None
            self._wait(key, occurrence)
        else:
            self._carried = (step_ref, input_hash, key, occurrence)
        return None

    def _wait(self, key: int, occurrence: int) -> None:
        """Park a missed occurrence until its `record_step`."""
        waiting = self._unrecorded.get(key)
        if waiting is None:
            self._unrecorded[key] = occurrence
        elif isinstance(waiting, int):
            self._unrecorded[key] = [waiting, occurrence]
        else:
            heapq.heappush(waiting, occurrence)

    def _occurrence_for(self, step_ref: str, input_hash: str) -> int:
        """The lowest occurrence a miss handed out and nobody recorded yet (or the next one)."""
        carried = self._carried
        if carried is not None and carried[1] == input_hash and carried[0] == step_ref:
            self._carried = None
            return carried[3]
        key = hash((step_ref, input_hash))
        waiting = self._unrecorded.pop(key, None)
        if waiting is None:
            return self._seen.take(key)
        if isinstance(waiting, int):
            return waiting
        occurrence = heapq.heappop(waiting)
        self._unrecorded[key] = waiting[0] if len(waiting) == 1 else waiting
        return occurrence

    def record(
        self,
        step_ref: str,
        step_id: str,
        status: StepOutcome,
        attempt: int,
        started_at: float | None,
        finished_at: float | None,
        stats: Mapping[str, Any] | None,
        stderr: str | None,
        error: Any,
        node_index: int | None,
        input_hash: str | None = None,
        value: Any = None,
    ) -> Awaitable[None]:
        """`record_step` from the fields of the step's entry (and, when `input_hash` is given, of its
        replay row holding `value`, a skip if `status` is one), without building either record: the
        dispatcher's path. Await the result to reach the commit point."""
        occurrence = None if input_hash is None else self._occurrence_for(step_ref, input_hash)
        row = encode_step(
            step_ref, step_id, status, attempt, started_at, finished_at, stats, stderr, error, node_index,
            input_hash, occurrence, status is _SKIPPED, value,
        )  # fmt: skip
        return self._keep(row)

    def record_step(self, entry: StepEntry, replay: ReplayRow | None = None) -> Awaitable[None]:
        """Append a step entry (and its replay row for pass/skip outcomes); await the result to reach
        the commit point.

        A replay row without an occurrence gets the one its `lookup` handed out (set on the row). The
        entry is encoded when this is called.
        """
        if replay is not None and replay.occurrence is None:
            replay.occurrence = self._occurrence_for(replay.step_ref, replay.input_hash)
        return self._keep(step_row(entry, replay))

    def _keep(self, row: StepRow) -> Awaitable[None]:
        """The store's commit of `row` itself (this is a plain function rather than a coroutine around
        it: one coroutine fewer per step); in `exit`, `row` waits in memory for `finish`."""
        if self.durability is _EXIT:
            self._steps.append(row)
            return _recorded()
        return self.store.commit_step(self.run_id, row, self.durability)

    def trace(self, kind: str, step_ref: str | None = None, attempt: int | None = None, payload: Any = None) -> None:
        """Queue an observational event; the store writes it shortly after (in `exit`, at the end)."""
        if self.durability is Durability.EXIT:
            snapshot = None if payload is None else _snapshot(payload)
            self._traces.append(_BufferedTrace(kind, step_ref, attempt, snapshot, time.time()))
            return
        self.store.append_trace(self.run_id, kind, step_ref=step_ref, attempt=attempt, payload=payload)

    def _write_buffered(self) -> None:
        self.store.append_step_rows(self.run_id, self._steps)
        for t in self._traces:
            self.store.append_trace(
                self.run_id, t.kind, step_ref=t.step_ref, attempt=t.attempt, payload=t.payload, ts=t.ts
            )
        self._steps.clear()
        self._traces.clear()

    async def finish(self, status: RunStatus | str, result_json: Any) -> RunStatus:
        """Store the result and move the run from `running` to `status`; returns the status it ended with.

        A run cancelled meanwhile stays `cancelled` (its result is still kept). Everything is committed
        when this returns, whatever the durability.
        """
        target = RunStatus(status)
        self._write_buffered()
        await self.store.settle_run(self.run_id, result_json, target)
        # The status alone: reading the run record would read its launch snapshot (the init ctx) too.
        status, task_id = await self.store.run_state(self.run_id)
        self.store.append_trace(
            self.run_id, "core.run_finished", payload={"status": status.value, "requested": target.value}
        )
        self.store.set_task_status(task_id, status)
        await self.store.flush(Durability.SYNC)
        self.store.release(self.run_id)
        self.finished = status
        return status
