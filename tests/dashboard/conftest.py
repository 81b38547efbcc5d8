"""Dashboard tests: a real server (uvicorn on loopback) and Debian's Chromium driven by Playwright.

Chromium comes from the `chromium` package (`.ci/run` installs it); Playwright launches it by path and
never downloads a browser. Steps that must wait for the test block on a named pipe (`Gate`), so the
test decides when they finish without any sleep.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from tests.serverkit import LiveServer, start_server

CHROMIUM = os.environ.get("MSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
SCRATCH_IMG = Path(tempfile.gettempdir()) / "mse-dashboard-screenshots"
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)


def launch_chromium(playwright: Any) -> Browser:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)")
    browser: Browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    return browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API keeps an event loop running in this thread while it is open: it must be
    # closed before the asyncio tests of other modules run.
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = start_server(tmp_path)
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"script errors on the page: {errors}"


class Gate:
    """A named pipe a child step blocks on (`cat`) until the test opens it (`release`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)

    def release(self) -> None:
        with self.path.open("w") as fifo:
            fifo.write("go\n")


def gated_step(name: str, gate: Gate, output: str) -> dict[str, Any]:
    """A `subprocess` agent that waits for `gate`, then prints `output` (JSON) as its result."""
    script = f"cat {gate.path} > /dev/null; printf '%s' '{output}'"
    return {"name": name, "kind": "subprocess", "spec": {"program": "sh", "args": ["-c", script]}}


def echo_step(name: str, output: str) -> dict[str, Any]:
    return {"name": name, "kind": "subprocess", "spec": {"program": "sh", "args": ["-c", f"printf '%s' '{output}'"]}}


def step(ref: str, out: str, at: str = "$") -> dict[str, Any]:
    return {"kind": "step", "ref": ref, "in": {"op": "path", "at": at}, "out": {"op": "path", "at": out}}


def seq(*children: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "seq", "children": list(children)}


def launch(client: httpx.Client, blueprint: dict[str, Any], init: Any = None, **extra: Any) -> dict[str, Any]:
    """Launch an inline Blueprint over HTTP, detached; returns the 202 body."""
    body = {"blueprint": {"kind": "inline", "value": blueprint}, "init_ctx": init or {}, "detach": True, **extra}
    response = client.post("/v1/tasks", json=body)
    assert response.status_code == 202, response.text
    data: dict[str, Any] = response.json()
    return data


def register(client: httpx.Client, blueprint: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/v1/blueprints/{blueprint['id']}", json=blueprint)
    assert response.status_code in (200, 201), response.text
    data: dict[str, Any] = response.json()
    return data


def wait_status(client: httpx.Client, run_id: str, *statuses: str) -> dict[str, Any]:
    """Follow the run's SSE stream until its record shows one of `statuses`."""
    with client.stream("GET", f"/v1/runs/{run_id}/events", timeout=WAIT_MS / 1000) as stream:
        for _ in stream.iter_lines():
            record: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
            if record["status"] in statuses:
                return record
    record = client.get(f"/v1/runs/{run_id}").json()
    assert record["status"] in statuses, record
    return record


def shoot(page: Page, name: str) -> None:
    """Take a screenshot; `make screenshots` (MSE_DOCS_SCREENSHOTS=1) saves it as the docs' `docs/img/NAME.png`.

    An ordinary test run keeps the checkout clean and writes it to a scratch folder instead.
    """
    folder = DOCS_IMG if os.environ.get("MSE_DOCS_SCREENSHOTS") == "1" else SCRATCH_IMG
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))
