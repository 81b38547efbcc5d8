"""`mse server …`: the service definitions it writes, and stop/restart refusing while the server has work.

systemd and launchd do not run in this container: the unit file is checked by `systemd-analyze
verify`, the plist by `plistlib`, and the service manager is a stand-in `systemctl` on PATH that
records the command it was given, so the tests see exactly what `mse server` asks of it.
"""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlua_swarm.cli.server import ServiceSpec, launchd_plist, systemd_unit
from tests.conftest import run_mse
from tests.server.blueprints import child, inline
from tests.serverkit import LiveServer, start_server

SPEC = ServiceSpec(sys.executable, "127.0.0.1:7777", "/srv/mse home", None, "t0k en")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_unit_is_valid_and_restarts_on_failure(tmp_path: Path) -> None:
    unit = systemd_unit(SPEC)
    path = tmp_path / "mse.service"
    path.write_text(unit)
    checked = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0 and str(path) not in checked.stderr, checked.stderr
    assert f"ExecStart={sys.executable} -m mlua_swarm serve --bind 127.0.0.1:7777" in unit
    assert "Restart=on-failure" in unit and "WantedBy=default.target" in unit
    assert "Environment='MSE_HOME=/srv/mse home'" in unit and "Environment='MSE_ADMIN_TOKEN=t0k en'" in unit
    assert "StandardError=append:/srv/mse home/logs/server.log" in unit


def test_launchd_plist_parses_and_keeps_the_server_alive() -> None:
    plist = plistlib.loads(launchd_plist(SPEC).encode())
    assert plist["Label"] == "dev.mlua-swarm.serve"
    assert plist["ProgramArguments"] == [sys.executable, "-m", "mlua_swarm", "serve", "--bind", "127.0.0.1:7777"]
    assert plist["KeepAlive"] == {"SuccessfulExit": False} and plist["RunAtLoad"] is True
    assert plist["EnvironmentVariables"]["MSE_HOME"] == "/srv/mse home"
    assert plist["StandardOutPath"] == plist["StandardErrorPath"] == "/srv/mse home/logs/server.log"


def _fake_systemctl(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A PATH whose `systemctl` records its arguments (one line per call) and succeeds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "systemctl.calls"
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    fake.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "MSE_HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "MSE_ADMIN_TOKEN": "",
        "MSE_HTTP": "",
    }
    return env, calls


def _calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.skipif(sys.platform == "darwin", reason="the systemd path")
def test_install_writes_the_unit_and_enables_it(tmp_path: Path) -> None:
    env, calls = _fake_systemctl(tmp_path)
    ran = run_mse(["server", "install", "--bind", "127.0.0.1:7790"], env=env)
    assert ran.returncode == 0, ran.stderr
    unit = (tmp_path / "config" / "systemd" / "user" / "mse.service").read_text()
    assert "--bind 127.0.0.1:7790" in unit and f"MSE_HOME={tmp_path / 'home'}" in unit
    assert _calls(calls) == ["--user daemon-reload", "--user enable --now mse.service"]
    state = json.loads((tmp_path / "home" / "service.json").read_text())
    assert state["bind"] == "127.0.0.1:7790"
    public = run_mse(["server", "install", "--bind", "0.0.0.0:7790", "--no-start"], env=env)
    assert public.returncode == 2 and "admin-token-required" in public.stderr


@pytest.mark.skipif(sys.platform == "darwin", reason="the systemd path")
def test_stop_and_restart_refuse_while_a_run_is_running_unless_forced(tmp_path: Path) -> None:
    server: LiveServer = start_server(tmp_path)
    env, calls = _fake_systemctl(tmp_path)
    try:
        bind = server.base_url.removeprefix("http://")
        assert run_mse(["server", "install", "--bind", bind, "--no-start"], env=env).returncode == 0
        idle = run_mse(["server", "restart"], env=env)
        assert idle.returncode == 0, idle.stderr
        assert _calls(calls) == ["--user restart mse.service"]

        script = tmp_path / "hold.py"
        script.write_text(textwrap.dedent("import sys, time\nsys.stdin.read()\ntime.sleep(600)\n"))
        c = server.client()
        launched = c.post(
            "/v1/tasks", json={"blueprint": inline(child("hold", script)), "init_ctx": {"topic": "x"}, "detach": True}
        )
        run_id = launched.json()["run_id"]
        for action in ("stop", "restart"):
            refused = run_mse(["server", action], env=env)
            assert refused.returncode == 1 and "refused" in refused.stderr and "1 running run" in refused.stderr
        assert run_mse(["server", "uninstall"], env=env).returncode == 1
        assert _calls(calls) == ["--user restart mse.service"]

        forced = run_mse(["server", "stop", "--force"], env=env)
        assert forced.returncode == 0, forced.stderr
        assert _calls(calls)[-1] == "--user stop mse.service"
        status = run_mse(["server", "status"], env=env)
        assert status.returncode == 0 and "1 running run(s)" in status.stdout
        assert c.post(f"/v1/runs/{run_id}/cancel").status_code == 204
        assert server.wait_run(run_id)["status"] == "cancelled"
    finally:
        server.stop()
    down = run_mse(["server", "status"], env=env)
    assert down.returncode == 1 and "not answering" in down.stdout


def test_commands_before_install_and_logs(tmp_path: Path) -> None:
    env, _ = _fake_systemctl(tmp_path)
    missing = run_mse(["server", "stop"], env=env)
    assert missing.returncode == 2 and "not-installed" in missing.stderr and "Traceback" not in missing.stderr
    assert run_mse(["server", "install", "--no-start"], env=env).returncode == 0
    no_log = run_mse(["server", "logs"], env=env)
    assert no_log.returncode == 2 and "no-logs" in no_log.stderr
    log = tmp_path / "home" / "logs" / "server.log"
    log.write_text("".join(f"line {n}\n" for n in range(500)))
    tail = run_mse(["server", "logs", "-n", "3"], env=env)
    assert tail.returncode == 0 and tail.stdout.splitlines() == ["line 497", "line 498", "line 499"]
