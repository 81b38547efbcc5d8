"""The server keeps a plain `def` agent that leaves `spec.inline` unset in worker threads."""

from __future__ import annotations

import pytest

from tests.perf.test_inline_agents import STEPS, blueprint, moved_onto_the_loop, ran_on
from tests.server.blueprints import inline as inline_source
from tests.serverkit import LiveServer


@pytest.mark.parametrize("inline", [None, "auto"])
def test_the_server_keeps_unset_ones_in_threads(live_server: LiveServer, inline: object) -> None:
    ran_on.clear()
    c = live_server.client()
    r = c.post("/v1/tasks", json={"blueprint": inline_source(blueprint("python", inline)), "init_ctx": {"i": 0}})
    assert r.status_code == 200 and r.json()["final_ctx"]["i"] == STEPS, r.text
    on_loop = [thread is live_server.thread for thread in ran_on]
    if inline is None:
        assert not any(on_loop)
    else:
        assert moved_onto_the_loop(on_loop), on_loop
