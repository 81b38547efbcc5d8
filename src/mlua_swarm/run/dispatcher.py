"""`EngineDispatcher`: the bridge from the flow evaluator to the engine, one engine step per Step node.

For each step it strips a `$step_meta` envelope, consults the run journal (a step that already
finished in an earlier attempt of this run is replayed, not re-executed; see `own` for how a large
input's replay key is computed once a run), starts an engine step
with the agent's policies, runs it through the linked spawner stack, records the step entry, and
maps the outcome onto the flow: a pass returns the value, a skip returns `Skipped`, blocked and
failures raise.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, Protocol, get_args

from ..core.contract import SpawnerAdapter
from ..core.engine import DispatchOutcome, Engine, RunContext, TaskSpec
from ..core.projection import Projection
from ..core.state import OutcomeKind, StepOutcome
from ..errors import DispatchFailed
from ..flow import Skipped, Step, StepBlocked, StepFailed
from ..ids import StepId
from ..jsontext import canonical_bytes
from ..store.journal import ReplayHit
from ..store.records import ReplayRow, StepEntry
from ..tokens import CapToken
from ..worker.adapter import json_copy
from .observer import NullObserver, RunObserver

STEP_META = "$step_meta"

_OF_KIND = {kind: StepOutcome.of(kind) for kind in get_args(OutcomeKind)}
_PASSED, _SKIPPED, _BLOCKED, _CANCELLED = (
    StepOutcome.PASSED,
    StepOutcome.SKIPPED,
    StepOutcome.BLOCKED,
    StepOutcome.CANCELLED,
)
"""The outcomes as module constants: reading a member off its Enum class is an attribute lookup through the class."""


@dataclass(frozen=True, slots=True)
class AgentPolicy:
    """The per-agent settings a step inherits: timeout, retry, verdict contract, submit format, projection."""

    timeout_secs: float | None = None
    retry: Any = None
    verdict: Any = None
    submit_format: str | None = None
    projection: Projection | None = None


class Journal(Protocol):
    """Persistence of a run's steps (`store.RunJournal` implements it; None means in memory only).

    A journal may also have `record`, taking the fields of `record_step`'s entry and replay row
    themselves (as `RunJournal.record` does): the dispatcher then builds neither record.
    """

    def lookup(self, step_ref: str, input_hash: str) -> ReplayHit | None:
        """The logged outcome of this occurrence of the step if an earlier attempt of the run finished it."""

    def record_step(self, entry: StepEntry, replay: ReplayRow | None) -> Awaitable[None]:
        """Persist the step (and, for a pass or skip, its replay row); awaiting the result returns once durable."""

    def trace(self, kind: str, step_ref: str | None = None, attempt: int | None = None, payload: Any = None) -> None:
        """Queue a trace event (middleware decisions, retries, cancellations) for the run's history."""


def _builtin_sha256() -> Callable[[bytes], Any]:
    """CPython's own SHA-256 (`_sha256` in 3.11, `_sha2` later), or hashlib's when it is not built."""
    for name in ("_sha256", "_sha2"):
        try:
            return importlib.import_module(name).sha256  # type: ignore[no-any-return]
        except (ImportError, AttributeError):
            continue
    return sha256


_small_sha256 = _builtin_sha256()
_SMALL_INPUT = 1024
"""Inputs up to this many bytes are hashed by CPython's own SHA-256, whose set-up is a quarter of
OpenSSL's; longer ones by OpenSSL's, which is several times faster per byte. Both give the same digest."""


def input_hash(directive: Any) -> str:
    """The replay key of a step's input: SHA-256 of its canonical JSON (`jsontext.canonical_bytes`)."""
    return _digest(canonical_bytes(directive))


def _digest(data: bytes) -> str:
    return (_small_sha256 if len(data) <= _SMALL_INPUT else sha256)(data).hexdigest()


KEPT_KEY_BYTES = 64 * 1024
"""An owned value (see `EngineDispatcher.own`) whose canonical JSON is at least this long keeps its
replay key for the run; a shorter one is hashed afresh each time, as any other input."""


_KEYED = (dict, list, str)
"""The types of owned value a replay key is kept for (numbers and constants hash in no time)."""


async def _nothing() -> None:
    """Nothing to wait for: a step of a run without a journal is not recorded."""


class EngineDispatcher:
    def __init__(
        self,
        engine: Engine,
        token: CapToken,
        spawner: SpawnerAdapter,
        *,
        policies: Mapping[str, AgentPolicy] | None = None,
        metas: Mapping[str, Any] | None = None,
        run: RunContext | None = None,
        journal: Journal | None = None,
        observer: RunObserver | None = None,
    ) -> None:
        self.engine = engine
        self.token = token
        self.spawner = spawner
        self.policies = dict(policies or {})
        self.metas = dict(metas or {})
        self.run = run
        self.journal = journal
        self._record = getattr(journal, "record", None)
        """The journal's `record` (see `Journal`), if it has one."""
        self.observer = observer or NullObserver()
        self._watched = observer is not None
        """An observer hears steps start and finish (a durable run without one skips the calls)."""
        self._quiet = journal is None and observer is None
        """No journal records and no observer watches: a passing step needs no bookkeeping."""
        self.steps_dispatched = 0
        self.steps_replayed = 0
        self._started: set[StepId] | None = None
        self._owned: dict[int, Any] = {}
        """The run's own values by id (see `own`): holding them keeps their ids from being reused."""
        self._keys: dict[int, str] = {}
        """Replay keys of owned values, by id."""

    def track_steps(self) -> set[StepId]:
        """From now on, remember the id of every step this dispatcher starts (in the returned set)."""
        if self._started is None:
            self._started = set()
        return self._started

    def own(self, ctx: Any) -> Any:
        """The run's initial ctx as the run's own: a copy of it (`worker.adapter.json_copy`, what every
        step's worker gets of it anyway; a non-finite number reads as `null`) whose top-level values
        the run takes as unchanging.

        Nobody outside the run holds the copy, and the flow shares nested ctx values but never changes
        them in place (see `flow.evaluator`), so a top-level value stays what it was for the whole run
        and its replay key needs computing once: a step whose input is `$.big` at every turn of a
        loop hashes a megabyte once a run, not once a step. Only these values are trusted: a worker
        may keep and change what it returned, and the caller what it passed in. At most one entry a
        top-level value, holding what the copy holds (until the run ends, even once the flow has
        replaced it). A ctx that is not an object is returned as it is (the flow refuses it).
        """
        if type(ctx) is not dict:
            return ctx
        copy: dict[str, Any] = json_copy(ctx)
        self._owned = {id(value): value for value in copy.values() if type(value) in _KEYED}
        self._keys = {}
        return copy

    def replay_key(self, directive: Any) -> str:
        """`input_hash(directive)`, kept for an owned value whose canonical JSON is long (see `own`)."""
        if id(directive) not in self._owned:
            return input_hash(directive)
        kept = self._keys.get(id(directive))
        if kept is not None:
            return kept
        data = canonical_bytes(directive)
        key = _digest(data)
        if len(data) < KEPT_KEY_BYTES:  # not worth keeping: hashed afresh from now on
            del self._owned[id(directive)]
        else:
            self._keys[id(directive)] = key
        return key

    async def dispatch(self, step: Step, input: Any) -> Any:
        ref = step.ref
        if type(input) is dict and STEP_META in input:
            directive, step_ctx = self._unwrap_meta(input)
        else:
            directive, step_ctx = input, None
        journal = self.journal
        if journal is None:
            digest = ""
        else:
            digest = self.replay_key(directive) if self._owned else input_hash(directive)
            hit = journal.lookup(ref, digest)
            if hit is not None:
                self.steps_replayed += 1
                if self._watched:
                    self.observer.step_finished(ref, None, "replayed", 0.0, hit.value)
                return Skipped(hit.value) if hit.skip else hit.value
        policy = self.policies.get(ref) or AgentPolicy()
        spec = TaskSpec(
            ref,
            directive,
            step_ctx=step_ctx,
            timeout_secs=policy.timeout_secs,
            retry=policy.retry,
            verdict=policy.verdict,
            submit_format=policy.submit_format,
            projection=policy.projection,
        )
        started = time.time()
        step_id = self.engine.new_step(self.token, spec)
        self.steps_dispatched += 1
        if self._started is not None:
            self._started.add(step_id)
        if self._watched:
            self.observer.step_started(ref, step_id, step.index)
        try:
            try:
                outcome = await self.engine.run_step(self.token, step_id, self.spawner, run=self.run)
            except DispatchFailed as exc:
                # The attempt that failed, as for every other end (a spawn that failed is attempt 1 too).
                attempt = self.engine.read_task_state(self.token, step_id).attempt
                await self._finish(step, step_id, StepOutcome.FAILED, started, digest, None, str(exc), attempt)
                raise StepFailed(str(exc)) from exc
            except asyncio.CancelledError:
                # The run was cancelled, or a fanout no longer needs this lane: the step ends `cancelled`
                # in the progress view and the history like any other end, then the cancellation goes on.
                attempt = self.engine.read_task_state(self.token, step_id).attempt
                await self._finish(step, step_id, _CANCELLED, started, digest, None, "cancelled", attempt)
                raise
            if outcome.kind == "pass":
                if journal is None:
                    # Nothing to record: an observer hears the pass here, without the bookkeeping path.
                    if self._watched:
                        self.observer.step_finished(ref, step_id, _PASSED, time.time() - started, outcome.value)
                else:
                    await self._finish(step, step_id, _PASSED, started, digest, outcome.value, None, outcome.attempt)
                return outcome.value
            return await self._apply(step, step_id, outcome, started, digest)
        finally:
            # Recorded (or folded into the ctx): the engine need not hold the step's output any longer.
            self.engine.release_task(self.token, step_id)

    async def _apply(self, step: Step, step_id: StepId, outcome: DispatchOutcome, started: float, digest: str) -> Any:
        """Record an outcome other than a pass (`dispatch` records those itself) and map it onto the flow."""
        kind = _OF_KIND[outcome.kind]
        if kind is _SKIPPED:
            await self._finish(step, step_id, kind, started, digest, outcome.value, None, outcome.attempt)
            return Skipped(outcome.value)
        if kind is _BLOCKED:
            await self._finish(step, step_id, kind, started, digest, outcome.value, None, outcome.attempt)
            raise StepBlocked(outcome.value)
        message = "cancelled" if kind is _CANCELLED else "timed out"
        await self._finish(step, step_id, kind, started, digest, None, message, outcome.attempt)
        raise StepFailed(message)

    def _finish(
        self,
        step: Step,
        step_id: StepId,
        status: StepOutcome,
        started: float,
        digest: str,
        value: Any,
        error: str | None,
        attempt: int,
    ) -> Awaitable[None]:
        """Tell the observer the step ended and hand its entry to the journal; await the result to
        reach the journal's commit point. A plain function returning the journal's awaitable rather
        than a coroutine around it: one coroutine fewer per step."""
        finished = time.time()
        ref = step.ref
        if self._watched:
            self.observer.step_finished(ref, step_id, status, finished - started, value if error is None else error)
        journal = self.journal
        if journal is None:
            return _nothing()
        stats: dict[str, Any] | None = self.engine.worker_stats(step_id, attempt) if attempt else None
        stderr = None
        if stats and "stderr_tail" in stats:
            stats = dict(stats)
            stderr = stats.pop("stderr_tail")
        replayed = status is _PASSED or status is _SKIPPED
        if self._record is not None:
            return self._record(  # type: ignore[no-any-return]
                ref, step_id, status, attempt, started, finished, stats or None, stderr, error, step.index,
                digest if replayed else None, value,
            )  # fmt: skip
        entry = StepEntry(ref, step_id, status, attempt, started, finished, stats or None, stderr, error, step.index)
        if replayed:
            return journal.record_step(entry, ReplayRow(ref, digest, value, status is _SKIPPED))
        return journal.record_step(entry, None)

    def _unwrap_meta(self, input: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Split a `$step_meta` envelope into (directive, step context)."""
        rest = dict(input)
        envelope = rest.pop(STEP_META)
        if not isinstance(envelope, Mapping):
            raise StepFailed("$step_meta must be an object with 'ref' and/or 'inline'")
        step_ctx: dict[str, Any] = {}
        meta_ref = envelope.get("ref")
        if meta_ref is not None:
            if meta_ref not in self.metas:
                raise StepFailed(f"$step_meta.ref '{meta_ref}' names no entry in metas")
            base = self.metas[meta_ref]
            if isinstance(base, Mapping):
                step_ctx.update(base)
        inline = envelope.get("inline")
        if inline is not None:
            if not isinstance(inline, Mapping):
                raise StepFailed("$step_meta.inline must be an object")
            step_ctx.update(inline)
        directive = rest.pop("$in") if "$in" in rest else (rest or "")
        return directive, step_ctx


__all__ = ["KEPT_KEY_BYTES", "STEP_META", "AgentPolicy", "EngineDispatcher", "Journal", "input_hash"]
