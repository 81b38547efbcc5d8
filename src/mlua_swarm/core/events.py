"""The engine's event stream: published events fan out to subscribers with bounded buffers.

Publishing with no subscriber costs one attribute check. Each subscriber holds at most a count of
events weighing at most a number of bytes together (the newest is held whatever it weighs); one
that falls behind loses its oldest events and receives one `events_dropped` event saying how many,
so memory stays bounded. An event's weight is what its publisher already knows of its data (a
worker's output by the weight the output budget gave it, `core.budget`), plus a fixed envelope:
nothing is measured per event.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

from ..ids import StepId

QUEUE_BYTES = 16 * 1024 * 1024
"""What the events one subscriber holds may weigh by default (`EngineConfig.event_queue_bytes`)."""

EVENT_ENVELOPE = 128
"""What an event weighs in a subscriber's buffer when its data is small: its fields as JSON, about."""


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    step_id: StepId | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    size: int = EVENT_ENVELOPE
    """What the event weighs in a subscriber's buffer: `EVENT_ENVELOPE`, plus the weight of `data`
    when its publisher knows it may be large (a worker's output)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "ts": self.ts}
        if self.step_id is not None:
            out["task_id"] = self.step_id
        out.update(self.data)
        return out


class EventStream:
    """One subscription: async-iterate it; close it (or use `async with`) to unsubscribe."""

    __slots__ = ("_buf", "_bus", "_closed", "_dropped", "_max_bytes", "_maxlen", "_wake", "held_bytes", "prefixes")

    def __init__(self, bus: EventBus, maxlen: int, prefixes: tuple[str, ...] | None, max_bytes: int) -> None:
        self._bus = bus
        self.prefixes = prefixes
        self._buf: deque[Event] = deque()
        self._maxlen = maxlen
        self._max_bytes = max_bytes
        self.held_bytes = 0
        """What the buffered events weigh (the sum of their `size`)."""
        self._dropped = 0
        self._wake = asyncio.Event()
        self._closed = False

    def _push(self, event: Event) -> None:
        buf = self._buf
        buf.append(event)
        self.held_bytes += event.size
        if len(buf) > self._maxlen or self.held_bytes > self._max_bytes:
            self._shed()
        self._wake.set()

    def _shed(self) -> None:
        """Drop the oldest events until both bounds hold again (the newest stays whatever it weighs)."""
        buf = self._buf
        held = self.held_bytes
        while len(buf) > self._maxlen or (held > self._max_bytes and len(buf) > 1):
            held -= buf.popleft().size
            self._dropped += 1
        self.held_bytes = held

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        while not self._buf and not self._dropped:
            if self._closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        if self._dropped:
            count, self._dropped = self._dropped, 0
            return Event("events_dropped", None, {"count": count})
        return self._popleft()

    def get_nowait(self) -> Event | None:
        """The next buffered event, or None."""
        return self._popleft() if self._buf else None

    def _popleft(self) -> Event:
        event = self._buf.popleft()
        self.held_bytes -= event.size
        return event

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus._remove(self)
            self._wake.set()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


_WANTED_KINDS = 256


class EventBus:
    """Subscribers see every event, or (with prefixes) only the kinds they asked for.

    `active` says whether any subscriber wants every event, so the engine builds its per-step events
    only then; `heard` whether there is any subscriber at all (without one, `wants` is False for every
    kind, so a caller may skip asking); `wants(kind)` answers for one kind.
    """

    __slots__ = ("_filtered", "_max_bytes", "_maxlen", "_streams", "_wanted", "active", "heard")

    def __init__(self, maxlen: int, max_bytes: int = QUEUE_BYTES) -> None:
        self._streams: list[EventStream] = []
        self._filtered: list[EventStream] = []
        self._wanted: dict[str, bool] = {}
        """`wants` per kind for the filtered subscribers of the moment."""
        self._maxlen = maxlen
        self._max_bytes = max_bytes
        self.active = False
        """Someone subscribed to every kind."""
        self.heard = False
        """Someone subscribed at all."""

    def subscribe(self, prefixes: tuple[str, ...] | None = None) -> EventStream:
        stream = EventStream(self, self._maxlen, prefixes, self._max_bytes)
        (self._streams if prefixes is None else self._filtered).append(stream)
        self.active = bool(self._streams)
        self.heard = self.active or bool(self._filtered)
        self._wanted.clear()
        return stream

    def _remove(self, stream: EventStream) -> None:
        (self._streams if stream.prefixes is None else self._filtered).remove(stream)
        self.active = bool(self._streams)
        self.heard = self.active or bool(self._filtered)
        self._wanted.clear()

    def wants(self, kind: str) -> bool:
        if self.active:
            return True
        wanted = self._wanted.get(kind)
        if wanted is None:
            if len(self._wanted) >= _WANTED_KINDS:
                self._wanted.clear()  # layers may name kinds of their own: the memo stays bounded
            wanted = self._wanted[kind] = any(kind.startswith(s.prefixes or ()) for s in self._filtered)
        return wanted

    def publish(self, event: Event) -> None:
        for stream in self._streams:
            stream._push(event)
        for stream in self._filtered:
            if event.kind.startswith(stream.prefixes or ()):
                stream._push(event)


__all__ = ["EVENT_ENVELOPE", "QUEUE_BYTES", "Event", "EventBus", "EventStream"]
