"""Fanout lanes ending in unusual ways: cancelled from inside, raising a non-flow error, and a fanout
whose caller is cancelled more than once while its lanes are still winding down."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from flow_helpers import fanout, lit, p, step

from mlua_swarm.flow.errors import FlowFailed
from mlua_swarm.flow.evaluator import run_flow
from mlua_swarm.flow.nodes import Branch, Fanout, parse_node

LANE = step("lane", "$.item", "$.out")


class Scripted:
    """A dispatcher: item "cancel-me" raises CancelledError itself, "wait" parks until cancelled and
    then until `let_go` is set before it stops, anything else returns at once."""

    def __init__(self) -> None:
        self.parked = asyncio.Event()
        self.stopping = asyncio.Event()
        self.let_go = asyncio.Event()
        self.stopped: list[Any] = []

    async def dispatch(self, step_: Any, item: Any) -> Any:
        if item == "cancel-me":
            raise asyncio.CancelledError
        if item == "wait":
            self.parked.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.stopping.set()
                await self.let_go.wait()
                self.stopped.append(item)
                raise
        return f"done {item}"


async def test_a_lane_cancelled_from_inside_is_a_rejected_lane() -> None:
    flow = parse_node(fanout(lit(["a", "cancel-me", "c"]), LANE, "all_settled"))
    ctx = await run_flow(flow, {}, Scripted())
    assert [lane["status"] for lane in ctx["rs"]] == ["fulfilled", "rejected", "fulfilled"]
    assert ctx["rs"][1]["reason"] == "fanout lane 1 was cancelled"


async def test_a_lane_cancelled_from_inside_fails_a_join_all() -> None:
    with pytest.raises(FlowFailed, match="fanout lane 0 was cancelled"):
        await run_flow(parse_node(fanout(lit(["cancel-me", "b"]), LANE, "all")), {}, Scripted())


async def test_a_non_flow_error_in_a_lane_propagates_as_itself_after_its_siblings_stopped() -> None:
    class Unknown:
        """A node kind the evaluator has no handler for: evaluating it is a bug, not a flow error."""

    # Lanes over "wait" park in their step; the lane over "boom" evaluates the unknown node.
    wait_or_boom = parse_node(
        {
            "kind": "branch",
            "cond": {"op": "eq", "lhs": p("$.item"), "rhs": lit("wait")},
            "then": LANE,
            "else": {"kind": "seq", "children": []},
        }
    )
    assert isinstance(wait_or_boom, Branch)
    body = dataclasses.replace(wait_or_boom, else_=Unknown())  # type: ignore[arg-type]
    node = parse_node(fanout(lit(["wait", "boom"]), LANE, "all"))
    assert isinstance(node, Fanout)
    lanes = Scripted()
    lanes.let_go.set()
    with pytest.raises(KeyError):
        await run_flow(dataclasses.replace(node, body=body), {}, lanes)
    assert lanes.stopped == ["wait"]


async def test_a_fanout_cancelled_twice_still_waits_for_every_lane() -> None:
    lanes = Scripted()
    task = asyncio.create_task(run_flow(parse_node(fanout(lit(["wait"]), LANE, "all")), {}, lanes))
    await lanes.parked.wait()
    task.cancel()
    await lanes.stopping.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.2)
    assert not done, "the fanout returned while one of its lanes was still running"
    lanes.let_go.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lanes.stopped == ["wait"]
