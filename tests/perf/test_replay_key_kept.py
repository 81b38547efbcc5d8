"""A durable run's large inputs are hashed once a run (issue #14: a step with a 1 MB input, durable).

A run recorded in a store works from its own copy of the initial ctx (`EngineDispatcher.own`):
nobody else holds it and the flow never changes a nested value in place, so the replay key of a
large top-level value is computed once and kept. The key itself must not change (stored runs
resume with the keys they recorded), values the run does not own are hashed afresh every time,
and the caller changing its init object after launch reaches neither a step's input nor its key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.core.engine import Engine
from mlua_swarm.run import Run, dispatcher
from mlua_swarm.run.dispatcher import KEPT_KEY_BYTES, EngineDispatcher, input_hash
from mlua_swarm.store import Store, open_store
from mlua_swarm.worker.adapter import WorkerInvocation


def big_object(keys: int) -> dict[str, Any]:
    return {f"k{i}": {"text": "x" * 100, "n": i, "tags": ["a", "b"]} for i in range(keys)}


BIG_KEYS = 1_000
"""About 130 KB of canonical JSON: past `KEPT_KEY_BYTES`."""


def P(at: str) -> dict[str, str]:
    return {"op": "path", "at": at}


def loop_over(source: str, steps: int, fn: Any) -> Any:
    raw = {
        "id": "kept",
        "flow": {
            "kind": "loop",
            "counter": P("$.n"),
            "cond": {"op": "lit", "value": True},
            "max": steps,
            "body": {"kind": "step", "ref": "a", "in": P(source), "out": P("$.r")},
        },
        "agents": [{"name": "a", "kind": "rust_fn", "spec": {"fn_id": "fn"}}],
    }
    return compile_blueprint(raw, base_dir=Path("."), fns={"fn": fn})


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    opened = await open_store(str(tmp_path / "runs.sqlite3"))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def encodings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every canonical encoding the dispatcher makes (the real encoder, counted)."""
    seen: list[int] = []
    real = dispatcher.canonical_bytes

    def counted(value: Any) -> bytes:
        data = real(value)
        seen.append(len(data))
        return data

    monkeypatch.setattr(dispatcher, "canonical_bytes", counted)
    return seen


async def keys_of(store: Store, run: Run) -> list[str]:
    return [row.input_hash for row in await store.list_replay(run.run_id)]


async def test_a_large_init_value_is_hashed_once_a_run_under_the_key_it_always_had(
    store: Store, encodings: list[int]
) -> None:
    big = big_object(BIG_KEYS)
    size, key = len(dispatcher.canonical_bytes(big)), input_hash(big)
    assert size >= KEPT_KEY_BYTES
    encodings.clear()

    async def count(inv: WorkerInvocation) -> int:
        return len(inv.input)

    async with Run(loop_over("$.big", 6, count), store=store) as run:
        result = await run.execute({"big": big})
    large = [n for n in encodings if n >= KEPT_KEY_BYTES]
    assert result.status == "done" and result.final_ctx is not None and result.final_ctx["r"] == BIG_KEYS
    assert large == [size], "one encoding of the large input in six steps"
    assert await keys_of(store, run) == [key] * 6


async def test_the_caller_changing_its_init_after_launch_reaches_no_step(store: Store) -> None:
    big = big_object(BIG_KEYS)
    original = input_hash(big)
    seen: list[tuple[int, Any]] = []

    async def meddle(inv: WorkerInvocation) -> int:
        seen.append((len(inv.input), inv.input["k0"]["n"]))
        # the caller's object, changed in place while the run goes on
        big["k0"]["n"] = -1
        big["added"] = {"by": "the caller"}
        return len(seen)

    async with Run(loop_over("$.big", 3, meddle), store=store) as run:
        result = await run.execute({"big": big})
    assert result.status == "done"
    assert seen == [(BIG_KEYS, 0)] * 3
    assert await keys_of(store, run) == [original] * 3


async def test_a_value_a_worker_kept_and_changed_is_hashed_as_it_is_each_time(store: Store) -> None:
    """A step's output is not the run's own: its producer may hold it and change it later."""
    kept = big_object(BIG_KEYS)
    seen: list[Any] = []

    async def produce_then_change(inv: WorkerInvocation) -> Any:
        if inv.input is None:
            return kept  # the first step returns an object it keeps
        seen.append(inv.input["k0"]["n"])
        kept["k0"]["n"] += 1  # and every later step changes it in place
        return kept

    async with Run(loop_over("$.r", 4, produce_then_change), store=store) as run:
        result = await run.execute({"r": None})
    assert result.status == "done", result.error
    assert seen == [0, 1, 2]
    expected = [input_hash(None)]
    for n in seen:
        kept["k0"]["n"] = n
        expected.append(input_hash(kept))
    assert await keys_of(store, run) == expected


def test_own_copies_the_ctx_and_keeps_keys_only_for_its_large_top_level_values(encodings: list[int]) -> None:
    engine = Engine()
    owner = EngineDispatcher(engine, engine.attach("t"), spawner=None)  # type: ignore[arg-type]
    ctx = {"big": big_object(BIG_KEYS), "small": {"a": [1, 2]}, "text": "t" * KEPT_KEY_BYTES, "n": 3}
    own = owner.own(ctx)
    assert own == ctx and own is not ctx
    assert all(own[k] is not ctx[k] for k in ("big", "small"))
    expected = {name: input_hash(ctx[name]) for name in ctx}
    for name in ("big", "small", "text"):
        encodings.clear()
        assert owner.replay_key(own[name]) == owner.replay_key(own[name]) == expected[name]
        assert (len(encodings) == 1) is (name != "small"), (name, encodings)
    encodings.clear()
    assert owner.replay_key(ctx["big"]) == owner.replay_key(ctx["big"]) == expected["big"]
    assert len(encodings) == 2, "the caller's own object is not the run's: hashed each time"
    assert owner.own([1, 2]) == [1, 2], "a ctx that is not an object is left for the flow to refuse"
