"""`mse` entry point: one sub-command group per module, each adding itself through `register`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute sub-commands; each defines `register(subparsers)`.
COMMAND_MODULES: tuple[str, ...] = ("run", "bp", "runs", "serve", "server", "worker", "operator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mse", description="mlua-swarm: run declarative agent Blueprints.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"mlua_swarm.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
