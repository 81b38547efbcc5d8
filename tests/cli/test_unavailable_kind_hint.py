"""`mse run` of operator agents outside a server: the hint says what to do, and does not contradict
the message by listing `operator` among the kinds that run here."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_mse

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_operator_agents_in_a_local_run_get_a_hint_that_points_at_a_server(tmp_path: Path) -> None:
    ran = run_mse(["run", str(EXAMPLES / "operators" / "review-loop.json")], env={"MSE_HOME": str(tmp_path)})
    assert ran.returncode == 2
    message, hint = ran.stderr.splitlines()[:2]
    assert message.startswith("error[kind-unavailable] agent 'survey': agent kind 'operator' needs an operator hub")
    assert (
        hint
        == "  hint: `mse bp lint` and `mse bp build` accept these agents; running them needs what the message names"
    )
