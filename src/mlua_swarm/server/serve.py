"""Run the app on uvicorn: bind the socket, open the state, serve until a signal, shut down cleanly.

On SIGINT/SIGTERM the runs still going are interrupted first (workers cancelled, children killed, rows
marked `interrupted`), which also ends their SSE streams and sync launches; then uvicorn drains the
connections and the lifespan closes the store.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn
from uvicorn.logging import DefaultFormatter

from .app import create_app
from .config import ServerConfig
from .protocol import head_deadline_protocol
from .state import ServerState

GRACEFUL_SECS = 10


class _Uvicorn(uvicorn.Server):
    """uvicorn, telling the state as soon as a signal arrives (before it waits for connections)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)

    def stop(self) -> None:
        """Stop from code (tests, an embedding program) exactly as a signal would."""
        self._on_exit()
        self.should_exit = True


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def build_server(
    config: ServerConfig, sock: socket.socket, *, log_level: str = "warning"
) -> tuple[_Uvicorn, ServerState]:
    """The uvicorn server for `config` listening on `sock`, and its state (opened, not started)."""
    state = await ServerState.open(config, base_url=url_of(sock))
    loop = asyncio.get_running_loop()
    app = create_app(state)
    uv_config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        http=head_deadline_protocol(config.request_head_timeout_secs),
        proxy_headers=bool(config.trusted_proxies),
        forwarded_allow_ips=list(config.trusted_proxies),
        timeout_graceful_shutdown=GRACEFUL_SECS,
        ws="websockets-sansio",
        ws_ping_interval=config.operator_ping_secs,
        ws_ping_timeout=max(config.operator_dead_after_secs - config.operator_ping_secs, 1.0),
    )

    def on_exit() -> None:
        loop.call_soon_threadsafe(state.begin_shutdown)

    server = _Uvicorn(uv_config, on_exit)
    return server, state


def log_to_stderr(level: str) -> None:
    """Print the package's own log records on stderr as uvicorn prints its (`ERROR:    message`), from
    `level` up: what `mse serve --log-level` means for the whole server, an internal error's reference
    and traceback included."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
    package = logging.getLogger(__name__.split(".", 1)[0])
    package.addHandler(handler)
    package.setLevel(level.upper())
    package.propagate = False


async def serve(config: ServerConfig, *, announce: bool = True, log_level: str = "warning") -> None:
    """`mse serve`: listen on the configured bind until SIGINT/SIGTERM."""
    sock = bind_socket(config.host, config.port)
    try:
        server, state = await build_server(config, sock, log_level=log_level)
        if announce:
            print(f"mse serve: listening on {state.base_url}", file=sys.stderr, flush=True)
        await server.serve(sockets=[sock])
    finally:
        sock.close()


__all__ = ["bind_socket", "build_server", "log_to_stderr", "serve", "url_of"]
