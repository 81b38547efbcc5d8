"""Present measured rows: a terminal table (rich) and the BENCHMARKS.md document."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from .document import Section, measured_section
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


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def workload_section(
    workload: Workload, rows: Sequence[Row], command: str, load_start: float, load_end: float
) -> Section:
    """One workload's part of BENCHMARKS.md: how both sides are measured, then the table."""
    lines = [workload.method, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_md(c) for c in row_cells(row)) + " |" for row in rows]
    lines += ["", *(f"- {_md(line)}" for line in notes(rows))]
    return measured_section(workload.name, workload.title, "\n".join(lines), command, load_start, load_end)
