"""Fanout join modes, lane isolation and concurrency, cancellation of losers and of the whole run, scale."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from flow_helpers import NOOP, Agents, assign, fanout, lit, p, seq, step

from mlua_swarm.flow.errors import ExprTypeError, FlowFailed, StepBlocked, StepFailed
from mlua_swarm.flow.evaluator import run_flow
from mlua_swarm.flow.nodes import parse_node

LANE = step("lane", "$.item", "$.out")


class Lanes:
    """A dispatcher whose lanes follow a per-item script, synchronised with events (no sleeps)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.started = 0
        self.all_started = asyncio.Event()
        self.release: dict[Any, asyncio.Event] = {}
        self.cancelled: list[Any] = []
        self.finished: list[Any] = []
        self.done: dict[Any, asyncio.Event] = {}

    def gate(self, item: Any) -> asyncio.Event:
        return self.release.setdefault(item, asyncio.Event())

    def finished_event(self, item: Any) -> asyncio.Event:
        return self.done.setdefault(item, asyncio.Event())

    async def dispatch(self, step_: Any, item: Any) -> Any:
        self.started += 1
        if self.started == self.count:
            self.all_started.set()
        try:
            await self.gate(item).wait()
        except asyncio.CancelledError:
            self.cancelled.append(item)
            raise
        self.finished.append(item)
        self.finished_event(item).set()
        if isinstance(item, str) and item.startswith("fail"):
            raise StepFailed(f"{item} failed")
        if isinstance(item, str) and item.startswith("block"):
            raise StepBlocked(item)
        return f"done {item}"


async def start(flow: dict[str, Any], ctx: dict[str, Any], lanes: Lanes) -> asyncio.Task[dict[str, Any]]:
    task = asyncio.create_task(run_flow(parse_node(flow), ctx, lanes))
    try:
        await asyncio.wait_for(lanes.all_started.wait(), timeout=10)
    except TimeoutError:
        task.cancel()
        raise AssertionError(f"only {lanes.started} of {lanes.count} lanes started concurrently") from None
    return task


async def test_all_collects_each_lane_ctx_in_item_order() -> None:
    lanes = Lanes(3)
    task = await start(fanout(p("$.xs"), LANE, "all"), {"xs": ["a", "b", "c"], "keep": 1}, lanes)
    for item in ("c", "a", "b"):
        lanes.gate(item).set()
    ctx = await task
    assert ctx["rs"] == [{"xs": ["a", "b", "c"], "keep": 1, "item": x, "out": f"done {x}"} for x in ("a", "b", "c")]
    assert "item" not in ctx and "out" not in ctx
    assert lanes.finished == ["c", "a", "b"]


async def test_all_first_error_aborts_and_cancels_the_rest() -> None:
    lanes = Lanes(3)
    task = await start(fanout(lit(["a", "fail-b", "c"]), LANE, "all"), {}, lanes)
    lanes.gate("fail-b").set()
    with pytest.raises(FlowFailed) as info:
        await task
    assert info.value.message == "step 'lane': fail-b failed"
    assert info.value.failed_step == "lane"
    assert sorted(lanes.cancelled) == ["a", "c"]


async def test_all_and_all_settled_of_no_items_are_empty() -> None:
    for join in ("all", "all_settled"):
        assert (await run_flow(parse_node(fanout(lit([]), LANE, join)), {}, Agents()))["rs"] == []


@pytest.mark.parametrize("join", ["any", "race"])
async def test_any_and_race_of_no_items_fail(join: str) -> None:
    with pytest.raises(FlowFailed) as info:
        await run_flow(parse_node(fanout(lit([]), LANE, join)), {}, Agents())
    assert isinstance(info.value.__cause__, ExprTypeError)


async def test_any_first_success_wins_after_a_failure_and_losers_are_cancelled_and_awaited() -> None:
    lanes = Lanes(3)
    task = await start(fanout(lit(["fail-a", "b", "c"]), LANE, "any"), {}, lanes)
    lanes.gate("fail-a").set()
    await lanes.finished_event("fail-a").wait()
    lanes.gate("b").set()
    ctx = await task
    assert ctx["rs"] == {"item": "b", "out": "done b"}
    assert lanes.cancelled == ["c"]


async def test_any_all_failing_raises_the_last_error() -> None:
    lanes = Lanes(2)
    task = await start(fanout(lit(["fail-1", "block-2"]), LANE, "any"), {}, lanes)
    lanes.gate("fail-1").set()
    lanes.gate("block-2").set()
    with pytest.raises(FlowFailed) as info:
        await task
    assert info.value.verdict_value == "block-2"
    assert lanes.finished == ["fail-1", "block-2"]


async def test_race_first_settled_success_decides() -> None:
    lanes = Lanes(3)
    task = await start(fanout(lit(["a", "b", "c"]), LANE, "race"), {}, lanes)
    lanes.gate("c").set()
    assert (await task)["rs"] == {"item": "c", "out": "done c"}
    assert sorted(lanes.cancelled) == ["a", "b"]


async def test_race_first_settled_error_decides() -> None:
    lanes = Lanes(2)
    task = await start(fanout(lit(["a", "fail-b"]), LANE, "race"), {}, lanes)
    lanes.gate("fail-b").set()
    with pytest.raises(FlowFailed, match="fail-b failed"):
        await task
    assert lanes.cancelled == ["a"]


async def test_all_settled_records_every_lane() -> None:
    lanes = Lanes(3)
    task = await start(fanout(lit(["a", "fail-b", "c"]), LANE, "all_settled"), {}, lanes)
    for item in ("c", "fail-b", "a"):
        lanes.gate(item).set()
    assert (await task)["rs"] == [
        {"status": "fulfilled", "value": {"item": "a", "out": "done a"}},
        {"status": "rejected", "reason": "step 'lane': fail-b failed"},
        {"status": "fulfilled", "value": {"item": "c", "out": "done c"}},
    ]


async def test_lanes_are_isolated_from_each_other_and_from_the_parent() -> None:
    body = seq(assign("$.shared.seen", p("$.item")), assign("$.mine", p("$.item")))
    ctx = await run_flow(parse_node(fanout(lit([1, 2]), body, "all")), {"shared": {"seen": 0}}, Agents())
    assert ctx["shared"] == {"seen": 0}
    assert [lane["shared"]["seen"] for lane in ctx["rs"]] == [1, 2]
    assert [lane["mine"] for lane in ctx["rs"]] == [1, 2]


async def test_lane_bind_error_is_a_lane_failure() -> None:
    flow = fanout(lit([1]), NOOP, "all_settled", bind="$.s.k")
    ctx = await run_flow(parse_node(flow), {"s": "text"}, Agents())
    assert ctx["rs"][0]["status"] == "rejected"
    assert "$.s is a string" in ctx["rs"][0]["reason"]


async def test_cancelling_the_run_cancels_every_lane() -> None:
    lanes = Lanes(4)
    task = await start(fanout(lit([1, 2, 3, 4]), LANE, "all"), {}, lanes)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(lanes.cancelled) == [1, 2, 3, 4]


async def test_nested_fanout_losers_are_cancelled_too() -> None:
    lanes = Lanes(4)
    inner = fanout(p("$.item"), step("lane", "$.item", "$.out"), "all", bind="$.item", out="$.inner")
    task = await start(fanout(lit([["a", "b"], ["c", "d"]]), inner, "race"), {}, lanes)
    lanes.gate("a").set()
    lanes.gate("b").set()
    ctx = await task
    assert [lane["out"] for lane in ctx["rs"]["inner"]] == ["done a", "done b"]
    assert sorted(lanes.cancelled) == ["c", "d"]


async def test_ten_thousand_lanes() -> None:
    ctx = await run_flow(
        parse_node(fanout(p("$.xs"), LANE, "all")), {"xs": list(range(10_000))}, Agents(lane=lambda v: v)
    )
    assert [lane["out"] for lane in ctx["rs"]] == list(range(10_000))


async def test_ten_thousand_step_seq() -> None:
    flow = seq(*[step("inc", "$.n", "$.n") for _ in range(10_000)])
    agents = Agents(inc=lambda v: v + 1)
    assert await run_flow(parse_node(flow), {"n": 0}, agents) == {"n": 10_000}
    assert len(agents.calls) == 10_000
