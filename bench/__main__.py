"""`python -m bench [--quick] [--only NAME,...] [--write PATH]`: run the workloads and print the tables."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.console import Console

from . import machine
from .harness import ProbeRunner, Row, Workload, measure_row
from .report import markdown, print_table
from .workloads import WORKLOADS


def parse_args(argv: list[str]) -> argparse.Namespace:
    names = ", ".join(w.name for w in WORKLOADS)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes and fewer repetitions (under a minute)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help=f"workloads to run: {names}")
    parser.add_argument("--write", metavar="PATH", type=Path, help="also write the results as markdown (BENCHMARKS.md)")
    parser.add_argument("--timeout", type=float, help="seconds one probe may take (default 120 quick, 900 full)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per comparison (default 1 quick, 3 full)")
    return parser.parse_args(argv)


def select(only: list[str]) -> list[Workload]:
    """The workloads named in `--only` (comma-separated or repeated), all when none is named."""
    wanted = [name.strip() for item in only for name in item.split(",") if name.strip()]
    known = {w.name: w for w in WORKLOADS}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise SystemExit(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[name] for name in wanted] if wanted else list(WORKLOADS)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    workloads = select(args.only)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    errors = Console(stderr=True)
    description = machine.describe()
    for line in description:
        console.print(line, highlight=False)
    timeout = args.timeout or (120.0 if args.quick else 900.0)
    rounds = args.rounds or (1 if args.quick else 3)
    runner = ProbeRunner(timeout, rounds, lambda msg: errors.print(msg, style="dim", highlight=False))
    results: list[tuple[Workload, list[Row]]] = []
    for workload in workloads:
        errors.print(f"[bold]{workload.title}[/bold]")
        rows = [measure_row(runner, workload.name, cmp) for cmp in workload.rows(args.quick)]
        results.append((workload, rows))
        print_table(console, workload, rows)
    description.append(f"at end: {machine.load()}")
    console.print(description[-1], highlight=False)
    if args.write is not None:
        command = "python -m bench " + shlex.join(argv)
        args.write.write_text(markdown(results, command.strip(), description, args.quick))
        errors.print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
