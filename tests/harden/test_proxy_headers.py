"""`mse serve` believes `X-Forwarded-For` only from the proxies it is told to trust: otherwise any
local process could spread its `/ui/login` guesses over made-up addresses and never be throttled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_mse
from tests.serverkit import ServeProcess, spawn_mse_serve

TOKEN = "proxy-test-admin-token"


def serve(tmp_path: Path, *flags: str) -> Iterator[ServeProcess]:
    process = spawn_mse_serve(
        ["--bind", "127.0.0.1:0", "--admin-token", TOKEN, *flags], env={"MSE_HOME": str(tmp_path / "home")}
    )
    try:
        yield process
    finally:
        process.terminate()


@pytest.fixture
def direct(tmp_path: Path) -> Iterator[ServeProcess]:
    yield from serve(tmp_path)


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[ServeProcess]:
    yield from serve(tmp_path, "--trusted-proxy", "127.0.0.1")


def guess(server: ServeProcess, forwarded_for: str | None) -> int:
    """One wrong sign-in through the form, as a browser sends it; its status."""
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
    with server.client(headers=headers) as http:
        page = http.get("/ui/login")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        answer = http.post("/ui/login", data={"token": "wrong", "next": "/", "csrf": csrf})
    return answer.status_code


def test_forwarded_addresses_are_ignored_by_default(direct: ServeProcess) -> None:
    made_up = [f"198.51.100.{n}" for n in range(6)]
    assert [guess(direct, address) for address in made_up] == [401] * 5 + [429]
    # The addresses were never believed: the throttle holds the peer, 127.0.0.1, whatever it claims.
    assert guess(direct, None) == 429
    with direct.client(headers={"x-forwarded-proto": "https"}) as http:
        assert "secure" not in http.get("/ui/login").headers["set-cookie"].lower()


def test_a_trusted_proxy_names_the_client_the_throttle_counts(proxied: ServeProcess) -> None:
    assert [guess(proxied, "203.0.113.7") for _ in range(5)] == [401] * 5
    assert guess(proxied, "203.0.113.7") == 429
    # A client that writes its own X-Forwarded-For gets the proxy's entry for it appended; the
    # address counted is the last one the trusted proxy did not add, so the prefix changes nothing.
    assert guess(proxied, "192.0.2.1, 203.0.113.7") == 429
    assert guess(proxied, "203.0.113.8") == 401
    assert guess(proxied, None) == 401  # the proxy itself, signing in for no one else
    # An IPv6 client counts as its /64: hopping addresses inside it buys no fresh attempts.
    assert [guess(proxied, f"2001:db8:1:2::{n}") for n in range(1, 7)] == [401] * 5 + [429]
    assert guess(proxied, "2001:db8:1:2:ffff:ffff:ffff:ffff") == 429
    assert guess(proxied, "2001:db8:1:3::1") == 401
    with proxied.client(headers={"x-forwarded-proto": "https"}) as http:
        assert "secure" in http.get("/ui/login").headers["set-cookie"].lower()


def test_a_trusted_proxy_must_be_an_address_or_a_network(tmp_path: Path) -> None:
    env = {"MSE_HOME": str(tmp_path / "home")}
    refused = run_mse(["serve", "--bind", "127.0.0.1:0", "--trusted-proxy", "proxy.example"], env=env)
    assert refused.returncode == 2, refused.stderr
    assert "invalid-config" in refused.stderr and "proxy.example" in refused.stderr
    assert "Traceback" not in refused.stderr
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "config.toml").write_text('trusted_proxies = "10.0.0.0/8"\n')
    refused = run_mse(["serve", "--bind", "127.0.0.1:0"], env=env)
    assert refused.returncode == 2 and "trusted_proxies must be a list" in refused.stderr
