"""Live progress on stderr: a rich live view on a terminal, plain lines elsewhere.

The live view shows steps running (fanout lanes of one agent counted together), the latest
finished steps with their times, and totals. Step events only update counters; the view is drawn
from them by rich's refresh thread a few times a second, so a step costs the same whether it
takes a microsecond or a minute. Plain mode prints one line per finished step for the first few
hundred steps, then a periodic summary, so a 10,000-step run stays readable.
"""

from __future__ import annotations

import time
from collections import deque
from types import TracebackType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..ids import StepId

STYLE = {
    "passed": "green",
    "replayed": "cyan",
    "skipped": "yellow",
    "blocked": "red",
    "failed": "bold red",
    "cancelled": "magenta",
    "timeout": "red",
}
MARK = {
    "passed": "✓",
    "replayed": "↺",
    "skipped": "→",
    "blocked": "✗",
    "failed": "✗",
    "cancelled": "⊘",
    "timeout": "⌛",
}
NOTABLE = frozenset({"failed", "blocked", "timeout", "cancelled"})
"""Statuses printed as plain lines however many steps came before."""
PLAIN_STEP_LINES = 200
PLAIN_SUMMARY_EVERY_SECS = 2.0
REFRESH_PER_SECOND = 8


class TerminalProgress:
    """A `RunObserver` that draws progress on stderr; use as a context manager around the run."""

    def __init__(self, title: str, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.title = title
        self.running: dict[str, int] = {}
        """Steps running now per step ref (only on a terminal: plain lines never show them)."""
        self.totals: dict[str, int] = {}
        self.recent: deque[tuple[str, str, float]] = deque(maxlen=8)
        self.started = time.monotonic()
        self._live: Live | None = None
        self._drawn = self.console.is_terminal
        self._lines = 0
        self._last_summary = self.started

    def __enter__(self) -> TerminalProgress:
        if self.console.is_terminal:
            self._live = Live(console=self.console, get_renderable=self._render, refresh_per_second=REFRESH_PER_SECOND)
            self._live.__enter__()
        else:
            self.console.print(f"▶ {self.title}", highlight=False)
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(t, e, tb)
            self._live = None

    def step_started(self, step_ref: str, step_id: StepId | None) -> None:
        if self._drawn:
            running = self.running
            running[step_ref] = running.get(step_ref, 0) + 1

    def step_finished(self, step_ref: str, step_id: StepId | None, status: str, elapsed: float, detail: Any) -> None:
        totals = self.totals
        totals[status] = totals.get(status, 0) + 1
        if self._drawn:
            if status != "replayed":
                running = self.running
                left = running.get(step_ref, 0) - 1
                if left > 0:
                    running[step_ref] = left
                else:
                    running.pop(step_ref, None)
            self.recent.append((step_ref, status, elapsed))
        if self._live is None:
            self._lines += 1
            if self._lines <= PLAIN_STEP_LINES or status in NOTABLE:
                self._step_line(step_ref, status, elapsed, detail)
            elif (now := time.monotonic()) - self._last_summary >= PLAIN_SUMMARY_EVERY_SECS:
                self._last_summary = now
                self._write(f"  … {self.summary()}")

    def summary(self) -> str:
        parts = [f"{n} {status}" for status, n in sorted(dict(self.totals).items())]
        return f"{', '.join(parts) or 'no steps'} in {time.monotonic() - self.started:.2f}s"

    def _step_line(self, step_ref: str, status: str, elapsed: float, detail: Any) -> None:
        line = f"  {MARK.get(status, '·')} {step_ref} {status} {elapsed * 1000:.1f}ms"
        if status in NOTABLE and detail is not None:
            line += f" — {str(detail)[:200]}"
        self._write(line)

    def _write(self, line: str) -> None:
        """One plain line, written as is (rich's rendering costs more than the step it reports)."""
        self.console.file.write(line + "\n")

    def _render(self) -> Group:
        """The live view, drawn on rich's refresh thread from copies of the counters."""
        running_now, recent = dict(self.running), list(self.recent)
        header = Text(f"{self.title}  ", style="bold")
        header.append(self.summary(), style="dim")
        running = Table.grid(padding=(0, 2))
        for ref, count in sorted(running_now.items()):
            lanes = f" x{count}" if count > 1 else ""
            running.add_row(Text("⠿", style="blue"), Text(f"{ref}{lanes}", style="blue"), Text("running"))
        done = Table.grid(padding=(0, 2))
        for ref, status, elapsed in recent:
            style = STYLE.get(status, "")
            done.add_row(
                Text(MARK.get(status, "·"), style=style),
                Text(ref),
                Text(status, style=style),
                Text(f"{elapsed * 1000:.1f}ms", style="dim"),
            )
        return Group(header, running, done)


__all__ = ["TerminalProgress"]
