"""`MSE_HOME` naming something that is not a usable folder: every command that opens the store says
so with a diagnostic (exit 2), never a traceback or a misleading error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_mse

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

COMMANDS = [
    ["run", str(EXAMPLES / "pipeline.json")],
    ["runs", "list"],
    ["runs", "show", "R-0000000000000000"],
    ["serve", "--bind", "127.0.0.1:0"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_mse_home_that_is_a_file(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder\n")
    ran = run_mse(args, env={"MSE_HOME": str(home), "MSE_HTTP": ""})
    assert ran.returncode == 2, ran.stderr
    assert "Traceback" not in ran.stderr
    first = ran.stderr.splitlines()[0]
    assert first.startswith("error[store_unusable]") and str(home) in first, ran.stderr
    assert "MSE_HOME" in ran.stderr


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_store_path_under_a_file(tmp_path: Path, args: list[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n")
    store = blocker / "runs.sqlite3"
    ran = run_mse([*args, "--store", str(store)], env={"MSE_HOME": str(tmp_path / "home"), "MSE_HTTP": ""})
    assert ran.returncode == 2, ran.stderr
    assert "Traceback" not in ran.stderr
    first = ran.stderr.splitlines()[0]
    assert first.startswith("error[store_unusable]") and str(store) in first, ran.stderr
