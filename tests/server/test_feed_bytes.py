"""An SSE subscriber's buffer is bounded by weight as well as by count: big events cannot pile up
1,024 deep per subscriber; the oldest go, and the subscriber is told how many (`stream.missed`)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from mlua_swarm.ids import RunId
from mlua_swarm.server.feed import FeedEvent, RunFeed
from mlua_swarm.store import LaunchSnapshot, MemoryStore, create_run
from tests.server.blueprints import P, inline
from tests.server.sse import sse_events
from tests.serverkit import start_server

KIB = 1024
MIB = 1024 * KIB


def test_a_subscriber_holds_at_most_its_bytes_and_counts_what_it_dropped() -> None:
    async def main() -> None:
        store = MemoryStore()
        run = await create_run(store, LaunchSnapshot({}, None))
        feed = RunFeed(store, RunId(run.run_id), buffer=1000, buffer_bytes=64 * KIB)
        sub = feed.subscribe()
        for i in range(20):
            feed.publish("test.big", data={"i": i, "blob": "x" * 16 * KIB})
        assert sub.held_bytes <= 64 * KIB
        dropped = await sub.next()
        assert isinstance(dropped, int) and dropped >= 16
        kept: list[FeedEvent] = []
        while sub.held_bytes:
            event = await sub.next()
            assert isinstance(event, FeedEvent)
            kept.append(event)
        assert dropped + len(kept) == 20
        assert [e.data["i"] for e in kept] == list(range(dropped, 20))
        # Small events still fill the buffer up to its count, as before.
        for i in range(50):
            feed.publish("test.small", data={"i": i})
        assert sub.held_bytes < 64 * KIB
        assert [(await sub.next()).data["i"] for _ in range(50)] == list(range(50))  # type: ignore[union-attr]

    asyncio.run(main())


def test_an_event_heavier_than_the_whole_buffer_is_still_delivered() -> None:
    async def main() -> None:
        store = MemoryStore()
        run = await create_run(store, LaunchSnapshot({}, None))
        feed = RunFeed(store, RunId(run.run_id), buffer=1000, buffer_bytes=8 * KIB)
        sub = feed.subscribe()
        feed.publish("test.small", data={"i": 0})
        feed.publish("test.huge", data={"blob": "x" * 64 * KIB})
        assert await sub.next() == 1
        huge = await sub.next()
        assert isinstance(huge, FeedEvent) and huge.kind == "test.huge" and sub.held_bytes == 0

    asyncio.run(main())


PARTS = """
import os, sys, time
sys.stdin.read()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
import httpx
url, handle = os.environ["MSE_HTTP"], os.environ["MSE_WORKER_HANDLE"]
with httpx.Client(base_url=url, headers={"authorization": "Bearer " + handle}, timeout=60) as http:
    for i in range(int(sys.argv[1])):
        r = http.post("/v1/worker/artifact", params={"name": f"p{i}"}, content=str(i % 10).encode() * (1 << 20))
        r.raise_for_status()
    http.post("/v1/worker/submit", content=b"done").raise_for_status()
"""


def test_a_slow_sse_reader_misses_the_oldest_big_events_and_is_told(tmp_path: Path) -> None:
    """A reader that does not read while 16 MiB of artifacts stream by holds about `sse_buffer_bytes`
    of them (plus the few MiB the sockets carry), not all of them."""
    server = start_server(tmp_path, sse_buffer_bytes=MIB)
    try:
        script = tmp_path / "parts.py"
        script.write_text(PARTS)
        gate = tmp_path / "gate"
        count = 16
        agent = {
            "name": "parts",
            "kind": "subprocess",
            "spec": {"program": sys.executable, "args": [str(script), str(count), str(gate)]},
        }
        bp = {"id": "w", "flow": {"kind": "step", "ref": "parts", "in": P("$.t"), "out": P("$.out")}, "agents": [agent]}
        c = server.client(timeout=120)
        run_id = c.post("/v1/tasks", json={"blueprint": inline(bp), "init_ctx": {"t": 1}, "detach": True}).json()[
            "run_id"
        ]
        with c.stream("GET", f"/v1/runs/{run_id}/events", params={"kind": "output.,core."}) as response:
            assert response.status_code == 200
            # Subscribed (the response has begun): let the worker go, and read nothing until the run ended.
            gate.write_text("go")
            assert server.wait_run(run_id, timeout=120)["status"] == "done"
            events = list(sse_events(response))
    finally:
        server.stop()
    missed = [e for e in events if e.get("kind") == "stream.missed"]
    assert missed, "a reader that fell 16 MiB behind was never told it missed events"
    artifacts = [e for e in events if e.get("kind") == "output.artifact"]
    assert len(artifacts) + sum(m["missed"] for m in missed) >= count
    assert len(artifacts) < count
    assert events[-1]["kind"] == "core.run_finished"
