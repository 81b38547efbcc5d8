"""Live progress on stderr: a rich live view on a terminal, plain lines elsewhere.

The live view shows steps running (fanout lanes of one agent counted together), the latest
finished steps with their times, and totals. Step events only update counters; the view is drawn
from them by rich's refresh thread a few times a second, so a step costs the same whether it
takes a microsecond or a minute. A frame is a dozen lines of styled text handed to rich as
ready-made segments: rich's table layout cost tens of milliseconds of the loop's GIL per frame,
a frame now costs a few hundred microseconds. Plain mode prints one line per finished step for the
first few hundred steps, then a periodic summary, so a 10,000-step run stays readable.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from types import TracebackType
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.segment import Segment
from rich.style import Style

from ..ids import StepId
from ..jsontext import compact
from ..termtext import terminal_text

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


def _shown(detail: Any) -> str:
    """A step's error or value as a line shows it: text as is, anything else as compact JSON."""
    if isinstance(detail, str):
        return detail
    try:
        return compact(detail)
    except (TypeError, ValueError):
        return str(detail)


class TerminalProgress:
    """A `RunObserver` that draws progress on stderr; use as a context manager around the run."""

    def __init__(self, title: str, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.title = terminal_text(title)
        self.totals: defaultdict[str, int] = defaultdict(int)
        self.recent: deque[tuple[str, str, float]] = deque(maxlen=8)
        self.started = time.monotonic()
        self._began: defaultdict[str, int] = defaultdict(int)
        """Steps started per step ref (only on a terminal: plain lines never show running steps)."""
        self._ended: defaultdict[str, int] = defaultdict(int)
        """Started steps ended per step ref (a replayed step neither starts nor counts here)."""
        self._live: Live | None = None
        self._drawn = self.console.is_terminal
        self._lines = 0
        self._last_summary = self.started

    @property
    def running(self) -> dict[str, int]:
        """Steps running now per step ref (fanout lanes of one step counted together)."""
        ended = dict(self._ended)  # copied first: every end counted here has its start in `began`
        began = dict(self._began)
        return {ref: n - ended.get(ref, 0) for ref, n in began.items() if n > ended.get(ref, 0)}

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

    def step_started(self, step_ref: str, step_id: StepId | None, node_index: int | None) -> None:
        if self._drawn:
            self._began[step_ref] += 1

    def step_finished(self, step_ref: str, step_id: StepId | None, status: str, elapsed: float, detail: Any) -> None:
        self.totals[status] += 1
        if self._drawn:
            if status != "replayed":
                self._ended[step_ref] += 1
            self.recent.append((step_ref, status, elapsed))
        else:
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
            line += f" — {_shown(detail)[:200]}"
        self._write(line)

    def _write(self, line: str) -> None:
        """One plain line, written without rich (its rendering costs more than the step it reports)."""
        self.console.file.write(terminal_text(line) + "\n")

    def _render(self) -> _Frame:
        """The live view, drawn on rich's refresh thread from copies of the counters."""
        running_now = sorted(self.running.items())
        recent = [(terminal_text(ref), status, elapsed) for ref, status, elapsed in self.recent]
        lines: list[list[tuple[str, Style | None]]] = [[(f"{self.title}  ", _BOLD), (self.summary(), _DIM)]]
        refs = [terminal_text(f"{ref} x{count}" if count > 1 else ref) for ref, count in running_now]
        width = max(map(len, refs), default=0)
        lines.extend([("⠿", _BLUE), (_GAP, None), (ref.ljust(width), _BLUE), (_GAP + "running", None)] for ref in refs)
        width = max((len(ref) for ref, _, _ in recent), default=0)
        status_width = max((len(status) for _, status, _ in recent), default=0)
        for ref, status, elapsed in recent:
            style = _STATUS_STYLE.get(status)
            lines.append(
                [
                    (MARK.get(status, "·"), style),
                    (_GAP + ref.ljust(width) + _GAP, None),
                    (status.ljust(status_width), style),
                    (f"{_GAP}{elapsed * 1000:.1f}ms", _DIM),
                ]
            )
        return _Frame(lines)


_GAP = "  "
_BOLD = Style(bold=True)
_DIM = Style(dim=True)
_BLUE = Style(color="blue")
_STATUS_STYLE = {status: Style.parse(style) for status, style in STYLE.items()}


class _Frame:
    """One frame of the live view: lines of (text, style) pieces, given to rich as segments as they are
    (rich crops them to the terminal's width)."""

    __slots__ = ("lines",)

    def __init__(self, lines: list[list[tuple[str, Style | None]]]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        newline = Segment.line()
        for index, line in enumerate(self.lines):
            if index:
                yield newline
            for text, style in line:
                yield Segment(text, style)


__all__ = ["TerminalProgress"]
