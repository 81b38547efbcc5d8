"""`python -m bench.server [--quick] [--write BENCHMARKS.md]`: the server under launch load, beside Prefect 3.

1. Launch load: a real `mse serve` (its own process, SQLite store, default durability) and N detached
   runs of a 3-step Blueprint launched over HTTP by C concurrent clients (one asyncio loop, one
   keep-alive connection per client). Runs/s = N / (first launch sent → every run `done`); launch
   latency = the `POST /v1/tasks` round trip. Prefect 3: its own server (`prefect server start` on
   loopback), first on its default SQLite database, then on a throwaway PostgreSQL cluster (its
   production setup), running the same N flows of three tasks, C at a time; each flow run and task
   run is recorded by that server (Prefect's flows run in the client process; its server keeps state).
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

from . import document, machine
from .harness import REPO_ROOT

NOTES = """
- **The two sides do different work per "launch".** Ours is a detached launch: `POST /v1/tasks`
  answers 202 once the run is recorded and started, and the run finishes on the server. A Prefect
  flow runs in the client process and its call returns when the flow is done, so Prefect's latency
  columns are whole flow runs. Runs/s is comparable: both count runs (flows) completed per second,
  with every run's steps (tasks) recorded by the server.
- **Prefect on its default SQLite database struggles with 50 concurrent flows.** Each flow and
  task run is created and moved through its states by API calls, each a write transaction on the
  server's one database; the writers contend for SQLite's lock, the server answers 503 (its log
  shows the `database is locked` errors), and the client retries, and in runs of 1,000 flows gave
  up. On PostgreSQL, Prefect's production setup, every flow completes; that is the row the ratio uses.
- **Ours is bounded by one Python process on one event loop.** The server's CPU per run (above) says
  what one free core would carry; the run rate is what the shared machine gave (see its load average
  above: other sessions' test suites ran beside it), and the load client needs CPU too. A profile of
  the server under this workload (cProfile) puts about 45% of its CPU in driving the three steps
  (engine dispatch, middleware, step records), about 15% in the launch route (the run row and its
  commit), about 10% in SQLite statements, and the rest in HTTP handling (uvicorn, Starlette) and
  JSON. Two costs were removed on the way to these figures: the function registry was rebuilt,
  scanning the installed entry points, on every launch (19 ms each; the first measurement gave 20
  runs/s), and every launch was compiled afresh (a Blueprint that reads no file is now compiled once
  and shared by its runs). The load client is a bare HTTP/1.1 keep-alive client: httpx spent about
  twice the server's CPU per request, which on two cores capped the rate.
- **SSE latency tracks the machine's own scheduling delay.** Events are pushed from the run's own
  loop to each subscriber's bounded buffer, and nothing is read from the store while nobody listens.
  In-process steps can finish one after another without the run ever suspending; with a subscriber
  the run now yields once per step so each step's events leave as it ends (before that, the same
  workload measured p50 6.8 ms, p99 21 ms: events waited for the run's next pause). The floor row is
  how late a 2 ms timer of the subscriber's process woke over the same period.
"""
"""What the figures mean and what limits them (from profiling this workload), printed under the tables."""

TITLE = "Server: launch load and live events"
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
        """Completed runs per second (all of them, unless the side was stopped at its time limit)."""
        return self.completed / self.seconds if self.seconds else 0.0

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
                print(f"L {latencies[-1]:.3f}", flush=True)
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
def prefect_server(home: Path, database_url: str | None = None) -> Iterator[tuple[str, dict[str, str]]]:
    """`prefect server start` on loopback with its own PREFECT_HOME, on its default SQLite database or
    `database_url`; yields (API URL, client env)."""
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
        "PREFECT_API_LOG_RETRYABLE_ERRORS": "true",
    }
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
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


@contextlib.contextmanager
def postgres(home: Path) -> Iterator[str | None]:
    """A throwaway PostgreSQL cluster on a free loopback port (initdb + pg_ctl, run as the `postgres`
    user when we are root); yields its asyncpg URL for Prefect, or None when PostgreSQL is not here."""
    bindir = next((Path(p).parent for p in (shutil.which("pg_ctl"), shutil.which("initdb")) if p), None)
    if bindir is None:
        yield None
        return
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = home / "pgdata"
    home.mkdir(parents=True, exist_ok=True)
    if as_user:
        home.parent.chmod(0o755)  # the postgres user must reach its folder inside our temp dir
        shutil.chown(home, "postgres")
    port = _free_port()
    run = {"check": True, "capture_output": True, "cwd": "/"}
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"], **run)
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on"
    pg_ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run([*pg_ctl, "-o", options, "-l", str(home / "pg.log"), "-w", "start"], **run)
    try:
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", "create database prefect"], **run
        )
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], check=False, capture_output=True, cwd="/")


def prefect_load(runs: int, clients: int, database: str, limit: float) -> LoadResult:
    """Prefect's own server (on `sqlite`, its default, or `postgres`) running `runs` flows, `clients` at
    once, stopped after `limit` seconds (then the rate is what completed by then)."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-prefect-")))
        url = None
        if database == "postgres":
            url = stack.enter_context(postgres(tmp / "pg"))
            if url is None:
                raise RuntimeError("PostgreSQL (initdb, pg_ctl) is not installed here")
        api, env = stack.enter_context(prefect_server(tmp, url))
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-c", PREFECT_CLIENT, str(runs), str(clients)],
                capture_output=True,
                text=True,
                env=env,
                check=False,
                timeout=limit,
            )
        except subprocess.TimeoutExpired as expired:
            seconds = time.perf_counter() - started
            out = expired.stdout.decode() if isinstance(expired.stdout, bytes) else expired.stdout or ""
            latencies = [float(line[2:]) for line in out.splitlines() if line.startswith("L ")]
            filtered = {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
            completed = int(httpx.post(f"{api}/flow_runs/count", json=filtered, timeout=60).json())
            result = LoadResult("Prefect 3", runs, clients, seconds, latencies, completed)
            result.note = f"stopped at its {limit:.0f} s limit"
            return result
        filtered = {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
        completed = int(httpx.post(f"{api}/flow_runs/count", json=filtered, timeout=60).json())
        if done.returncode != 0:
            log = (tmp / "server.log").read_text(errors="replace")
            locked = log.count("database is locked")
            why = done.stderr.strip().splitlines()[-1][:300] if done.stderr.strip() else f"exit {done.returncode}"
            if "503 Service Unavailable" in why:
                why = "its server kept answering 503 Service Unavailable"
            raise RuntimeError(
                f"the Prefect client gave up after {completed} completed flows: {why}"
                + (f"; its server log shows {locked} `database is locked` errors" if locked else "")
            )
        measured = json.loads(done.stdout.strip().splitlines()[-1])
    return LoadResult("Prefect 3", runs, clients, measured["seconds"], measured["latencies_ms"], completed)


# ── report ───────────────────────────────────────────────────────────────────


def _fmt(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def report(
    ours: LoadResult,
    peers: list[tuple[str, LoadResult | str]],
    sse: list[float],
    lateness: list[float],
    versions: str,
) -> str:
    """The section's body (under its heading and provenance line)."""
    out = [
        "Both sides in this one invocation, one after the other.",
        "",
        f"- {versions}",
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
    for label, peer in peers:
        if isinstance(peer, str):
            out.append(f"| {label}, {ours.clients} at a time | - | - | - | - | ours >= 10x | not measured: {peer} |")
            continue
        ratio = ours.runs_per_sec / peer.runs_per_sec if peer.runs_per_sec else float("inf")
        stopped = f"; {peer.note}" if peer.note else ""
        out.append(
            f"| {label}: {peer.runs:,} flows of 3 tasks, {peer.clients} at a time (flow run latency{stopped}) | "
            f"{_fmt(peer.runs_per_sec)} | {_fmt(pct(peer.latencies_ms, 0.5))} | {_fmt(pct(peer.latencies_ms, 0.99))} | "
            f"{peer.completed:,} / {peer.runs:,} | ours >= 10x | {ratio:.1f}x {'PASS' if ratio >= 10 else 'MISS'} |"
        )
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
    out += ["", "### Server: what the figures mean and what limits them", NOTES.rstrip("\n")]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 runs instead of 1,000")
    parser.add_argument("--runs", type=int, help="runs per side (default 1,000; 100 with --quick)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--sse-runs", type=int, help="runs followed for the SSE latency (default 50)")
    parser.add_argument("--no-prefect", action="store_true", help="only our side")
    parser.add_argument("--prefect-runs", type=int, help="flows per Prefect setup (default: as many as ours)")
    parser.add_argument("--prefect-limit", type=float, default=900, help="seconds each Prefect setup may run")
    parser.add_argument("--rounds", type=int, default=3, help="our side's rounds, each on a fresh server (median kept)")
    parser.add_argument("--write", type=Path, metavar="PATH", help="put the results in PATH (BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.write is not None:
        document.check_writable(args.write, whole=False)
    runs = args.runs or (100 if args.quick else 1000)
    sse_runs = args.sse_runs or (10 if args.quick else 50)
    load_start = machine.load_now()
    versions = f"prefect {_prefect_version()}, httpx {metadata.version('httpx')}"
    for line in [*machine.describe(), versions, f"at start: {machine.load()}"]:
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
    peers: list[tuple[str, LoadResult | str]] = []
    for database in [] if args.no_prefect else ["sqlite", "postgres"]:
        label = f"Prefect 3 + {'PostgreSQL' if database == 'postgres' else 'SQLite (its default)'}"
        try:
            peer = prefect_load(args.prefect_runs or runs, args.clients, database, args.prefect_limit)
            print(f"{label}: {peer.runs_per_sec:.1f} runs/s, flow p50 {pct(peer.latencies_ms, 0.5):.1f} ms")
            peers.append((label, peer))
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"{label} not measured: {exc}", file=sys.stderr)
            peers.append((label, str(exc).splitlines()[0][:400]))
    body = report(ours, peers, sse, lateness, versions)
    print(body)
    print(f"at end: {machine.load()}")
    if args.write is not None:
        command = document.command_line("python -m bench.server", argv)
        section = document.measured_section("server", TITLE, body, command, load_start, machine.load_now())
        document.write_section(args.write, section, command)
        print(f"wrote {args.write}", file=sys.stderr)
    return 0


def _prefect_version() -> str:
    try:
        return metadata.version("prefect")
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
