"""`mse serve`: the long-lived engine behind the HTTP API (settings: flags > $MSE_HOME/config.toml)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ..diagnostics import Diagnostic, DiagnosticError, Location
from .common import EXIT_INVALID, EXIT_OK, fn_options, freeze_heap, report_diagnostics


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="serve the HTTP API (default 127.0.0.1:7777)")
    p.add_argument("--bind", help="HOST:PORT to listen on (port 0 picks a free one)")
    p.add_argument("--store", help="store URL (default: SQLite at $MSE_HOME/mse.sqlite3)")
    p.add_argument("--admin-token", help="required on mutating routes; mandatory off loopback (or MSE_ADMIN_TOKEN)")
    p.add_argument("--config", type=Path, help="config file (default: $MSE_HOME/config.toml)")
    p.add_argument("--fn", action="append", default=[], metavar="ID=MODULE:ATTR", help="register a rust_fn id")
    p.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDR",
        help="a reverse proxy (IP or network) whose X-Forwarded-For/-Proto are believed (repeatable; default: none)",
    )
    p.add_argument("--durability", choices=["sync", "batch", "exit"], help="how runs are committed")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from ..server.config import MIN_ADMIN_TOKEN_CHARS, TOKEN_RECIPE, load_config, weak_admin_token
    from ..server.serve import log_to_stderr, serve

    if args.config is not None and not args.config.is_file():
        missing = Diagnostic(
            "file-not-found",
            "no such config file",
            location=Location(file=str(args.config)),
            hint="check the --config path, or leave it out to use $MSE_HOME/config.toml (optional)",
            stage="config",
        )
        report_diagnostics([missing], as_json=False)
        return EXIT_INVALID
    try:
        overrides = {
            "bind": args.bind,
            "store": args.store,
            "admin_token": args.admin_token,
            "durability": args.durability,
            "fns": fn_options(args.fn) or None,
            "trusted_proxies": tuple(args.trusted_proxy) or None,
        }
        config = load_config(args.config, overrides)
    except DiagnosticError as exc:
        report_diagnostics(exc.diagnostics, as_json=False)
        return EXIT_INVALID
    if config.admin_token and weak_admin_token(config.admin_token):
        print(
            f"mse serve: warning: the admin token is guessable (under {MIN_ADMIN_TOKEN_CHARS} characters, or all"
            f" the same); accepted on loopback, refused off it ({TOKEN_RECIPE})",
            file=sys.stderr,
        )
    from ..store import StoreError

    log_to_stderr(args.log_level)
    freeze_heap()
    try:
        asyncio.run(serve(config, log_level=args.log_level))
    except KeyboardInterrupt:
        pass
    except StoreError as exc:
        unusable = Diagnostic(exc.code, exc.message, location=Location("store"), hint=exc.hint or None, stage="store")
        report_diagnostics([unusable], as_json=False)
        return EXIT_INVALID
    except OSError as exc:
        report_diagnostics(
            [
                Diagnostic(
                    "bind-failed",
                    f"cannot listen here: {exc.strerror or exc}",
                    location=Location(config.bind),
                    hint="pick another --bind port",
                    stage="serve",
                )
            ],
            as_json=False,
        )
        return EXIT_INVALID
    return EXIT_OK
