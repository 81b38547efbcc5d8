"""`mse` imports only the module of the command it runs (issue #14: start-up of every command)."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import pytest

from mlua_swarm.cli.main import COMMAND_MODULES, SUMMARIES, build_parser, command_of

from ..conftest import mse_modules, run_mse

HEAVY = ("mlua_swarm.blueprint.compiler", "mlua_swarm.core.engine", "mlua_swarm.server", "rich.live", "lupa", "jinja2")


def modules_after(args: list[str], tmp_path: Path) -> set[str]:
    """The modules loaded once `mse ARGS` has run in a fresh interpreter."""
    return mse_modules(args, tmp_path)[1]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        [],
        ["runs", "list"],
        ["bp", "--help"],
        ["bp", "new", "--help"],
        ["run", "--help"],
        ["runs", "resume", "--help"],
    ],
)
def test_help_and_listing_load_neither_compiler_engine_server_nor_live_view(args: list[str], tmp_path: Path) -> None:
    loaded = modules_after(args, tmp_path)
    assert "mlua_swarm.cli.main" in loaded
    assert [m for m in HEAVY if m in loaded] == []


def test_a_command_loads_what_it_needs(tmp_path: Path) -> None:
    loaded = modules_after(["bp", "schema"], tmp_path)
    assert "mlua_swarm.cli.bp" in loaded and "mlua_swarm.cli.run" not in loaded


def test_each_summary_is_what_its_module_registers() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    registered = {choice.dest: choice.help for choice in sub._choices_actions}
    for name in COMMAND_MODULES:
        importlib.import_module(f"mlua_swarm.cli.{name}")
        if name in SUMMARIES:  # a command without one is imported by every `mse` call, which still works
            assert registered[name] == SUMMARIES[name]


def registered_help(name: str) -> str:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return str(next(c.help for c in sub._choices_actions if c.dest == name))


def test_help_lists_every_command_in_order() -> None:
    shown = run_mse(["--help"])
    assert shown.returncode == 0
    listed = [m.group(1) for line in shown.stdout.splitlines() if (m := re.match(r"^    (\S+)\s\s", line))]
    assert listed == list(COMMAND_MODULES)
    for name in COMMAND_MODULES:
        assert registered_help(name) in " ".join(shown.stdout.split())


def test_command_of_skips_options() -> None:
    assert command_of(["-h"]) is None
    assert command_of(["runs", "list"]) == "runs"
    assert command_of(["--help", "bp"]) == "bp"


def test_an_unknown_command_is_refused_with_the_choices() -> None:
    refused = run_mse(["nonsense"])
    assert refused.returncode == 2
    assert "invalid choice: 'nonsense'" in refused.stderr and "'runs'" in refused.stderr
