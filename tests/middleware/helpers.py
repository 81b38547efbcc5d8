"""Shared pieces for the middleware tests: a run control that records, and event collection."""

from __future__ import annotations

from collections.abc import Callable

from mlua_swarm.core.events import Event, EventStream


class RecordingRun:
    """A `CancellableRun` that records why it was cancelled and runs an optional callback."""

    def __init__(self, run_id: str | None = None, on_cancel: Callable[[], object] | None = None) -> None:
        self.run_id = run_id
        self.reasons: list[str] = []
        self.on_cancel = on_cancel

    def cancel(self, reason: str) -> None:
        self.reasons.append(reason)
        if self.on_cancel is not None:
            self.on_cancel()


def buffered(stream: EventStream, prefix: str = "") -> list[Event]:
    """Every event buffered on `stream` so far whose kind starts with `prefix`."""
    events: list[Event] = []
    while (event := stream.get_nowait()) is not None:
        if event.kind.startswith(prefix):
            events.append(event)
    return events


async def next_event(stream: EventStream, kind: str) -> Event:
    """Wait for the next event of `kind` (earlier events of other kinds are skipped)."""
    async for event in stream:
        if event.kind == kind:
            return event
    raise AssertionError(f"event stream closed before a {kind!r} event")
