"""BENCHMARKS.md as a document of marked sections that any benchmark run can refresh in place.

Every measured section sits between `<!-- bench:NAME:start ... -->` and `<!-- bench:NAME:end -->`;
the start marker carries when it was measured and the load average at its start and end. Writing
replaces the sections a run measured, keeps every other section of the file as it was, and
regenerates what is not measured: the header (with a warning when a section was measured on a busy
machine), the summary of targets (collected from every section's tables) and the hand-written
analysis from `bench/limits.md`. So `python -m bench --only seq --write BENCHMARKS.md` refreshes one
table and loses nothing, and a full run rewrites every section.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .machine import commit, describe

LIMITS = Path(__file__).with_name("limits.md")
"""Hand-written analysis (what limits the targets we miss, changes measured before and after)."""

BUSY_LOAD = 1.5
"""A 1-minute load average above this when a section started is called out at the top of the file."""

ORDER = (
    "seq",
    "process",
    "startup",
    "plain_def",
    "durable",
    "fanout",
    "fanout_items",
    "big_input",
    "subprocess",
    "lua",
    "resume",
    "bytes",
    "middleware",
    "memory",
    "rss_flat",
    "server",
    "operators",
    "dashboard",
)
"""Where each known section goes in the file; sections of other names follow in the order found."""

_MARKER = re.compile(
    r"<!-- bench:(?P<name>[\w.-]+):start(?P<attrs>[^>]*?)-->\n?(?P<body>.*?)<!-- bench:(?P=name):end -->\n?", re.S
)
_ATTR = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True)
class Section:
    """One measured part of the file: its markdown (heading first) and when and under what load it ran."""

    name: str
    body: str
    measured: str = ""
    """UTC time of the measurement, `YYYY-MM-DDTHH:MMZ`."""
    load_start: float | None = None
    load_end: float | None = None

    @property
    def title(self) -> str:
        first = self.body.lstrip().splitlines()[0] if self.body.strip() else self.name
        return first.lstrip("#").strip()

    @property
    def busy(self) -> bool:
        return self.load_start is not None and self.load_start > BUSY_LOAD

    def render(self) -> str:
        attrs = [f"measured={self.measured}"] if self.measured else []
        attrs += [
            f"{k}={v:.2f}" for k, v in (("load_start", self.load_start), ("load_end", self.load_end)) if v is not None
        ]
        head = f"<!-- bench:{self.name}:start{''.join(' ' + a for a in attrs)} -->"
        return f"{head}\n{self.body.strip()}\n<!-- bench:{self.name}:end -->\n"


def command_line(prog: str, argv: Sequence[str]) -> str:
    """How a section was measured, as a command: `prog` and its arguments without `--write PATH`."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--write":
            skip = True
        elif not arg.startswith("--write="):
            kept.append(arg)
    return " ".join([prog, *(shlex.quote(a) for a in kept)])


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")


def provenance(command: str, commit: str, load_start: float, load_end: float) -> str:
    """The line under a section's heading: when, at what commit, by what command, under what load."""
    line = (
        f"_Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} at commit {commit} by `{command}`; "
        f"load average {load_start:.2f} at start, {load_end:.2f} at end._"
    )
    if load_start > BUSY_LOAD:
        line += (
            f"\n\n> **Busy machine: load average {load_start:.2f} when this section started (above {BUSY_LOAD:g}).** "
            "Absolute figures are high and noisy; ratios measured side by side hold better."
        )
    return line


def measured_section(name: str, title: str, body: str, command: str, load_start: float, load_end: float) -> Section:
    """A section as measured now: heading, provenance line, then `body`."""
    text = f"## {title}\n\n{provenance(command, commit(), load_start, load_end)}\n\n{body.strip()}"
    return Section(name, text, now_stamp(), load_start, load_end)


def parse(text: str) -> list[Section]:
    """The marked sections of a file, in file order (text outside markers is regenerated, not kept)."""
    sections = []
    for match in _MARKER.finditer(text):
        attrs = dict(_ATTR.findall(match["attrs"]))
        sections.append(
            Section(
                match["name"],
                match["body"],
                attrs.get("measured", ""),
                _float(attrs.get("load_start")),
                _float(attrs.get("load_end")),
            )
        )
    return sections


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def merge(old: Sequence[Section], new: Sequence[Section]) -> list[Section]:
    """The old sections with the new ones replacing those of the same name; known names in `ORDER`."""
    by_name = {s.name: s for s in old}
    by_name.update({s.name: s for s in new})
    known = [by_name[name] for name in ORDER if name in by_name]
    others = [s for s in by_name.values() if s.name not in ORDER]
    return known + others


@dataclass(frozen=True)
class Invocation:
    """The run writing the file: its command and the machine it ran on (for the header)."""

    command: str
    machine: Sequence[str]
    refreshed: Sequence[str] = field(default_factory=tuple)


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _cell(cells: list[str], header: list[str], name: str) -> str:
    at = header.index(name) if name in header else len(cells)
    return cells[at] if at < len(cells) else ""


def targets(sections: Sequence[Section]) -> list[tuple[str, str, str, str]]:
    """(section title, case, target, result) of every table row in the sections that has a target; what
    the row is judged against (the `Floor` column's label for a target on the floor, else the `Peer`
    column's) is named in its case when the case does not say what it is against."""
    found = []
    for section in sections:
        header: list[str] | None = None
        for line in section.body.splitlines():
            if not line.startswith("|"):
                header = None
                continue
            cells = _cells(line)
            if header is None:
                header = [c.lower() for c in cells]
                continue
            if all(set(c) <= set("-: ") for c in cells) or "target" not in header or "result" not in header:
                continue
            target, result = _cell(cells, header, "target"), _cell(cells, header, "result")
            against = _cell(cells, header, "floor" if "floor" in target else "peer")
            case = cells[0]
            label = against.split(":")[0].strip()
            if label and label != "-" and " vs " not in case:
                case += f" (vs {label})"
            if target and target != "-":
                found.append((section.title, case, target, result))
    return found


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def compose(sections: Sequence[Section], invocation: Invocation) -> str:
    """The whole file: header, every section, the summary of targets, then the hand-written analysis."""
    busy = [s for s in sections if s.busy]
    lines = ["# Benchmarks", ""]
    if busy:
        worst = max(s.load_start or 0.0 for s in busy)
        which = "every section" if len(busy) == len(sections) else ", ".join(s.title for s in busy)
        lines += [
            f"> **Warning: the machine was busy (1-minute load average up to {worst:.2f} at a section's start, "
            f"above {BUSY_LOAD:g}) when these were measured: {which}.** Their absolute figures are high and "
            "noisy; the ratios, measured side by side in one invocation, hold better.",
            "",
        ]
    lines += [
        "mlua-swarm side by side with LangGraph, DBOS, Prefect and Python's own floor. Every comparison ran both "
        "sides in the same invocation, on the same machine, each probe in a fresh interpreter; figures are the "
        "median of several repetitions after one warm-up, with the lowest sample in brackets (the machine is "
        "shared, so the minimum shows the cost without interference). Ratios and targets use the medians. "
        "*Peer / ours* above 1 means we are cheaper; *ours / floor* is how far we are above the floor beside "
        "it (the bare Python primitive, or the row's named reference). Rows say what they pair: whole `mse` "
        "processes as users run them, the run layer in one process, or the engine alone (*engine only*).",
        "",
        "- Regenerate: `make bench` (or `pip install -e '.[bench]'`, then `python -m bench --write BENCHMARKS.md`); "
        "`python -m bench --only NAME[,NAME] --write BENCHMARKS.md` refreshes those sections and keeps the rest; "
        "`python -m bench --quick` runs small sizes in a minute or two",
        f"- Last written by `{invocation.command}`"
        + (f" (refreshed: {', '.join(invocation.refreshed)})" if invocation.refreshed else ""),
        f"- Machine: {invocation.machine[0]}" if invocation.machine else "- Machine: unknown",
        *(f"- {line}" for line in invocation.machine[1:]),
        "- Each section says when, at which commit and under which load average (at its start and end) it was measured",
        "",
    ]
    for section in sections:
        lines.append(section.render())
    rows = targets(sections)
    if rows:
        lines += ["## Targets", "", "| Section | Case | Target | Result |", "|---|---|---|---|"]
        lines += [f"| {_md(t)} | {_md(c)} | {_md(g)} | {_md(r)} |" for t, c, g, r in rows]
        lines.append("")
    if LIMITS.exists():
        lines += [LIMITS.read_text().rstrip(), ""]
    return "\n".join(lines)


class UnmarkedFile(SystemExit):
    """A partial write to a file whose sections are not marked would drop them (ends the command with
    its message)."""


def names_in(path: Path) -> set[str]:
    """The names of the marked sections in `path` (none when it does not exist)."""
    return {s.name for s in parse(path.read_text())} if path.exists() else set()


def check_writable(path: Path, *, whole: bool) -> None:
    """Raise `UnmarkedFile` when a partial run (not `whole`) would replace a file it cannot merge into."""
    if not whole and path.exists() and path.read_text().strip() and not names_in(path):
        raise UnmarkedFile(
            f"{path} has no marked sections (written before they existed), so a partial run would drop its "
            "content: run the whole suite once (`make bench`), or write elsewhere"
        )


def write(path: Path, new: Sequence[Section], invocation: Invocation) -> None:
    """Put the `new` sections into `path`, keeping its other marked sections and regenerating the rest."""
    old = parse(path.read_text()) if path.exists() else []
    path.write_text(compose(merge(old, new), invocation))


def write_section(path: Path, section: Section, command: str) -> None:
    """What a component benchmark's `--write PATH` does: refresh its one section of `path`."""
    write(path, [section], Invocation(command, describe(), [section.name]))
