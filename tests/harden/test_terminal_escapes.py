"""Names from a Blueprint reach the terminal with their control characters shown as escapes: an
escape sequence in an id or an agent name cannot retitle the window, clear the screen or recolour
what follows."""

from __future__ import annotations

import json
from pathlib import Path

from mlua_swarm.termtext import terminal_text

from ..conftest import json_of, run_mse

TITLE_AND_COLOUR = "evil\x1b]0;pwned\x07\x1b[31m"
CLEAR_SCREEN = "a\x1b[2J\x9b"


def test_terminal_text_escapes_control_characters_and_keeps_tabs_newlines_and_text() -> None:
    assert terminal_text("é\tx\ny") == "é\tx\ny"
    assert terminal_text(CLEAR_SCREEN) == "a\\x1b[2J\\x9b"
    assert terminal_text("\x00\x7f") == "\\x00\\x7f"


def test_mse_run_and_mse_runs_show_escapes_in_blueprint_names(tmp_path: Path) -> None:
    step = {"kind": "step", "ref": CLEAR_SCREEN, "in": {"op": "lit", "value": 1}, "out": {"op": "path", "at": "$.r"}}
    agent = {"name": CLEAR_SCREEN, "kind": "rust_fn", "spec": {"fn_id": "identity"}}
    path = tmp_path / "evil.json"
    path.write_text(json.dumps({"id": TITLE_AND_COLOUR, "flow": step, "agents": [agent]}))
    env = {"MSE_HOME": str(tmp_path / "home")}

    ran = run_mse(["run", str(path), "--json"], env=env)
    assert ran.returncode == 0, ran.stderr
    assert "\x1b" not in ran.stderr and "\x07" not in ran.stderr and "\x9b" not in ran.stderr
    assert "evil\\x1b]0;pwned\\x07\\x1b[31m" in ran.stderr and "a\\x1b[2J\\x9b passed" in ran.stderr
    run_id = json_of(ran)["run_id"]

    shown = run_mse(["runs", "show", run_id], env=env)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "evil\\x1b]0;pwned" in shown.stdout
