"""BENCHMARKS.md as marked sections: a partial run replaces its sections and keeps every other one.

Logic only, on synthetic files: no figure here is a timing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bench.workloads import select

from bench import document

ROOT = Path(__file__).resolve().parents[2]
INVOCATION = document.Invocation("python -m bench --only seq", ["CPU line", "Python line"], ["seq"])


def section(
    name: str, text: str, load: float = 0.5, target: str = "<= 30 us", result: str = "PASS"
) -> document.Section:
    body = f"## Title of {name}\n\n{text}\n\n| Case | ours | Target | Result |\n|---|---|---|---|\n"
    body += f"| {name} case | 1.0 | {target} | {result} |\n| untargeted | 2.0 | - | |"
    return document.Section(name, body, "2026-12-06T15:00Z", load, load + 0.1)


def test_a_rendered_section_parses_back_with_its_provenance() -> None:
    original = section("seq", "method text", load=2.25)
    [parsed] = document.parse("preamble\n" + original.render() + "trailer\n")
    assert (parsed.name, parsed.measured, parsed.load_start, parsed.load_end) == (
        "seq",
        "2026-12-06T15:00Z",
        2.25,
        2.35,
    )
    assert parsed.body.strip() == original.body.strip()
    assert parsed.title == "Title of seq"


def test_a_partial_write_replaces_its_section_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    old = [section("seq", "old seq figures"), section("server", "server figures"), section("custom", "kept as is")]
    path.write_text(document.compose(old, INVOCATION))

    document.write(path, [section("seq", "new seq figures", result="MISS")], INVOCATION)

    text = path.read_text()
    assert "new seq figures" in text and "old seq figures" not in text
    assert "server figures" in text and "kept as is" in text
    names = [s.name for s in document.parse(text)]
    assert names == ["seq", "server", "custom"], "known sections in file order, unknown ones after"
    summary = text.split("## Targets", 1)[1]
    assert "| Title of seq | seq case | <= 30 us | MISS |" in summary
    assert "| Title of server | server case | <= 30 us | PASS |" in summary
    assert "untargeted" not in summary
    assert text.count("## Targets") == 1 and text.startswith("# Benchmarks\n")


def test_the_summary_names_the_peer_a_row_is_judged_against() -> None:
    body = (
        "## Resume\n\n| Case | mlua-swarm | Peer | Target | Result |\n|---|---|---|---|---|\n"
        "| re-executed [steps] | 0 | LangGraph (sync): 0 | = 0 steps | PASS |\n"
        "| re-executed [steps] | 0 | DBOS: 0 | = 0 steps | PASS |\n"
        "| ours vs DBOS [ms] | 1 | DBOS: 5 | >= 2x | PASS |\n"
        "| alone [ms] | 1 | - | <= 2 ms | PASS |"
    )
    cases = [case for _, case, _, _ in document.targets([document.Section("resume", body)])]
    assert cases == [
        "re-executed [steps] (vs LangGraph (sync))",
        "re-executed [steps] (vs DBOS)",
        "ours vs DBOS [ms]",
        "alone [ms]",
    ]


def test_sections_are_ordered_by_the_file_order_whatever_order_they_were_measured_in(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    document.write(path, [section("dashboard", "d")], INVOCATION)
    document.write(path, [section("seq", "s")], INVOCATION)
    document.write(path, [section("durable", "x")], INVOCATION)
    assert [s.name for s in document.parse(path.read_text())] == ["seq", "durable", "dashboard"]


def test_the_hand_written_analysis_follows_the_sections(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    document.write(path, [section("seq", "s")], INVOCATION)
    text = path.read_text()
    first_line = document.LIMITS.read_text().splitlines()[0]
    assert first_line in text
    assert text.index(first_line) > text.index("<!-- bench:seq:end -->")


def test_a_busy_start_is_called_out_at_the_top() -> None:
    busy = document.compose([section("seq", "s", load=3.1), section("server", "v")], INVOCATION)
    top = busy.split("<!-- bench:", 1)[0]
    assert "Warning: the machine was busy (1-minute load average up to 3.10" in top
    assert "Title of seq" in top and "Title of server" not in top
    every = document.compose([section("seq", "s", load=3.1), section("server", "v", load=1.6)], INVOCATION)
    assert "up to 3.10 at a section's start, above 1.5) when these were measured: every section" in every
    calm = document.compose([section("seq", "s", load=1.2)], INVOCATION)
    assert "busy" not in calm.split("<!-- bench:", 1)[0]


def test_the_provenance_line_warns_inside_a_busy_section() -> None:
    assert "Busy machine" in document.provenance("python -m bench", "abc1234", 2.0, 1.0)
    calm = document.provenance("python -m bench", "abc1234", 0.4, 0.6)
    assert "Busy" not in calm and "load average 0.40 at start, 0.60 at end" in calm


def test_a_partial_run_refuses_a_file_without_markers(tmp_path: Path) -> None:
    legacy = tmp_path / "BENCHMARKS.md"
    legacy.write_text("# Benchmarks\n\n## 1. Old table\n\n| a |\n")
    with pytest.raises(document.UnmarkedFile):
        document.check_writable(legacy, whole=False)
    document.check_writable(legacy, whole=True)
    document.check_writable(tmp_path / "absent.md", whole=False)


def test_the_recorded_command_leaves_out_where_it_was_written() -> None:
    argv = ["--quick", "--write", "/tmp/x.md", "--only", "seq", "--write=/tmp/y.md"]
    assert document.command_line("python -m bench", argv) == "python -m bench --quick --only seq"


def test_selection_follows_the_file_order_and_honours_skip() -> None:
    assert select(["durable,seq"]) == ["seq", "durable"]
    everything = select([])
    assert everything[0] == "seq" and {"server", "operators", "dashboard", "rss_flat"} <= set(everything)
    assert "server" not in select([], ["server"])
    with pytest.raises(SystemExit):
        select(["nonsense"])


def test_python_m_bench_only_refreshes_one_section_in_place(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(
        document.compose([section("seq", "seq figures kept"), section("server", "server kept")], INVOCATION)
    )
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "middleware", "--write", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = path.read_text()
    assert [s.name for s in document.parse(text)] == ["seq", "middleware", "server"]
    assert "seq figures kept" in text and "server kept" in text
    assert "by `python -m bench --quick --only middleware`" in text
