"""The dashboard's sign-in form (`/ui/login`) limits failed attempts per client address, against a
real server and a real HTTP client; the limiter's clock is replaced so a window passes without waiting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlua_swarm.server.auth import LoginThrottle
from tests.serverkit import LiveServer, start_server

TOKEN = "dashboard-token-for-tests"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[LiveServer, Clock]]:
    live = start_server(tmp_path, admin_token=TOKEN, trusted_proxies=("127.0.0.1",))
    clock = Clock()
    live.state.login_throttle.clock = clock
    try:
        yield live, clock
    finally:
        live.stop()


class SignIn:
    """A browser-like client of `/ui/login`: it keeps its cookies and sends the form's CSRF token."""

    def __init__(self, live: LiveServer, **headers: str) -> None:
        self.http = live.client()
        self.http.headers.update(headers)
        page = self.http.get("/ui/login")
        self.csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]

    def attempt(self, token: str) -> httpx.Response:
        form = {"token": token, "next": "/", "csrf": self.csrf}
        return self.http.post("/ui/login", data=form, follow_redirects=False)


def test_failed_sign_ins_are_limited_per_address_until_the_window_ends(guarded: tuple[LiveServer, Clock]) -> None:
    live, clock = guarded
    guesser = SignIn(live)
    assert [guesser.attempt(f"guess-{n}").status_code for n in range(5)] == [401] * 5
    blocked = guesser.attempt("guess-5")
    assert blocked.status_code == 429 and blocked.headers["retry-after"] == "60"
    assert "try again in 60 s" in blocked.text
    # While refused, even the right token is not tried (and no sign-in cookie is set).
    right = guesser.attempt(TOKEN)
    assert right.status_code == 429 and "mse_admin" not in right.cookies

    # The limit is per address: another client (behind the loopback proxy this server trusts) may try.
    other = SignIn(live, **{"x-forwarded-for": "203.0.113.7"})
    assert other.attempt("guess").status_code == 401

    clock.now += 59.5
    assert guesser.attempt(TOKEN).headers["retry-after"] == "1"
    clock.now += 0.5
    signed = guesser.attempt(TOKEN)
    assert signed.status_code == 303 and signed.cookies["mse_admin"] == TOKEN


def test_a_successful_sign_in_resets_the_count(guarded: tuple[LiveServer, Clock]) -> None:
    live, _ = guarded
    person = SignIn(live)
    assert [person.attempt("typo").status_code for _ in range(4)] == [401] * 4
    assert person.attempt(TOKEN).status_code == 303
    assert [person.attempt("typo").status_code for _ in range(5)] == [401] * 5
    assert person.attempt("typo").status_code == 429


def test_the_table_of_failing_addresses_is_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(failures=2, window_secs=60, clients=3, clock=clock)
    throttle.failed("a")
    throttle.failed("a")
    assert throttle.retry_after("a") == 60
    for address in ("b", "c"):
        throttle.failed(address)
    assert throttle.retry_after("a") == 60
    throttle.failed("d")  # a fourth address: the one whose last failure is oldest ("a") is dropped
    assert throttle.retry_after("a") == 0
    throttle.failed("b")
    assert throttle.retry_after("b") == 60
