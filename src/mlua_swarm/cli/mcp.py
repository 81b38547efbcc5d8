"""`mse mcp`: serve the engine's MCP tools to an AI assistant (stdio by default; see docs/mcp.md)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

from ..diagnostics import Diagnostic, Location
from .common import EXIT_INVALID, EXIT_OK, freeze_heap, report_diagnostics

if TYPE_CHECKING:
    from mcp.server.transport_security import TransportSecuritySettings

MCP_PATH = "/mcp"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "mcp",
        help="serve mse as MCP tools for AI assistants (stdio or HTTP)",
        description="Serve mse as an MCP server. Runs by id and operator tools talk to mse serve at MSE_HTTP.",
    )
    p.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio", help="default: stdio")
    p.add_argument("--host", default="127.0.0.1", help="streamable-http: address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7788, help="streamable-http: port, 0 picks a free one (default 7788)")
    p.add_argument("--server", metavar="URL", help="mse serve base URL (default: $MSE_HTTP or http://127.0.0.1:7777)")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    if args.server:
        os.environ["MSE_HTTP"] = args.server
    from ..mcp.server import build_server

    server = build_server()
    freeze_heap()
    if args.transport == "stdio":
        server.run("stdio")
        return EXIT_OK
    import anyio
    import uvicorn

    from ..server.config import is_loopback

    if not is_loopback(args.host):
        return _refuse(
            "loopback-only",
            f"refusing to serve MCP on {args.host}: it has no authentication, and its tools run programs",
            "listen on 127.0.0.1 (the default); reach it from elsewhere through an SSH tunnel",
        )
    try:
        listener = socket.create_server((args.host, args.port))
    except OSError as exc:
        return _refuse(
            "bind-failed", f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", "pick another --port"
        )
    host, port = listener.getsockname()[:2]
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, transport_security=_rebinding_guard(args.host))
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    print(f"mse mcp: listening on http://{host}:{port}{MCP_PATH}", file=sys.stderr, flush=True)
    anyio.run(lambda: uvicorn.Server(config).serve(sockets=[listener]))
    return EXIT_OK


def _rebinding_guard(host: str) -> TransportSecuritySettings:
    """Requests must name a loopback host (or `host` itself): a web page whose DNS name was re-pointed
    at this address is refused, whichever loopback address `--host` names."""
    from mcp.server.transport_security import TransportSecuritySettings

    names = ["127.0.0.1", "localhost", "[::1]", f"[{host}]" if ":" in host else host]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:*" for name in names],
        allowed_origins=[f"http://{name}:*" for name in names],
    )


def _refuse(code: str, message: str, hint: str) -> int:
    where = Location("command line")
    report_diagnostics([Diagnostic(code, message, location=where, hint=hint, stage="mcp")], as_json=False)
    return EXIT_INVALID


__all__ = ["main", "register"]
