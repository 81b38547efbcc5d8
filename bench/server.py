"""`python -m bench.server [--quick] [--write BENCHMARKS.md]`: the server under launch load, beside Prefect 3.

1. Launch load: a real `mse serve` (its own process, SQLite store, default durability) and N detached
   runs of a 3-step Blueprint launched over HTTP by C concurrent clients (one asyncio loop, one
   keep-alive connection per client). Runs/s = N / (first launch sent → every run `done`); launch
   latency = the `POST /v1/tasks` round trip. Prefect 3: its own server (`prefect server start`,
   SQLite, loopback) and the same N flows of three tasks, C at a time, each flow run and task run
   recorded by that server (Prefect's flows run in the client process; its server keeps the state).
2. Step end → SSE event: runs of a short wait step then ten identity steps, each with a subscriber
   on `GET /v1/runs/{id}/events` opened before the steps run; latency = the subscriber's receive
   time minus the `step.finished` event's timestamp (taken when the step ended; same host clock).

Both sides run in this one invocation, one after the other, on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from . import machine
from .harness import REPO_ROOT

START = "<!-- bench.server:start -->"
END = "<!-- bench.server:end -->"
LISTENING = re.compile(r"listening on (\S+)")
SERVER_WAIT_SECS = 120.0

CHAIN = {
    "id": "chain3",
    "flow": {
        "kind": "seq",
        "children": [
            {"kind": "step", "ref": r, "in": {"op": "path", "at": src}, "out": {"op": "path", "at": f"$.{r}"}}
            for r, src in (("a", "$.topic"), ("b", "$.a"), ("c", "$.b"))
        ],
    },
    "agents": [{"name": n, "kind": "rust_fn", "spec": {"fn_id": "identity"}} for n in "abc"],
}

SSE_STEPS = 10
SSE_WAIT_SECS = 0.3


def sse_blueprint() -> dict[str, Any]:
    """A wait step (a child sleeping, so the subscriber is attached in time), then ten identity steps."""
    steps: list[dict[str, Any]] = [
        {"kind": "step", "ref": "wait", "in": {"op": "lit", "value": ""}, "out": {"op": "path", "at": "$.wait"}}
    ]
    steps += [
        {"kind": "step", "ref": f"s{i}", "in": {"op": "lit", "value": i}, "out": {"op": "path", "at": f"$.s{i}"}}
        for i in range(SSE_STEPS)
    ]
    agents: list[dict[str, Any]] = [
        {"name": "wait", "kind": "subprocess", "spec": {"program": "sleep", "args": [str(SSE_WAIT_SECS)]}}
    ]
    agents += [{"name": f"s{i}", "kind": "rust_fn", "spec": {"fn_id": "identity"}} for i in range(SSE_STEPS)]
    return {"id": "sse", "flow": {"kind": "seq", "children": steps}, "agents": agents}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class LoadResult:
    name: str
    runs: int
    clients: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    completed: int = 0
    server_cpu_secs: float | None = None
    """CPU time the server process used during the load (all its threads), where /proc tells."""
    note: str = ""

    @property
    def runs_per_sec(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "runs": self.runs,
            "clients": self.clients,
            "seconds": self.seconds,
            "completed": self.completed,
            "latencies_ms": self.latencies_ms,
            "server_cpu_secs": self.server_cpu_secs,
            "note": self.note,
        }


# ── ours ─────────────────────────────────────────────────────────────────────


def cpu_secs(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` so far (Linux /proc), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def mse_serve(home: Path) -> Iterator[tuple[str, int]]:
    """`mse serve` on a free loopback port in its own process; yields its URL and pid; SIGTERM on exit."""
    env = {**os.environ, "MSE_HOME": str(home), "MSE_HTTP": "", "MSE_ADMIN_TOKEN": ""}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlua_swarm", "serve", "--bind", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=home,
    )
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:
            found = LISTENING.search(line)
            if found:
                url = found.group(1)
                break
        if url is None:
            raise RuntimeError(f"mse serve exited with {proc.wait()}")
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


class RawClient:
    """A bare HTTP/1.1 keep-alive connection: the load generator must cost far less than the server it
    measures (httpx spends about twice the server's CPU per request, which on two cores caps the rate)."""

    def __init__(self, url: str) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


async def ours_load(url: str, runs: int, clients: int) -> LoadResult:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        assert (await http.post("/v1/blueprints/chain3", json=CHAIN)).status_code in (200, 201)
        body = json.dumps(
            {"blueprint": {"kind": "id", "id": "chain3"}, "init_ctx": {"topic": "t"}, "detach": True}
        ).encode()
        latencies: list[float] = []
        remaining = iter(range(runs))
        connections = [RawClient(url) for _ in range(clients)]

        async def client(conn: RawClient) -> None:
            for _ in remaining:
                sent = time.perf_counter()
                status, answer = await conn.request("POST", "/v1/tasks", body)
                latencies.append((time.perf_counter() - sent) * 1000)
                if status != 202:
                    raise RuntimeError(f"launch refused: {status} {answer[:500]!r}")

        started = time.perf_counter()
        try:
            await asyncio.gather(*(client(conn) for conn in connections))
        finally:
            for conn in connections:
                await conn.close()
        while (await http.get("/v1/status")).json()["running_runs"]:
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - started
        listed = (await http.get("/v1/runs", params={"status": "done", "limit": runs * 2})).json()["runs"]
    return LoadResult("mlua-swarm", runs, clients, seconds, latencies, completed=len(listed))


JITTER_TICK_SECS = 0.002


async def wake_lateness(samples: list[float], stop: asyncio.Event) -> None:
    """How late (ms) a 2 ms timer of this process wakes: the machine's own scheduling delay, the
    floor under any latency measured on it."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + JITTER_TICK_SECS
        await asyncio.sleep(JITTER_TICK_SECS)
        samples.append((loop.time() - due) * 1000)


async def sse_latency(url: str, runs: int) -> tuple[list[float], list[float]]:
    """Step end → SSE receive (ms) of every `step.finished` event of `runs` runs, delivered live; and
    the timer lateness of this process over the same time."""
    lateness: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(wake_lateness(lateness, stop))
    try:
        return await _sse_samples(url, runs), lateness
    finally:
        stop.set()
        await probe


async def _sse_samples(url: str, runs: int) -> list[float]:
    samples: list[float] = []
    body = {"blueprint": {"kind": "inline", "value": sse_blueprint()}, "init_ctx": {}, "detach": True}
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(60, read=None)) as http:
        for _ in range(runs):
            run_id = (await http.post("/v1/tasks", json=body)).json()["run_id"]
            async with http.stream("GET", f"/v1/runs/{run_id}/events") as stream:
                attached = time.time()
                async for line in stream.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    received = time.time()
                    event = json.loads(line[5:])
                    if event["kind"] == "step.finished" and event["step"] != "wait" and event["ts"] > attached:
                        samples.append((received - event["ts"]) * 1000)
                    if event["kind"] in ("core.run_finished", "core.run_interrupted"):
                        break
    return samples


# ── Prefect ──────────────────────────────────────────────────────────────────

PREFECT_CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from prefect import flow, task

    @task
    async def step(value):
        return {"echoed": value}

    @flow
    async def chain3(topic):
        a = await step(topic)
        b = await step(a)
        return await step(b)

    async def main(runs, clients):
        latencies = []
        remaining = iter(range(runs))
        async def client():
            for _ in remaining:
                sent = time.perf_counter()
                await chain3("t")
                latencies.append((time.perf_counter() - sent) * 1000)
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        print(json.dumps({"seconds": time.perf_counter() - started, "latencies_ms": latencies}))

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def prefect_server(home: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`prefect server start` on loopback with its own PREFECT_HOME (SQLite); yields (API URL, client env)."""
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or shutil.which("prefect")
    if prefect is None:
        raise RuntimeError("the `prefect` command is not installed (pip install -e '.[bench]')")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    }
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + SERVER_WAIT_SECS
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with {proc.returncode}: {(home / 'server.log').read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not answer within {SERVER_WAIT_SECS}s")
            time.sleep(0.2)
        yield api, env
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


PREFECT_FALLBACK_CLIENTS = 10
"""Prefect's server on SQLite answers 503 once too many flows write at once; then it is measured at this."""


def prefect_load(runs: int, clients: int) -> LoadResult:
    """Prefect at `clients` concurrent flows, or, if its server gives up (503), at the fallback."""
    try:
        return _prefect_load(runs, clients)
    except RuntimeError as exc:
        if "503" not in str(exc) or clients <= PREFECT_FALLBACK_CLIENTS:
            raise
        print(f"Prefect 3 at {clients} concurrent flows: its server answered 503; again at {PREFECT_FALLBACK_CLIENTS}")
        result = _prefect_load(runs, PREFECT_FALLBACK_CLIENTS)
        result.note = (
            f"at {clients} concurrent flows Prefect's server (SQLite) answered 503 Service Unavailable and the "
            f"client gave up, so it was measured at {PREFECT_FALLBACK_CLIENTS}"
        )
        return result


def _prefect_load(runs: int, clients: int) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="bench-prefect-") as tmp, prefect_server(Path(tmp)) as (api, env):
        done = subprocess.run(
            [sys.executable, "-c", PREFECT_CLIENT, str(runs), str(clients)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the Prefect client failed: {done.stderr[-2000:]}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        filtered = {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
        completed = httpx.post(f"{api}/flow_runs/count", json=filtered, timeout=30).json()
    return LoadResult("Prefect 3", runs, clients, measured["seconds"], measured["latencies_ms"], int(completed))


# ── report ───────────────────────────────────────────────────────────────────


def _fmt(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def report(
    ours: LoadResult,
    peer: LoadResult | None,
    peer_error: str,
    sse: list[float],
    lateness: list[float],
    command: str,
    lines: list[str],
) -> str:
    out = [
        START,
        "## Server: launch load and live events (`bench/server.py`)",
        "",
        f"- Command: `{command}`; both sides in this one invocation, one after the other",
        *[f"- {line}" for line in lines],
        f"- Load: {ours.runs:,} runs of a 3-step Blueprint (three `identity` steps), {ours.clients} concurrent "
        "clients on keep-alive connections, detached launches (`POST /v1/tasks`, registered Blueprint by id); "
        "the server: `mse serve` in its own process, SQLite store, durability `batch`; our side runs several "
        "rounds, each on a fresh server, and the median round is shown",
        "",
        "| Case | runs/s | launch p50 [ms] | launch p99 [ms] | completed | target | result |",
        "|---|---|---|---|---|---|---|",
    ]
    lat = ours.latencies_ms
    out.append(
        f"| mlua-swarm: {ours.runs:,} detached runs, {ours.clients} clients "
        f"(median round; rounds: {ours.note} runs/s) | {_fmt(ours.runs_per_sec)} | "
        f"{_fmt(pct(lat, 0.5))} | {_fmt(pct(lat, 0.99))} | {ours.completed:,} / {ours.runs:,} | >= 200 runs/s | "
        f"{'PASS' if ours.runs_per_sec >= 200 else 'MISS'} |"
    )
    cpu_note = ""
    if ours.server_cpu_secs:
        per_run = ours.server_cpu_secs / ours.runs * 1000
        cpu_note = (
            f"Server CPU during the load: {ours.server_cpu_secs:.2f} s for {ours.runs:,} runs, "
            f"{per_run:.2f} ms per run (launch request, three steps, their records and events), "
            f"so one free core would carry about {1000 / per_run:,.0f} runs/s; the run rate above "
            "is what the shared machine gave."
        )
    if peer is not None:
        ratio = ours.runs_per_sec / peer.runs_per_sec if peer.runs_per_sec else float("inf")
        out.append(
            f"| Prefect 3: {peer.runs:,} flows of 3 tasks, {peer.clients} at a time (flow run latency) | "
            f"{_fmt(peer.runs_per_sec)} | {_fmt(pct(peer.latencies_ms, 0.5))} | {_fmt(pct(peer.latencies_ms, 0.99))} | "
            f"{peer.completed:,} / {peer.runs:,} | ours >= 10x | {ratio:.1f}x {'PASS' if ratio >= 10 else 'MISS'} |"
        )
    else:
        out.append(f"| Prefect 3 | - | - | - | - | ours >= 10x | not measured: {peer_error} |")
    if peer is not None and peer.note:
        out += ["", f"Prefect: {peer.note}."]
    if cpu_note:
        out += ["", cpu_note]
    out += [
        "",
        f"Step end → SSE event at a subscriber: {len(sse)} `step.finished` events of runs of ten identity steps "
        f"(after a {SSE_WAIT_SECS}s child step that lets the subscriber attach), one run at a time:",
        "",
        "| Case | p50 [ms] | p99 [ms] | max [ms] | target | result |",
        "|---|---|---|---|---|---|",
    ]
    if sse:
        p99 = pct(sse, 0.99)
        out.append(
            f"| step end → SSE event | {pct(sse, 0.5):.2f} | {p99:.2f} | {max(sse):.2f} | p99 <= 20 ms | "
            f"{'PASS' if p99 <= 20 else 'MISS'} |"
        )
    if lateness:
        out.append(
            f"| floor: a {JITTER_TICK_SECS * 1000:.0f} ms timer of the subscriber's process, how late it wakes | "
            f"{pct(lateness, 0.5):.2f} | {pct(lateness, 0.99):.2f} | {max(lateness):.2f} | - | |"
        )
    out += ["", END, ""]
    return "\n".join(out)


def write_section(path: Path, section: str) -> None:
    """Put the section in `path`, replacing an earlier one between the markers (else appending it)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 runs instead of 1,000")
    parser.add_argument("--runs", type=int, help="runs per side (default 1,000; 100 with --quick)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--sse-runs", type=int, help="runs followed for the SSE latency (default 50)")
    parser.add_argument("--no-prefect", action="store_true", help="only our side")
    parser.add_argument("--rounds", type=int, default=3, help="our side's rounds, each on a fresh server (median kept)")
    parser.add_argument("--write", type=Path, metavar="PATH", help="put the results in PATH (BENCHMARKS.md)")
    args = parser.parse_args(argv)
    runs = args.runs or (100 if args.quick else 1000)
    sse_runs = args.sse_runs or (10 if args.quick else 50)
    lines = machine.describe()
    lines.insert(-1, f"prefect {_prefect_version()}, httpx {metadata.version('httpx')}")
    for line in lines:
        print(line)
    rounds: list[LoadResult] = []
    for number in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-mse-") as tmp, mse_serve(Path(tmp)) as (url, pid):
            before = cpu_secs(pid)
            measured = asyncio.run(ours_load(url, runs, args.clients))
            after = cpu_secs(pid)
            if before is not None and after is not None:
                measured.server_cpu_secs = after - before
            rounds.append(measured)
            print(f"mlua-swarm round {number + 1}: {measured.runs_per_sec:.1f} runs/s, {machine.load()}")
            if number == args.rounds - 1:
                sse, lateness = asyncio.run(sse_latency(url, sse_runs))
    ours = sorted(rounds, key=lambda r: r.runs_per_sec)[len(rounds) // 2]
    ours.note = ", ".join(f"{r.runs_per_sec:.0f}" for r in rounds)
    print(f"mlua-swarm median: {ours.runs_per_sec:.1f} runs/s, launch p50 {pct(ours.latencies_ms, 0.5):.1f} ms")
    print(f"SSE: p50 {pct(sse, 0.5):.2f} ms, p99 {pct(sse, 0.99):.2f} ms over {len(sse)} events")
    print(f"timer lateness: p50 {pct(lateness, 0.5):.2f} ms, p99 {pct(lateness, 0.99):.2f} ms")
    peer: LoadResult | None = None
    peer_error = "skipped (--no-prefect)"
    if not args.no_prefect:
        try:
            peer = prefect_load(runs, args.clients)
            print(f"Prefect 3: {peer.runs_per_sec:.1f} runs/s, flow p50 {pct(peer.latencies_ms, 0.5):.1f} ms")
        except RuntimeError as exc:
            peer_error = str(exc).splitlines()[0][:300]
            print(f"Prefect 3 not measured: {exc}", file=sys.stderr)
    lines.append(f"at end: {machine.load()}")
    command = "python -m bench.server " + " ".join(argv)
    section = report(ours, peer, peer_error, sse, lateness, command.strip(), lines)
    print(section)
    if args.write is not None:
        write_section(args.write, section)
        print(f"wrote {args.write}", file=sys.stderr)
    return 0


def _prefect_version() -> str:
    try:
        return metadata.version("prefect")
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
