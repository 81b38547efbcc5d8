"""`EventBus.wants` answers per kind for the subscribers of the moment, and forgets its answers as
subscribers come and go."""

from __future__ import annotations

from mlua_swarm.core.events import _WANTED_KINDS, EventBus


def test_wants_follows_filtered_subscribers_as_they_come_and_go() -> None:
    bus = EventBus(maxlen=16)
    assert not bus.wants("worker_output")
    steps = bus.subscribe(("task_",))
    assert bus.wants("task_created") and not bus.wants("worker_output")
    outputs = bus.subscribe(("worker_",))
    assert bus.wants("worker_output")
    outputs.close()
    assert not bus.wants("worker_output") and bus.wants("task_created")
    everything = bus.subscribe()
    assert bus.wants("worker_output")
    everything.close()
    steps.close()
    assert not bus.wants("task_created")


def test_the_answers_kept_stay_bounded_whatever_kinds_are_asked() -> None:
    bus = EventBus(maxlen=16)
    bus.subscribe(("mw.",))
    for n in range(_WANTED_KINDS * 4):
        assert bus.wants(f"mw.kind{n}")
        assert not bus.wants(f"other.kind{n}")
    assert len(bus._wanted) <= _WANTED_KINDS
