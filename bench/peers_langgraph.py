"""LangGraph doing the same work: a loop of trivial nodes (with and without SqliteSaver) and `Send` fanout."""

from __future__ import annotations

import asyncio
import operator
import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any, TypedDict

from .crash import crash_then_resume, log_step
from .harness import Metrics, needs
from .sqlite_size import db_bytes
from .timing import peak_rss_mb, per_unit_us, rss_mb, stopwatch


class LoopState(TypedDict):
    i: int
    limit: int


class FanState(TypedDict):
    n: int
    out: Annotated[list[int], operator.add]


def _inc(state: LoopState) -> dict[str, int]:
    return {"i": state["i"] + 1}


def _again(state: LoopState) -> str:
    return "step" if state["i"] < state["limit"] else "__end__"


def _loop_graph(checkpointer: Any = None) -> Any:
    graph_mod = needs("langgraph.graph", ours=False)
    graph = graph_mod.StateGraph(LoopState)
    graph.add_node("step", _inc)
    graph.add_edge(graph_mod.START, "step")
    graph.add_conditional_edges("step", _again)
    return graph.compile(checkpointer=checkpointer)


def seq(n: int, reps: int, checkpointer: str = "none", durability: str = "async", synchronous: str = "FULL") -> Metrics:
    """A loop graph of `n` supersteps, one trivial node each, run with `invoke` (LangGraph's fastest path).

    `checkpointer="sqlite"` uses SqliteSaver on a fresh WAL file per repetition, with the given durability
    and SQLite `synchronous` setting (FULL, SQLite's default, fsyncs every commit; NORMAL does not).
    """
    if checkpointer == "none":
        app = _loop_graph()
        config = {"recursion_limit": n + 10}

        def once() -> float:
            elapsed = stopwatch()
            result = app.invoke({"i": 0, "limit": n}, config)
            spent = elapsed()
            assert result["i"] == n
            return spent

        return {"us_per_step": per_unit_us(once, n, reps)}
    if checkpointer != "sqlite":
        raise ValueError(f"unknown checkpointer {checkpointer!r}")
    saver_mod = needs("langgraph.checkpoint.sqlite", ours=False)
    sizes: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))

        def once_durable() -> float:
            path = os.path.join(tmp, f"lg-{next(counter)}.db")
            conn = sqlite3.connect(path, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            saver = saver_mod.SqliteSaver(conn)
            saver.setup()
            app = _loop_graph(saver)
            config = {"recursion_limit": n + 10, "configurable": {"thread_id": "bench"}}
            elapsed = stopwatch()
            result = app.invoke({"i": 0, "limit": n}, config, durability=durability)
            spent = elapsed()
            assert result["i"] == n
            conn.close()
            sizes.append(db_bytes(path) / n)
            return spent

        samples = per_unit_us(once_durable, n, reps)
    return {"us_per_step": samples, "bytes_per_step": sizes[-reps:]}


def _fan_graph(sleep_secs: float = 0.0) -> Any:
    graph_mod = needs("langgraph.graph", ours=False)
    types_mod = needs("langgraph.types", ours=False)

    def fan(state: FanState) -> list[Any]:
        return [types_mod.Send("lane", {"x": k}) for k in range(state["n"])]

    def lane(state: dict[str, int]) -> dict[str, list[int]]:
        return {"out": [state["x"]]}

    async def sleeping_lane(state: dict[str, int]) -> dict[str, list[int]]:
        await asyncio.sleep(sleep_secs)
        return {"out": [state["x"]]}

    graph = graph_mod.StateGraph(FanState)
    graph.add_node("lane", sleeping_lane if sleep_secs else lane)
    graph.add_conditional_edges(graph_mod.START, fan, ["lane"])
    graph.add_edge("lane", graph_mod.END)
    return graph.compile()


def fanout(lanes: int, reps: int) -> Metrics:
    """`Send` to `lanes` copies of a trivial node, all joined into one list (no checkpointer), `invoke`."""
    app = _fan_graph()

    def once() -> float:
        elapsed = stopwatch()
        result = app.invoke({"n": lanes, "out": []})
        spent = elapsed()
        assert len(result["out"]) == lanes
        return spent

    return {"us_per_lane": per_unit_us(once, lanes, reps)}


def sleeping_rss(lanes: int, sleep_secs: float) -> Metrics:
    """Resident memory while `lanes` `Send` lanes each sleep (async nodes under `ainvoke`)."""
    app = _fan_graph(sleep_secs)
    baseline = rss_mb()

    async def run() -> None:
        result = await app.ainvoke({"n": lanes, "out": []})
        assert len(result["out"]) == lanes

    asyncio.run(run())
    return {"rss_mb": peak_rss_mb(), "baseline_mb": baseline}


def crash_phase(workdir: str, n: int, kill_at: int | None, phase: str) -> Metrics:
    """One phase of the crash workload: `run` a loop of `n` steps on SqliteSaver (sync), or `resume` it."""
    saver_mod = needs("langgraph.checkpoint.sqlite", ours=False)
    log = Path(workdir) / "steps.log"

    def logged_inc(state: LoopState) -> dict[str, int]:
        log_step(log, state["i"], kill_at)
        return {"i": state["i"] + 1}

    graph_mod = needs("langgraph.graph", ours=False)
    graph = graph_mod.StateGraph(LoopState)
    graph.add_node("step", logged_inc)
    graph.add_edge(graph_mod.START, "step")
    graph.add_conditional_edges("step", _again)
    conn = sqlite3.connect(os.path.join(workdir, "lg.db"), check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    saver = saver_mod.SqliteSaver(conn)
    saver.setup()
    app = graph.compile(checkpointer=saver)
    config = {"recursion_limit": n + 10, "configurable": {"thread_id": "crash"}}
    start = {"i": 0, "limit": n} if phase == "run" else None
    result = app.invoke(start, config, durability="sync")
    if result["i"] != n:
        raise RuntimeError(f"LangGraph run ended at i={result['i']}, expected {n}")
    return {"final": float(result["i"])}


def crash_resume(n: int, kill_after: int) -> Metrics:
    """Kill a SqliteSaver loop of `n` steps inside step `kill_after`, then resume its thread."""
    needs("langgraph.checkpoint.sqlite", ours=False)
    with tempfile.TemporaryDirectory() as tmp:
        return crash_then_resume("bench.peers_langgraph:crash_phase", Path(tmp), n, kill_after)


def main(argv: list[str]) -> int:
    """`python -m bench.peers_langgraph N`: one `invoke` of the loop graph of N trivial nodes, as a
    whole process (the peer of a whole `mse run` process)."""
    n = int(argv[0])
    result = _loop_graph().invoke({"i": 0, "limit": n}, {"recursion_limit": n + 10})
    return 0 if result["i"] == n else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
