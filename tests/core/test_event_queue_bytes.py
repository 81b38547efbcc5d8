"""An engine subscriber's queue is bounded by weight as well as by count: a subscriber that does not
read while large outputs go by holds at most `event_queue_bytes` of them (the newest whatever it
weighs), loses the oldest and is told how many, like the count bound. Weights are the ones the
output budget already gave the events; nothing is measured per event."""

from __future__ import annotations

from typing import Any

from mlua_swarm.core.config import EngineConfig
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.core.events import EVENT_ENVELOPE, Event
from mlua_swarm.worker.adapter import InProcSpawner, WorkerInvocation

from ..conftest import run_one

MIB = 1024 * 1024


async def big(inv: WorkerInvocation) -> Any:
    return "x" * inv.input


def drain(stream: Any) -> list[Event]:
    events = []
    while (event := stream.get_nowait()) is not None:
        events.append(event)
    return events


async def test_large_outputs_past_the_byte_bound_drop_the_oldest_and_say_how_many() -> None:
    engine = Engine(EngineConfig(event_queue_bytes=3 * MIB))
    op = engine.attach("test")
    spawner = InProcSpawner().register("big", big)
    stream = engine.events(("worker_output",))
    for _ in range(5):
        await run_one(engine, op, spawner, TaskSpec("big", MIB))
    assert 2 * MIB < stream.held_bytes <= 3 * MIB
    first = await anext(stream)
    assert first.kind == "events_dropped" and first.data == {"count": 3}
    kept = drain(stream)
    assert [e.kind for e in kept] == ["worker_output", "worker_output"]
    assert all(len(e.data["event"]["content"]["value"]) == MIB for e in kept)
    assert stream.held_bytes == 0
    stream.close()


async def test_a_step_result_weighs_what_its_outputs_weighed() -> None:
    engine = Engine(EngineConfig(event_queue_bytes=3 * MIB))
    op = engine.attach("test")
    stream = engine.events()
    await run_one(engine, op, InProcSpawner().register("big", big), TaskSpec("big", 2 * MIB))
    events = {e.kind: e for e in drain(stream)}
    # The Final's and the result's copies of the 2 MiB value do not both fit: the Final is dropped.
    assert list(events) == ["task_attempt_completed"]
    assert events["task_attempt_completed"].size >= 2 * MIB
    assert stream.held_bytes == 0
    stream.close()


async def test_one_event_heavier_than_the_bound_is_still_delivered() -> None:
    engine = Engine(EngineConfig(event_queue_bytes=MIB))
    op = engine.attach("test")
    stream = engine.events(("worker_output",))
    await run_one(engine, op, InProcSpawner().register("big", big), TaskSpec("big", 2 * MIB))
    assert stream.held_bytes > MIB
    [event] = drain(stream)
    assert event.kind == "worker_output" and event.size >= 2 * MIB
    stream.close()


async def test_small_events_are_bounded_by_count_and_weigh_their_envelope() -> None:
    engine = Engine(EngineConfig(event_queue_size=3))
    stream = engine.events()
    for i in range(5):
        engine.publish("tick", None, i=i)
    assert stream.held_bytes == 3 * EVENT_ENVELOPE
    assert (await anext(stream)).data == {"count": 2}
    assert [e.data["i"] for e in drain(stream)] == [2, 3, 4]
    stream.close()
