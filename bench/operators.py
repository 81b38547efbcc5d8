"""`python -m bench.operators [--quick]`: the operator round trip and the cost of parked requests.

1. Round trip: a real server (uvicorn on loopback) and an automated `OperatorClient` in the same
   process; a run of N sequential `operator` steps launched through `POST /v1/tasks` (pinned to the
   client's session), each acked with its value as soon as the spawn arrives. Latency per step =
   attempt started (the spawn frame is queued in that call) → attempt completed (the `spawn_ack`
   applied and the tail folded), from the engine's own events.
2. Parking: 1,000 spawns (a fanout of 1,000 `operator` lanes) waiting on a disconnected session;
   Python heap growth (tracemalloc) per parked request, then the time from reconnecting to the run's
   end with every request answered.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx

from mlua_swarm.operator import OperatorClient, SpawnFrame
from mlua_swarm.server.config import ServerConfig
from mlua_swarm.server.serve import bind_socket, build_server
from mlua_swarm.server.state import ServerState

from . import document, machine

RUNNER = {"backend": "ws_operator", "variant": "bench", "tools": []}


def sequential(n: int) -> dict[str, Any]:
    steps = [
        {"kind": "step", "ref": "op", "in": {"op": "lit", "value": i}, "out": {"op": "path", "at": f"$.s{i}"}}
        for i in range(n)
    ]
    return _bp({"kind": "seq", "children": steps})


def fanout(n: int) -> dict[str, Any]:
    flow = {
        "kind": "fanout",
        "items": {"op": "lit", "value": list(range(n))},
        "bind": {"op": "path", "at": "$.item"},
        "join": "all",
        "out": {"op": "path", "at": "$.lanes"},
        "body": {"kind": "step", "ref": "op", "in": {"op": "path", "at": "$.item"}, "out": {"op": "path", "at": "$.v"}},
    }
    return _bp(flow)


def _bp(flow: dict[str, Any]) -> dict[str, Any]:
    agent = {"name": "op", "kind": "operator", "spec": {"operator_ref": "main-ai"}, "runner": RUNNER}
    return {"id": "bench-operators", "flow": flow, "agents": [agent], "operators": [{"name": "main-ai"}]}


async def serve(tmp: Path) -> tuple[Any, ServerState, asyncio.Task[None]]:
    config = ServerConfig(bind="127.0.0.1:0", store=f"sqlite:///{tmp / 'bench.sqlite3'}")
    sock = bind_socket(config.host, config.port)
    server, state = await build_server(config, sock)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    return server, state, task


async def launch(state: ServerState, raw: dict[str, Any], sid: str) -> asyncio.Future[Any]:
    """Launch `raw` detached through `POST /v1/tasks`, pinned to session `sid`; the run's result future."""
    body = {
        "blueprint": {"kind": "inline", "value": raw},
        "init_ctx": {},
        "detach": True,
        "operator_sid": sid,
        "operator_desc": "bench",
    }
    async with httpx.AsyncClient(base_url=state.base_url, timeout=60) as http:
        answer = await http.post("/v1/tasks", json=body)
    answer.raise_for_status()
    return state.runs.live[answer.json()["run_id"]].done


async def answer(client: OperatorClient, count: int) -> None:
    for _ in range(count):
        request = await client.next_request(60)
        assert isinstance(request, SpawnFrame)
        await client.spawn_ack(request.req_id, request.attempt)


async def round_trip(state: ServerState, base_url: str, steps: int) -> dict[str, float]:
    events = state.engine.events()
    started: dict[str, float] = {}
    latencies: list[float] = []

    async def watch() -> None:
        async for event in events:
            if event.kind == "task_attempt_started":
                started[str(event.step_id)] = time.perf_counter()
            elif event.kind == "task_attempt_completed" and str(event.step_id) in started:
                latencies.append(time.perf_counter() - started.pop(str(event.step_id)))

    watcher = asyncio.create_task(watch())
    async with OperatorClient(base_url, desc="bench") as client:
        assert client.sid is not None
        run = await launch(state, sequential(steps), client.sid)
        await answer(client, steps)
        result = await run
        assert result.status == "done", result.error
    await asyncio.sleep(0)
    watcher.cancel()
    events.close()
    ms = sorted(x * 1000 for x in latencies)
    return {
        "steps": len(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "mean_ms": statistics.fmean(ms),
    }


async def parked(state: ServerState, base_url: str, count: int) -> dict[str, float]:
    hub = state.operators
    assert hub is not None
    client = OperatorClient(base_url, desc="sleeper")
    await client.start()
    await client.disconnect()
    assert client.sid is not None
    session = hub.sessions[client.sid]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    run = await launch(state, fanout(count), client.sid)
    while len(session.pending) < count:
        await asyncio.sleep(0.01)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    began = time.perf_counter()
    await client.resume()
    await answer(client, count)
    result = await run
    drained = time.perf_counter() - began
    assert result.status == "done" and len(result.final_ctx["lanes"]) == count
    await client.aclose()
    return {"parked": count, "bytes_per_request": held / count, "total_kib": held / 1024, "drain_s": drained}


TITLE = "Operators over WebSocket"


async def measure(steps: int, parked_count: int) -> tuple[dict[str, float], dict[str, float]]:
    with TemporaryDirectory() as tmp:
        server, state, task = await serve(Path(tmp))
        try:
            trip = await round_trip(state, state.base_url, steps)
            park = await parked(state, state.base_url, parked_count)
        finally:
            server.should_exit = True
            await task
    return trip, park


def body(trip: dict[str, float], park: dict[str, float]) -> str:
    """The section's text under its heading: how it is measured, then the figures."""
    return "\n".join(
        [
            "A real server (uvicorn on loopback, SQLite store, durability `batch`) and an automated "
            "`OperatorClient` in the same process; runs are launched through `POST /v1/tasks` pinned to the "
            "client's session. Parked requests are not written to the store; the heap figure is everything a "
            "waiting lane costs: its flow task, the engine step, and the parked request (the spawn frame, "
            "whose directive text is most of it, the worker token and `wh-` handle, a future).",
            "",
            "| Case | Figure |",
            "|---|---|",
            f"| round trip, {trip['steps']:,.0f} sequential `operator` steps: attempt started (spawn frame queued) "
            f"→ attempt completed (`spawn_ack` applied, tail folded) | p50 {trip['p50_ms']:.2f} ms, "
            f"p99 {trip['p99_ms']:.2f} ms, mean {trip['mean_ms']:.2f} ms |",
            f"| {park['parked']:,.0f} spawns parked on a disconnected session (a fanout of `operator` lanes), "
            "Python heap growth (tracemalloc) of the whole run while they wait | "
            f"{park['bytes_per_request'] / 1024:.1f} KiB per parked lane, {park['total_kib'] / 1024:.1f} MiB in all |",
            f"| same: reconnect → every spawn delivered (fresh tokens), acked, run `done` | {park['drain_s']:.2f} s |",
        ]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.operators", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 steps and 200 parked spawns")
    parser.add_argument("--write", metavar="PATH", type=Path, help="put the results in PATH (BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.write is not None:
        document.check_writable(args.write, whole=False)
    load_start = machine.load_now()
    trip, park = asyncio.run(measure(50 if args.quick else 500, 200 if args.quick else 1000))
    text = body(trip, park)
    print(text)
    if args.write is not None:
        command = document.command_line("python -m bench.operators", argv)
        section = document.measured_section("operators", TITLE, text, command, load_start, machine.load_now())
        document.write_section(args.write, section, command)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
