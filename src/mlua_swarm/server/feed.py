"""A run's live event feed: every event is a trace row first, then pushed to the run's subscribers.

The trace sequence number is the event's id, so a subscriber that reconnects with `Last-Event-ID`
reads what it missed from the store and then continues live, with no gap and no duplicate. Each
subscriber has a buffer bounded by a count of events and by their weight: a slow one loses its
oldest events (and is told how many) instead of holding the run back or growing without limit.
An event's weight is the estimate of its data's JSON text `core.budget` makes (no encoding), taken
once per event and only while someone listens.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..core.budget import value_bytes
from ..ids import RunId
from ..store import Store, TraceEvent

TERMINAL_KINDS = frozenset({"core.run_finished", "core.run_interrupted"})
"""Trace kinds after which a run's stream ends."""

SUBSCRIBER_BYTES = 16 * 1024 * 1024
"""What the events one subscriber holds may weigh by default (see `value_bytes`)."""

_ENVELOPE = 128
"""An event's fields besides its data (seq, run id, kind, step, attempt, ts) as JSON, about."""


@dataclass(frozen=True, slots=True)
class FeedEvent:
    seq: int
    kind: str
    step: str | None
    attempt: int | None
    ts: float
    data: Any
    size: int = 0
    """What the event weighs in a subscriber's buffer (0 when nobody listened as it was made)."""

    @classmethod
    def from_trace(cls, event: TraceEvent) -> FeedEvent:
        size = _ENVELOPE + value_bytes(event.payload)
        return cls(event.seq, event.kind, event.step_ref, event.attempt, event.ts, event.payload, size)

    def to_json(self, run_id: str) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "run_id": run_id,
            "kind": self.kind,
            "step": self.step,
            "attempt": self.attempt,
            "ts": self.ts,
            "data": self.data,
        }

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS


class Subscriber:
    """One listener's bounded buffer: at most `maxlen` events weighing at most `max_bytes` together
    (the newest is held whatever it weighs). `next()` returns an event, an int (events dropped), or
    None (ended)."""

    def __init__(self, feed: RunFeed, maxlen: int, max_bytes: int = SUBSCRIBER_BYTES) -> None:
        self._feed = feed
        self._buf: deque[FeedEvent] = deque()
        self._maxlen = maxlen
        self._max_bytes = max_bytes
        self.held_bytes = 0
        self.dropped = 0
        self._wake = asyncio.Event()
        self.ended = False

    def push(self, event: FeedEvent) -> None:
        buf = self._buf
        buf.append(event)
        self.held_bytes += event.size
        while len(buf) > self._maxlen or (self.held_bytes > self._max_bytes and len(buf) > 1):
            self.held_bytes -= buf.popleft().size
            self.dropped += 1
        self._wake.set()

    def end(self) -> None:
        self.ended = True
        self._wake.set()

    async def next(self, timeout: float | None = None) -> FeedEvent | int | None:
        """The next event; the count of dropped events first if any were; None once the feed ended and
        everything was read; raises TimeoutError after `timeout` seconds of silence."""
        while not self._buf and not self.dropped:
            if self.ended:
                return None
            self._wake.clear()
            if timeout is None:
                await self._wake.wait()
            else:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
        if self.dropped:
            count, self.dropped = self.dropped, 0
            return count
        event = self._buf.popleft()
        self.held_bytes -= event.size
        return event

    def close(self) -> None:
        self._feed.unsubscribe(self)


class RunFeed:
    """The feed of one run hosted by this server."""

    def __init__(self, store: Store, run_id: RunId, buffer: int, buffer_bytes: int = SUBSCRIBER_BYTES) -> None:
        self.store = store
        self.run_id = run_id
        self.buffer = buffer
        self.buffer_bytes = buffer_bytes
        self.last_seq = 0
        self.ended = False
        self._subs: set[Subscriber] = set()

    def publish(self, kind: str, step: str | None = None, attempt: int | None = None, data: Any = None) -> int:
        """Record the event in the run's trace and push it (with its full data) to every subscriber."""
        seq = self.store.append_trace(self.run_id, kind, step_ref=step, attempt=attempt, payload=data)
        if self._subs:
            size = _ENVELOPE + value_bytes(data, self.buffer_bytes)
            self._push(FeedEvent(seq, kind, step, attempt, time.time(), data, size))
        elif seq > self.last_seq:
            self.last_seq = seq
        return seq

    async def catch_up(self) -> None:
        """Push trace rows someone else wrote (run start, finish, resume) since the last pushed one.

        With nobody listening there is nothing to push: a subscriber arriving later reads the store
        first and skips what it already has by sequence number.
        """
        if not self._subs:
            return
        for event in await self.store.list_trace(self.run_id, after=self.last_seq):
            self._push(FeedEvent.from_trace(event))

    async def skip_history(self) -> None:
        """Take the run's existing trace as already delivered (a resumed run: its subscribers read the
        history from the store), so a later catch-up pushes only what is new."""
        events = await self.store.list_trace(self.run_id, after=self.last_seq)
        if events:
            self.last_seq = max(self.last_seq, events[-1].seq)

    def _push(self, event: FeedEvent) -> None:
        if event.seq <= self.last_seq:
            return
        self.last_seq = event.seq
        for sub in self._subs:
            sub.push(event)

    def subscribe(self) -> Subscriber:
        sub = Subscriber(self, self.buffer, self.buffer_bytes)
        if self.ended:
            sub.end()
        else:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    def end(self) -> None:
        """No more events: subscribers drain what they hold and stop."""
        self.ended = True
        for sub in self._subs:
            sub.end()
        self._subs.clear()

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)


__all__ = ["SUBSCRIBER_BYTES", "TERMINAL_KINDS", "FeedEvent", "RunFeed", "Subscriber"]
