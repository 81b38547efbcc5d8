"""`mse` entry point: one sub-command group per module, each adding itself through `register`.

Only the module of the command being run is imported: `cli/<name>.py` registers the command
`<name>`, and `mse --help` lists the others from `SUMMARIES` without importing them (importing
every command module costs most of a second: the compiler, the engine, the server). A module
without a summary is imported whenever the parser is built.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys
from collections.abc import Sequence

# Modules that contribute sub-commands; each defines `register(subparsers)`.
COMMAND_MODULES: tuple[str, ...] = ("run", "bp", "runs", "serve", "server", "worker", "operator", "mcp")

# The one-line help of each command, as its module registers it (a test keeps them equal).
SUMMARIES: dict[str, str] = {
    "run": "run a Blueprint (.json, .yaml or .bp.lua)",
    "bp": "Blueprint tools: lint, schema, build, new",
    "runs": "inspect and manage stored runs",
    "serve": "serve the HTTP API (default 127.0.0.1:7777)",
    "server": "run `mse serve` as a user service (systemd on Linux, launchd on macOS)",
    "worker": "fetch a prompt and submit results over the worker HTTP routes",
    "operator": "act as an operator of a server (answer its requests)",
    "mcp": "serve mse as MCP tools for AI assistants (stdio or HTTP)",
}


def command_of(argv: Sequence[str]) -> str | None:
    """The command `argv` names: its first word that is not an option (`mse` itself takes only -h)."""
    for word in argv:
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `mse` parser; given `argv`, only the command it names is fully registered."""
    parser = argparse.ArgumentParser(prog="mse", description="mlua-swarm: run declarative agent Blueprints.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None if argv is None else command_of(argv)
    for name in COMMAND_MODULES:
        if argv is not None and name != wanted and name in SUMMARIES:
            sub.add_parser(name, help=SUMMARIES[name])
        else:
            importlib.import_module(f"mlua_swarm.cli.{name}").register(sub)
    return parser


EXIT_STDOUT_CLOSED = 141
"""The exit status when the reader of stdout went away (`mse runs list | head -1`): 128 + SIGPIPE,
what a shell reports for a command a closed pipe stopped."""
EXIT_INTERRUPTED = 130
"""The exit status after a Ctrl-C: 128 + SIGINT (a run's own Ctrl-C exits 130 too, once cancelled)."""


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _dispatch(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        return EXIT_STDOUT_CLOSED
    except KeyboardInterrupt as exc:
        # A command that has nothing to cancel stops where it was, without a traceback.
        print(f"mse: {str(exc) or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def _dispatch(words: list[str]) -> int:
    parser = build_parser(words)
    args, unknown = parser.parse_known_args(words)
    if unknown:  # said by the command's own parser, with its usage line, not the top-level one
        _chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = handler(args)
    return code


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost (sub)command parser `args` went through (`mse runs list`'s for `mse runs list …`)."""
    while True:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups:
            return parser
        name = getattr(args, groups[0].dest, None)
        if name not in groups[0].choices:
            return parser
        parser = groups[0].choices[name]


def _stdout_closed() -> bool:
    """Whether stdout's reader is gone (a pipe or socket polled as hung up or in error).

    If so stdout is pointed at /dev/null, so the interpreter's own flush at exit has nowhere to fail
    and prints no second traceback. A broken pipe of anything else (a child's stdin) is not this.
    """
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        events = poller.poll(0)
    except (OSError, ValueError, AttributeError):
        return False
    if not any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events):
        return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return True


if __name__ == "__main__":
    sys.exit(main())
