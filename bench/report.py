"""Present measured rows: a terminal table (rich) and the BENCHMARKS.md document."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .harness import Cell, Row, Workload

COLUMNS = ("Case", "mlua-swarm", "Peer", "Peer / ours", "Floor", "Ours / floor", "Target", "Result")
SHORT_STATUS = {"unavailable": "n/a", "error": "error"}


def fmt(value: float | None) -> str:
    """A figure with about three significant digits."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def figure_text(cell: Cell) -> str:
    """The figure, or a short word saying why there is none (the reason goes into the notes)."""
    if cell.value is not None:
        return fmt(cell.value) if cell.best is None else f"{fmt(cell.value)} (min {fmt(cell.best)})"
    if cell.note.startswith("not installed"):
        return "not installed"
    if cell.note.startswith("not available yet"):
        return "not yet"
    return SHORT_STATUS.get(cell.status, "-")


def labelled(cell: Cell | None) -> str:
    return "-" if cell is None else f"{cell.label}: {figure_text(cell)}"


def row_cells(row: Row) -> list[str]:
    """The cells of one row in `COLUMNS` order."""
    return [
        f"{row.case} [{row.unit}]",
        figure_text(row.ours),
        labelled(row.peer),
        fmt_ratio(row.peer_ratio),
        labelled(row.floor),
        fmt_ratio(row.floor_ratio),
        "; ".join(text for text, _ in row.verdicts) or "-",
        row.result,
    ]


def notes(rows: Sequence[Row]) -> list[str]:
    """Why each missing figure is missing, once per distinct reason."""
    seen: list[str] = []
    for row in rows:
        for cell in (row.ours, row.peer, row.floor):
            if cell is not None and cell.value is None and cell.note:
                line = f"{cell.label}: {cell.note}"
                if line not in seen:
                    seen.append(line)
    return seen


def print_table(console: Console, workload: Workload, rows: Sequence[Row]) -> None:
    table = Table(title=workload.title, title_justify="left")
    for name in COLUMNS:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row_cells(row))
    console.print(table)
    for line in notes(rows):
        console.print(f"  note: {line}", style="dim", highlight=False)


LIMITS = Path(__file__).with_name("limits.md")
"""Hand-written analysis of what limits the targets we miss, appended to every BENCHMARKS.md."""


def _md(text: str) -> str:
    return text.replace("|", "\\|")


BUSY_LOAD = 1.5
"""A 1-minute load average above this at start is called out at the top of BENCHMARKS.md."""


def busy_at_start(machine: Sequence[str]) -> float | None:
    """The 1-minute load average of the `at start:` line when it exceeds `BUSY_LOAD`, else None."""
    for line in machine:
        if line.startswith("at start: load average "):
            first = float(line.removeprefix("at start: load average ").split("/")[0])
            return first if first > BUSY_LOAD else None
    return None


def markdown(
    results: Sequence[tuple[Workload, Sequence[Row]]], command: str, machine: Sequence[str], quick: bool
) -> str:
    """The whole BENCHMARKS.md: how it was run, on what, then one table per workload and a summary."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    busy = busy_at_start(machine)
    lines = [
        "# Benchmarks",
        "",
        *(
            [
                f"> **The machine was busy when this run started (1-minute load average {busy:.2f}, above "
                f"{BUSY_LOAD:g}).** Other work shared the cores, so absolute figures are high and noisy; the "
                "ratios, measured side by side, hold better.",
                "",
            ]
            if busy is not None
            else []
        ),
        "mlua-swarm side by side with LangGraph, DBOS and Python's own floor. Every comparison ran both "
        "sides in the same invocation, on the same machine, each probe in a fresh interpreter; figures "
        "are the median of several repetitions after one warm-up, with the lowest sample in brackets "
        "(the machine is shared, so the minimum shows the cost without interference). Ratios and "
        "targets use the medians. *Peer / ours* above 1 means we are cheaper; *ours / floor* is how "
        "far we are above the bare Python primitive.",
        "",
        f"- Command: `{command}`{' (quick mode)' if quick else ''}; to reproduce, "
        "`pip install -e '.[bench]'` (or `make bench`), then the same command",
        f"- Generated: {stamp}; `python -m bench --quick` runs small sizes in under a minute, "
        "`python -m bench.profile` shows where our in-memory step spends its time",
        f"- Machine: {machine[0]}",
        *(f"- {line}" for line in machine[1:]),
        "",
    ]
    verdicts: list[tuple[str, Row]] = []
    for workload, rows in results:
        lines += [f"## {workload.title}", "", workload.method, ""]
        lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(_md(c) for c in row_cells(row)) + " |" for row in rows]
        lines += ["", *(f"- {_md(line)}" for line in notes(rows))]
        lines.append("")
        verdicts += [(workload.title, row) for row in rows if row.verdicts]
    lines += ["## Targets", "", "| Workload | Case | Target | Result |", "|---|---|---|---|"]
    for title, row in verdicts:
        target = "; ".join(text for text, _ in row.verdicts)
        case = f"{row.case} (vs {row.peer.label})" if row.peer else row.case
        lines.append(f"| {_md(title)} | {_md(case)} | {_md(target)} | {row.result} |")
    lines.append("")
    if LIMITS.exists():
        lines += ["", LIMITS.read_text().rstrip(), ""]
    return "\n".join(lines)
