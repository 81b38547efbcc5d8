"""`mse --help` as a new user reads it."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlua_swarm.cli.main import build_parser
from tests.conftest import run_mse


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices)


def test_the_bp_summary_names_every_bp_command() -> None:
    top = run_mse(["--help"])
    assert top.returncode == 0
    summary = next(line for line in top.stdout.splitlines() if line.strip().startswith("bp "))
    bp_commands = list(_commands(_commands(build_parser())["bp"]))
    assert bp_commands == ["lint", "schema", "build", "new"]
    for name in bp_commands:
        assert name in summary, summary


def test_an_unknown_flag_is_refused_by_the_command_it_was_given_to(tmp_path: Path) -> None:
    env = {"MSE_HOME": str(tmp_path)}
    for words, command in (
        (["serve", "--port", "1"], "mse serve"),
        (["runs", "list", "--bogus"], "mse runs list"),
        (["--nope"], "mse"),
    ):
        refused = run_mse(words, env=env)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith(f"usage: {command} ["), refused.stderr
        unknown = " ".join(w for w in words if w.startswith("-") or w == "1")
        assert f"{command}: error: unrecognized arguments: {unknown}" in refused.stderr
