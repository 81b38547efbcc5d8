"""A finished step leaves nothing for the cyclic garbage collector: its token and token record are
freed by reference counting, and a released token still signs what it was minted with."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.core.engine import Engine
from mlua_swarm.run import run_blueprint
from mlua_swarm.tokens import CapToken, Role, TokenBook, TokenRecord

STEPS = 40


def sequence(n: int) -> dict[str, object]:
    return {
        "id": "garbage",
        "flow": {
            "kind": "loop",
            "counter": {"op": "path", "at": "$.round"},
            "cond": {"op": "lt", "lhs": {"op": "path", "at": "$.i"}, "rhs": {"op": "lit", "value": n}},
            "body": {
                "kind": "step",
                "ref": "inc",
                "in": {"op": "path", "at": "$.i"},
                "out": {"op": "path", "at": "$.i"},
            },
            "max": n + 1,
        },
        "agents": [{"name": "inc", "kind": "python", "spec": {"callable": "garbage_agents:inc"}}],
        "default_init_ctx": {"i": 0},
    }


AGENTS = "async def inc(inv):\n    return inv.input + 1\n"


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """What a full collection finds unreachable while the test runs (the collector itself paused)."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()


async def test_finished_steps_leave_no_token_cycles(saved_garbage: list[object], tmp_path: Path) -> None:
    (tmp_path / "garbage_agents.py").write_text(AGENTS)
    engine = Engine()  # shared, so the run's own engine is not part of what is collected
    compiled = compile_blueprint(sequence(STEPS), base_dir=tmp_path, fns={})
    result = await run_blueprint(compiled, engine=engine)
    assert result.status == "done" and result.final_ctx["i"] == STEPS
    gc.collect()
    kinds = Counter(type(o).__name__ for o in saved_garbage)
    # The run's own session token (and its record) may go with the run's objects; no step's does.
    step_records = [r for r in saved_garbage if isinstance(r, TokenRecord) and r.step_id is not None]
    assert step_records == [], kinds.most_common(8)
    assert [t for t in saved_garbage if isinstance(t, CapToken) and t.role is Role.WORKER] == []


def test_a_forgotten_token_still_signs_its_minted_fields() -> None:
    book = TokenBook(b"k" * 32)
    signed = book.mint("a", Role.WORKER, 60)
    assert signed.sig_hex  # signed while its record was known
    unsigned = book.mint("b", Role.WORKER, 60)
    book.forget(signed)
    book.forget(unsigned)
    other = TokenBook(b"k" * 32)
    assert unsigned.sig_hex == other.sign(unsigned.signing_input())
    assert signed.sig_hex == other.sign(signed.signing_input())
