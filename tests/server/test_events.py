"""The SSE stream of a run: every step's events in order, ends with the run, Last-Event-ID resumes."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from mlua_swarm.ids import RunId
from mlua_swarm.server.feed import RunFeed
from mlua_swarm.store import LaunchSnapshot, MemoryStore, create_run
from tests.server.blueprints import chain, child, inline
from tests.server.sse import read_all, sse_events
from tests.serverkit import LiveServer, start_server


def gated_script(tmp_path: Path) -> tuple[Path, Path]:
    gate = tmp_path / "gate"
    script = tmp_path / "gated.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, os, sys, time
            sys.stdin.read()
            while not os.path.exists({str(gate)!r}):
                time.sleep(0.01)
            print(json.dumps({{"done": True}}))
            """
        )
    )
    return gate, script


def test_stream_shows_every_step_in_order_and_ends_with_the_run(live_server: LiveServer, tmp_path: Path) -> None:
    gate, script = gated_script(tmp_path)
    c = live_server.client()
    launch = {"blueprint": inline(child("gated", script, before="prep")), "init_ctx": {"topic": "x"}, "detach": True}
    run_id = c.post("/v1/tasks", json=launch).json()["run_id"]
    seen: list[dict[str, object]] = []
    with c.stream("GET", f"/v1/runs/{run_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in sse_events(response):
            seen.append(event)
            if event["kind"] == "step.started" and event["step"] == "work":
                gate.write_text("go")
    kinds = [(e["kind"], e["step"]) for e in seen]
    assert kinds[0] == ("core.run_started", None)
    assert kinds[-1] == ("core.run_finished", None) and seen[-1]["data"]["status"] == "done"  # type: ignore[index]
    order = [k for k in kinds if k[0].startswith(("step.", "output."))]
    assert order == [
        ("step.started", "prep"),
        ("output.final", "prep"),
        ("step.finished", "prep"),
        ("step.started", "work"),
        ("output.final", "work"),
        ("step.finished", "work"),
    ]
    ids = [int(str(e["_id"])) for e in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    finished = next(e for e in seen if e["kind"] == "step.finished" and e["step"] == "work")
    assert finished["data"]["value"] == {"done": True}  # type: ignore[index]


def test_last_event_id_resumes_without_gaps(live_server: LiveServer, tmp_path: Path) -> None:
    gate, script = gated_script(tmp_path)
    c = live_server.client()
    launch = {"blueprint": inline(child("gated", script, before="prep")), "init_ctx": {"topic": "x"}, "detach": True}
    run_id = c.post("/v1/tasks", json=launch).json()["run_id"]
    first: list[dict[str, object]] = []
    with c.stream("GET", f"/v1/runs/{run_id}/events") as response:
        for event in sse_events(response):
            first.append(event)
            if event["kind"] == "step.started" and event["step"] == "work":
                break
    gate.write_text("go")
    rest = read_all(c, run_id, **{"last-event-id": str(first[-1]["_id"])})
    whole = read_all(c, run_id)
    assert [e["_id"] for e in first + rest] == [e["_id"] for e in whole]
    assert rest[-1]["kind"] == "core.run_finished"
    after = read_all(c, run_id, **{"last-event-id": str(whole[-1]["_id"])})
    assert after == []
    filtered = c.get(f"/v1/runs/{run_id}/events", params={"kind": "step.", "after": 0}).text
    assert "output.final" not in filtered and "core.run_finished" in filtered


def test_stream_of_a_finished_run_replays_and_ends(live_server: LiveServer) -> None:
    c = live_server.client()
    run_id = c.post("/v1/tasks", json={"blueprint": inline(chain()), "init_ctx": {"topic": "t"}}).json()["run_id"]
    events = read_all(c, run_id)
    assert [e["step"] for e in events if e["kind"] == "step.finished"] == ["a", "b", "c"]
    assert events[-1]["kind"] == "core.run_finished"
    assert c.get("/v1/runs/R-ffff/events").status_code == 404
    assert c.get(f"/v1/runs/{run_id}/events", headers={"last-event-id": "x"}).status_code == 400


def test_a_run_is_not_held_back_by_a_subscriber_that_never_reads(tmp_path: Path) -> None:
    server = start_server(tmp_path, sse_buffer=4)
    try:
        gate, script = gated_script(tmp_path)
        c = server.client()
        launch = {
            "blueprint": inline(child("gated", script, before="prep")),
            "init_ctx": {"topic": "x"},
            "detach": True,
        }
        run_id = c.post("/v1/tasks", json=launch).json()["run_id"]
        with c.stream("GET", f"/v1/runs/{run_id}/events"):
            gate.write_text("go")
            assert server.wait_run(run_id)["status"] == "done"
    finally:
        server.stop()


def test_feed_subscriber_buffer_is_bounded_and_reports_what_it_dropped() -> None:
    async def main() -> None:
        store = MemoryStore()
        run = await create_run(store, LaunchSnapshot({}, None))
        feed = RunFeed(store, RunId(run.run_id), buffer=4)
        sub = feed.subscribe()
        with pytest.raises(TimeoutError):
            await sub.next(0.01)
        for i in range(10):
            feed.publish("test.tick", data={"i": i})
        assert await sub.next() == 6
        kept = [await sub.next() for _ in range(4)]
        assert [e.data["i"] for e in kept] == [6, 7, 8, 9]  # type: ignore[union-attr]
        feed.end()
        assert await sub.next() is None
        assert await feed.subscribe().next() is None

    asyncio.run(main())
