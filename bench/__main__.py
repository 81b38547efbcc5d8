"""`python -m bench [--quick] [--only NAME,...] [--skip NAME,...] [--write PATH]`: run the benchmarks.

Every section of BENCHMARKS.md comes from here: the workloads measured through the probe harness and
the component benchmarks (server, operators, dashboard), each run as its own command in a child
process. With `--write`, each finished section is put into PATH at once, replacing that section and
keeping every other one (see `bench.document`), so a partial run refreshes only what it measured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from . import document, machine
from .harness import REPO_ROOT, ProbeRunner, measure_row
from .report import print_table, workload_section
from .workloads import COMPONENTS, NAMES, WORKLOADS, Component, select


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes and fewer repetitions (a minute or two)")
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help=f"sections to run: {', '.join(NAMES)}"
    )
    parser.add_argument("--skip", action="append", default=[], metavar="NAME", help="sections not to run")
    parser.add_argument("--write", metavar="PATH", type=Path, help="put the sections into PATH (BENCHMARKS.md)")
    parser.add_argument("--timeout", type=float, help="seconds one probe may take (default 120 quick, 900 full)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per comparison (default 1 quick, 3 full)")
    return parser.parse_args(argv)


def run_component(
    component: Component, quick: bool, timeout: float, log: Callable[[str], None]
) -> document.Section | str:
    """Run a component benchmark's own command in a child: its section, or why there is none."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "section.md"
        argv = [sys.executable, "-m", component.module, *component.args(quick), "--write", str(out)]
        log(f"  {' '.join(argv[1:])}")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])}
        try:
            done = subprocess.run(
                argv, cwd=REPO_ROOT, env=env, stdout=sys.stderr, stderr=subprocess.PIPE, text=True, timeout=timeout
            )
            reason = "" if out.exists() else f"exit {done.returncode}: {_tail(done.stderr)}"
        except subprocess.TimeoutExpired:
            reason = f"timed out after {timeout:.0f} s"
        found = document.parse(out.read_text()) if out.exists() else []
    named = [s for s in found if s.name == component.name]
    return named[0] if named else reason or "it wrote no section"


def not_measured(component: Component, reason: str, load_start: float) -> document.Section:
    """The section of a component that could not run (when the file has no earlier one to keep)."""
    body = f"## {component.title}\n\nNot measured in the last run (`python -m {component.module}`): {reason}."
    return document.Section(component.name, body, document.now_stamp(), load_start, machine.load_now())


def _tail(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:300] if lines else "no output"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    names = select(args.only, args.skip)
    whole = set(names) == set(NAMES)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    errors = Console(stderr=True)

    def log(msg: str) -> None:
        errors.print(msg, style="dim", highlight=False, markup=False)

    description = machine.describe()
    for line in [*description, f"at start: {machine.load()}"]:
        console.print(line, highlight=False)
    timeout = args.timeout or (120.0 if args.quick else 900.0)
    rounds = args.rounds or (1 if args.quick else 3)
    runner = ProbeRunner(timeout, rounds, log)
    command = document.command_line("python -m bench", argv)
    invocation = document.Invocation(command, description, names)
    workloads = {w.name: w for w in WORKLOADS}
    components = {c.name: c for c in COMPONENTS}
    if args.write is not None:
        document.check_writable(args.write, whole=whole)
    started = time.monotonic()
    done: list[document.Section] = []
    for name in names:
        began = time.monotonic()
        if name in workloads:
            workload = workloads[name]
            errors.print(f"[bold]{workload.title}[/bold]")
            load_start = machine.load_now()
            rows = [measure_row(runner, workload.name, cmp) for cmp in workload.rows(args.quick)]
            print_table(console, workload, rows)
            section = workload_section(workload, rows, command, load_start, machine.load_now())
        else:
            component = components[name]
            errors.print(f"[bold]{component.title}[/bold]")
            load_start = machine.load_now()
            measured = run_component(component, args.quick, max(timeout, 1800.0), log)
            if isinstance(measured, str):
                log(f"  -> not measured: {measured}")
                kept = args.write is not None and name in document.names_in(args.write)
                if kept:
                    log(f"  keeping the {name} section already in {args.write}")
                    continue
                measured = not_measured(component, measured, load_start)
            section = measured
        done.append(section)
        log(f"  {name}: {time.monotonic() - began:.0f} s")
        if args.write is not None:
            document.write(args.write, done, invocation)
    console.print(f"at end: {machine.load()}; {time.monotonic() - started:.0f} s", highlight=False)
    if args.write is not None:
        errors.print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
