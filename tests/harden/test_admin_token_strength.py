"""An admin token off loopback must resist guessing: `mse serve` refuses a short or uniform one,
naming where it came from; on loopback it still serves, with a warning line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlua_swarm.server.config import load_config
from tests.serverkit import spawn_mse_serve

STRONG = "Yq3v-7sKp_2mXw9bTn4r"


def refused(args: list[str], env: dict[str, str], place: str) -> str:
    """`mse serve ARGS` exits 2 before listening, with an `admin-token-weak` diagnostic naming `place`."""
    with pytest.raises(RuntimeError) as stopped:
        spawn_mse_serve(args, env=env)
    stderr = str(stopped.value)
    assert "exited with 2 before listening" in stderr, stderr
    assert "error[admin-token-weak]" in stderr and place in stderr
    assert 'python -c "import secrets; print(secrets.token_urlsafe(24))"' in stderr
    assert "Traceback" not in stderr
    return stderr


def test_a_guessable_admin_token_is_refused_off_loopback_wherever_it_came_from(tmp_path: Path) -> None:
    home = {"MSE_HOME": str(tmp_path)}
    flag = refused(["--bind", "0.0.0.0:0", "--admin-token", "hunter2"], home, "--admin-token:")
    assert "hunter2" not in flag
    refused(["--bind", "0.0.0.0:0"], {**home, "MSE_ADMIN_TOKEN": "a" * 40}, "MSE_ADMIN_TOKEN:")
    config = tmp_path / "serve.toml"
    config.write_text('bind = "0.0.0.0:0"\nadmin_token = "0123456789abcde"\n')
    refused(["--config", str(config)], home, f"{config}, admin_token:")

    assert load_config(tmp_path / "none.toml", {"bind": "0.0.0.0:7777", "admin_token": STRONG}).admin_token == STRONG


def test_a_short_admin_token_still_serves_on_loopback_with_a_warning(tmp_path: Path) -> None:
    served = spawn_mse_serve(["--bind", "127.0.0.1:0", "--admin-token", "s3cret"], env={"MSE_HOME": str(tmp_path)})
    try:
        with served.client() as client:
            assert client.post("/v1/blueprints/x", json={}).status_code == 401
        warning = "".join(served.stderr_lines)
        assert "warning: the admin token is guessable" in warning and "s3cret" not in warning
    finally:
        served.terminate()
