"""`mse serve` refuses bad settings with a diagnostic that says where the problem is, and exits 2."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_mse


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another socket is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_port_in_use_names_the_bind_address(taken_port: int, tmp_path: Path) -> None:
    served = run_mse(["serve", "--bind", f"127.0.0.1:{taken_port}"], env={"MSE_HOME": str(tmp_path)})
    assert served.returncode == 2
    expected = f"error[bind-failed] 127.0.0.1:{taken_port}: cannot listen here: Address already in use"
    assert served.stderr.startswith(expected), served.stderr
    assert "hint: pick another --bind port" in served.stderr and "Traceback" not in served.stderr


def test_a_config_file_that_does_not_exist_is_refused(taken_port: int, tmp_path: Path) -> None:
    missing = tmp_path / "conf.toml"
    served = run_mse(
        ["serve", "--config", str(missing), "--bind", f"127.0.0.1:{taken_port}"], env={"MSE_HOME": str(tmp_path)}
    )
    assert served.returncode == 2
    assert served.stderr.startswith(f"error[file-not-found] {missing}: no such config file"), served.stderr
    assert "hint:" in served.stderr and "Traceback" not in served.stderr
