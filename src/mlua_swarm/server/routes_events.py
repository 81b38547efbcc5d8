"""`GET /v1/runs/{id}/events`: the run's trace, step and output events as Server-Sent Events.

Each event's `id:` is its trace sequence number and its `data:` one JSON object (`seq`, `kind`,
`step`, `attempt`, `ts`, `data`). A client reconnecting with `Last-Event-ID` (or `?after=N`) first
gets what it missed from the store, then the live events; the stream ends after the run's terminal
event (an earlier `interrupted` of a run resumed since is history, not the end). A subscriber too
slow for its buffer loses the oldest events and gets one unnamed event `{"kind": "stream.missed",
"missed": N}` (reconnect with the last id seen to read them from the store). A run driven by
another process sharing the store is followed by polling the store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..ids import RunId
from ..store.records import TERMINAL as TERMINAL_STATUSES
from .errors import ApiError
from .feed import FeedEvent, Subscriber
from .http import bounded_int, parse_id, path_param, query_int, server
from .routes_runs import TRACE_SCAN_LIMIT, TraceFilter
from .state import ServerState

Wanted = Callable[[FeedEvent], bool]
KEEPALIVE_SECS = 15.0
POLL_SECS = 0.25
"""How often a run owned by another process is re-read from the store."""


def frame(event: FeedEvent, run_id: str) -> bytes:
    data = json.dumps(event.to_json(run_id), ensure_ascii=False, default=str)
    return f"id: {event.seq}\ndata: {data}\n\n".encode()


class StreamCount:
    """How many event streams are open on one app (each holds a buffer of up to `sse_buffer` events)."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open = 0


def _after(request: Request) -> int:
    header = request.headers.get("last-event-id")
    if header:
        return bounded_int(header, "Last-Event-ID")
    return query_int(request, "after", 0) or 0


async def events(request: Request) -> Response:
    state = server(request)
    run_id = parse_id(RunId, path_param(request, "id"))
    await state.store.get_run(run_id, with_result=False)
    after = _after(request)
    streams: StreamCount = request.app.state.event_streams
    if streams.open >= state.config.max_event_streams:
        raise ApiError(
            503,
            f"too many open event streams ({streams.open})",
            {"hint": "close other streams, or raise max_event_streams"},
            headers={"retry-after": "5"},
        )
    selected = TraceFilter.of(request)
    live = state.runs.live.get(run_id)
    sub = live.feed.subscribe() if live is not None else None

    def wanted(event: FeedEvent) -> bool:
        return event.terminal or selected.empty or selected.matches(event.kind, event.step, event.attempt)

    async def stream() -> AsyncIterator[bytes]:
        last = after
        streams.open += 1
        try:
            for trace in await state.store.list_trace(run_id, after=last, limit=TRACE_SCAN_LIMIT):
                event = FeedEvent.from_trace(trace)
                last = event.seq
                if wanted(event):
                    yield frame(event, run_id)
            if sub is not None:
                async for chunk in _follow_live(sub, run_id, last, wanted):
                    yield chunk
            else:
                async for chunk in _follow_store(state, run_id, last, wanted):
                    yield chunk
        finally:
            streams.open -= 1
            if sub is not None:
                sub.close()

    headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def _follow_live(sub: Subscriber, run_id: str, last: int, wanted: Wanted) -> AsyncIterator[bytes]:
    while True:
        try:
            item = await sub.next(KEEPALIVE_SECS)
        except TimeoutError:
            yield b": keepalive\n\n"
            continue
        if item is None:
            return
        if isinstance(item, int):
            notice = json.dumps({"kind": "stream.missed", "run_id": run_id, "missed": item, "after_seq": last})
            yield f"data: {notice}\n\n".encode()
            continue
        if item.seq <= last:
            continue
        last = item.seq
        if wanted(item):
            yield frame(item, run_id)
        if item.terminal:
            return


async def _follow_store(state: ServerState, run_id: RunId, last: int, wanted: Wanted) -> AsyncIterator[bytes]:
    """A run this process does not drive: poll its trace until it reaches a terminal status."""
    idle = 0.0
    while not state.stopping.is_set():
        run = await state.store.get_run(run_id, with_result=False)
        for trace in await state.store.list_trace(run_id, after=last, limit=TRACE_SCAN_LIMIT):
            event = FeedEvent.from_trace(trace)
            last = event.seq
            idle = 0.0
            if wanted(event):
                yield frame(event, run_id)
        if run.status in TERMINAL_STATUSES:
            return
        await asyncio.sleep(POLL_SECS)
        idle += POLL_SECS
        if idle >= KEEPALIVE_SECS:
            idle = 0.0
            yield b": keepalive\n\n"


def routes() -> list[BaseRoute]:
    return [Route("/v1/runs/{id}/events", events, methods=["GET"])]


__all__ = ["frame", "routes"]
