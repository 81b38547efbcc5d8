"""A real `mse serve` for tests: uvicorn on 127.0.0.1 with a free port, in a thread or a child process.

Reuse from any test package:

    from tests.serverkit import LiveServer, start_server, spawn_mse_serve

    def test_x(live_server: LiveServer) -> None:        # the fixture (tests/server/conftest.py)
        r = live_server.client().get("/v1/healthz")

or re-export the fixture in your own conftest: `from tests.serverkit import live_server  # noqa: F401`.
`start_server(tmp_path, **config)` returns a started `LiveServer` (call `.stop()`); its `.state` is
the server's `ServerState` (touch it only through `.call(coro_fn)`, which runs on the server's loop).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from mlua_swarm.server.config import ServerConfig
from mlua_swarm.server.serve import bind_socket, build_server
from mlua_swarm.server.state import ServerState

T = TypeVar("T")
START_TIMEOUT = 30.0


@dataclass
class LiveServer:
    base_url: str
    state: ServerState
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    _stop: Callable[[], None]
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, *, token: str | None = None, timeout: float = 30.0) -> httpx.Client:
        """An httpx client on this server (closed by `stop`); `token` goes in `Authorization: Bearer`."""
        headers = {"authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self.clients.append(client)
        return client

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run `fn()` on the server's loop and return its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(_awaited(fn), self.loop)
        return future.result(timeout)

    def wait_run(self, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for a run this server drives to end; returns its record as `GET /v1/runs/{id}` shows it."""

        async def ended() -> None:
            live = self.state.runs.live.get(run_id)  # type: ignore[call-overload]
            if live is not None:
                await asyncio.wait([live.task])  # type: ignore[list-item]

        self.call(ended, timeout)
        with httpx.Client(base_url=self.base_url) as client:
            body: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
        return body

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop)
            self.thread.join(30)
        assert not self.thread.is_alive(), "the server thread did not stop"


async def _awaited(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


def server_config(tmp_path: Path, **overrides: Any) -> ServerConfig:
    """A loopback config on a free port with its own SQLite store under `tmp_path`."""
    values: dict[str, Any] = {"bind": "127.0.0.1:0", "store": f"sqlite:///{tmp_path / 'server.sqlite3'}"}
    values.update(overrides)
    return ServerConfig(**values)


def start_server(tmp_path: Path, **overrides: Any) -> LiveServer:
    """Start uvicorn in a thread with `server_config(tmp_path, **overrides)`; returns once it serves."""
    config = server_config(tmp_path, **overrides)
    ready: Future[LiveServer] = Future()

    def run() -> None:
        async def main() -> None:
            sock = bind_socket(config.host, config.port)
            try:
                uv, state = await build_server(config, sock)
                loop = asyncio.get_running_loop()
                serving = asyncio.create_task(uv.serve(sockets=[sock]))
                while not uv.started and not serving.done():
                    await asyncio.sleep(0.01)
                if serving.done():
                    serving.result()
                    raise RuntimeError("uvicorn stopped during startup")
                ready.set_result(LiveServer(state.base_url, state, loop, threading.current_thread(), uv.stop))
                await serving
            finally:
                sock.close()

        try:
            asyncio.run(main())
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    thread = threading.Thread(target=run, name="mse-serve-test", daemon=True)
    thread.start()
    return ready.result(START_TIMEOUT)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path)
    try:
        yield server
    finally:
        server.stop()


SRC = Path(__file__).resolve().parents[1] / "src"
LISTENING = re.compile(r"mse serve: listening on (\S+)")


@dataclass
class ServeProcess:
    """`mse serve` as a child process (for signals, SIGKILL and restarts)."""

    proc: subprocess.Popen[str]
    base_url: str
    stderr_lines: list[str]
    drain: threading.Thread | None = None

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def whole_log(self, timeout: float = 30.0) -> str:
        """Stop the server and return everything it wrote on stderr (read to the end of the pipe)."""
        self.terminate(timeout=timeout)
        if self.drain is not None:
            self.drain.join(timeout)
            assert not self.drain.is_alive(), "the server's stderr stayed open after it exited"
        return "".join(self.stderr_lines)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServeProcess]:
    """A real `mse serve` process on a free loopback port, with a home of its own; stopped after the test."""
    process = spawn_mse_serve(["--bind", "127.0.0.1:0"], env={"MSE_HOME": str(tmp_path / "home")})
    try:
        yield process
    finally:
        process.terminate()


def spawn_mse_serve(args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> ServeProcess:
    """Start `python -m mlua_swarm serve ARGS` and wait for its "listening on" line."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), full_env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlua_swarm", "serve", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=cwd,
        start_new_session=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        match = LISTENING.search(line)
        if match:
            drain = threading.Thread(target=_drain, args=(proc, lines), daemon=True)
            drain.start()
            return ServeProcess(proc, match.group(1), lines, drain)
    proc.wait(10)
    raise RuntimeError(f"mse serve exited with {proc.returncode} before listening:\n{''.join(lines)}")


def _drain(proc: subprocess.Popen[str], lines: list[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
