"""`python -m bench.dashboard [--quick]`: how fast the dashboard's run page draws and follows a big run.

Two workloads on a real `mse serve` (child process, SQLite store), measured in Debian's Chromium through
Playwright:

- `seq` — a run of N `identity` steps in one `seq`;
- `fanout` — a fanout of N lanes, one `identity` step each.

Each run starts with a gate step (a child blocked on a named pipe), so the page is open and following
the run's event stream before the N steps go. Reported per workload:

- `render_ms` — navigation to the finished run's page until its flow is drawn (median of a few loads);
- `server_s` — gate release until the run's stream says it finished (how fast the engine went);
- `follow_lag_ms` — from that moment until the open page shows every step passed and the run done:
  how far the page fell behind the stream (0 would be perfectly live).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from . import document, machine

CHROMIUM = os.environ.get("MSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LISTENING = re.compile(r"mse serve: listening on (\S+)")
RENDER_BUDGET_MS = 1000.0
FOLLOW_BUDGET_MS = 1000.0
"""Keeping up with the stream: the open page is done at most this long after the stream said so."""
SRC = Path(__file__).resolve().parents[1] / "src"


def P(at: str) -> dict[str, Any]:
    return {"op": "path", "at": at}


def gate_agent(fifo: Path) -> dict[str, Any]:
    return {
        "name": "gate",
        "kind": "subprocess",
        "spec": {"program": "sh", "args": ["-c", f"cat {fifo} >/dev/null; echo 1"]},
    }


def seq_blueprint(n: int, fifo: Path) -> dict[str, Any]:
    steps = [{"kind": "step", "ref": "gate", "in": P("$.x"), "out": P("$.gate")}]
    steps += [{"kind": "step", "ref": f"s{i}", "in": P("$.x"), "out": P(f"$.r{i}")} for i in range(n)]
    agents = [gate_agent(fifo)] + [
        {"name": f"s{i}", "kind": "rust_fn", "spec": {"fn_id": "identity"}} for i in range(n)
    ]
    return {"id": f"bench-seq-{n}", "flow": {"kind": "seq", "children": steps}, "agents": agents}


def fanout_blueprint(n: int, fifo: Path) -> dict[str, Any]:
    fanout = {
        "kind": "fanout",
        "items": {"op": "lit", "value": list(range(n))},
        "bind": P("$.item"),
        "join": "all",
        "out": P("$.lanes"),
        "body": {"kind": "step", "ref": "lane", "in": P("$.item"), "out": P("$.v")},
    }
    flow = {"kind": "seq", "children": [{"kind": "step", "ref": "gate", "in": P("$.x"), "out": P("$.gate")}, fanout]}
    agents = [gate_agent(fifo), {"name": "lane", "kind": "rust_fn", "spec": {"fn_id": "identity"}}]
    return {"id": f"bench-fanout-{n}", "flow": flow, "agents": agents}


class Server:
    """`mse serve` on a free loopback port with its own store."""

    def __init__(self, home: Path) -> None:
        env = {**os.environ, "MSE_HOME": str(home)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlua_swarm", "serve", "--bind", "127.0.0.1:0", "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            match = LISTENING.search(line)
            if match:
                self.url = match.group(1).rstrip("/")
                break
        else:
            raise RuntimeError("mse serve exited before listening")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def wait_finished(client: httpx.Client, run_id: str, started: float, out: dict[str, float]) -> None:
    """Read the run's event stream until it ends; note when it said the run finished."""
    with client.stream("GET", f"/v1/runs/{run_id}/events", timeout=300) as stream:
        for line in stream.iter_lines():
            if "core.run_finished" in line and "finished" not in out:
                out["finished"] = time.perf_counter() - started
    out.setdefault("finished", time.perf_counter() - started)


def measure(page: Page, server: Server, blueprint: dict[str, Any], fifo: Path, n: int, loads: int) -> dict[str, Any]:
    client = httpx.Client(base_url=server.url, timeout=60)
    body = {"blueprint": {"kind": "inline", "value": blueprint}, "init_ctx": {"x": 1}, "detach": True}
    response = client.post("/v1/tasks", json=body)
    response.raise_for_status()
    run_id = response.json()["run_id"]
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_function("window.mseRun && window.mseRun.ready")
    page.wait_for_selector('.step[data-ref="gate"][data-state="running"]', timeout=60_000)

    marks: dict[str, float] = {}
    started = time.perf_counter()
    follower = threading.Thread(target=wait_finished, args=(client, run_id, started, marks))
    follower.start()
    with fifo.open("w") as gate:
        gate.write("go\n")
    page.wait_for_function(
        """(n) => document.getElementById('run-status').textContent === 'done'
             && [...window.mseRun.dispatches.values()].filter(d => d.status === 'passed').length >= n + 1""",
        arg=n,
        timeout=300_000,
        polling="raf",
    )
    shown = time.perf_counter() - started
    follower.join(300)
    client.close()

    renders = []
    for _ in range(loads):
        page.goto(f"{server.url}/runs/{run_id}")
        page.wait_for_function("window.mseRun && window.mseRun.ready")
        renders.append(page.evaluate("performance.getEntriesByName('mse-drawn')[0].startTime"))
    return {
        "run_id": run_id,
        "steps": n,
        "render_ms": round(statistics.median(renders), 1),
        "render_max_ms": round(max(renders), 1),
        "server_s": round(marks["finished"], 3),
        "follow_lag_ms": round(max(0.0, shown - marks["finished"]) * 1000, 1),
    }


TITLE = "Dashboard: the run page of a big run"


def section_body(results: list[dict[str, Any]]) -> str:
    """The results as the text of BENCHMARKS.md's dashboard section (under its heading)."""
    lines = [
        "The dashboard's run page in Debian's Chromium (Playwright, 1280x800) against `mse serve` in a child "
        "process with a SQLite store. `seq`: a run of N `identity` steps; `fanout`: a fanout of N lanes. "
        "*Render* is navigation to the finished run's page until its flow is drawn (median of the page loads, "
        "the slowest in brackets). *Engine* is how long the server took to run the N steps once released; "
        "*follow lag* is how long after the run's event stream said it finished the already-open page showed "
        "every step passed and the run done (how far the live page falls behind the stream).",
        "",
        "| Workload | Steps | Render [ms] | Engine [s] | Follow lag [ms] | Target | Result |",
        "|---|---|---|---|---|---|---|",
    ]
    target = f"render <= {RENDER_BUDGET_MS:,.0f} ms; lag <= {FOLLOW_BUDGET_MS:,.0f} ms"
    for row in results:
        result = "PASS" if row["within_budget"] else "MISS"
        lines.append(
            f"| {row['workload']} | {row['steps']:,} | {row['render_ms']:,.0f} (max {row['render_max_ms']:,.0f}) "
            f"| {row['server_s']:.2f} | {row['follow_lag_ms']:,.0f} | {target} | {result} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 steps and lanes instead of 1,000")
    parser.add_argument("--steps", type=int, help="steps / lanes per run (default 1000)")
    parser.add_argument("--loads", type=int, default=5, help="page loads per render measurement")
    parser.add_argument("--write", metavar="PATH", type=Path, help="put the results in PATH's dashboard section")
    args = parser.parse_args(argv)
    if args.write is not None:
        document.check_writable(args.write, whole=False)
    load_start = machine.load_now()
    n = args.steps or (100 if args.quick else 1000)
    results = []
    with tempfile.TemporaryDirectory(prefix="mse-bench-dash-") as tmp:
        home = Path(tmp)
        server = Server(home)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                for name, build in (("seq", seq_blueprint), ("fanout", fanout_blueprint)):
                    fifo = home / f"gate-{name}"
                    os.mkfifo(fifo)
                    row = {"workload": name, **measure(page, server, build(n, fifo), fifo, n, args.loads)}
                    row["within_budget"] = (
                        row["render_ms"] <= RENDER_BUDGET_MS and row["follow_lag_ms"] <= FOLLOW_BUDGET_MS
                    )
                    results.append(row)
                    print(json.dumps(row), flush=True)
                browser.close()
        finally:
            server.stop()
    if args.write is not None:
        command = document.command_line("python -m bench.dashboard", argv)
        body = section_body(results)
        section = document.measured_section("dashboard", TITLE, body, command, load_start, machine.load_now())
        document.write_section(args.write, section, command)
    return 0 if all(r["within_budget"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
