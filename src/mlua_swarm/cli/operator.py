"""`mse operator join`: a person in a terminal holds an operator session and answers its requests.

Each request is shown as it arrives (agent, prompt, context, verdict choices) and answered with a
prompt: a spawn is completed with a value, a verdict, a failure or a halt (this terminal acts as the
sub-agent and submits over the worker routes); a question gets an answer; a spawn gate is approved
or rejected. Ctrl-C leaves the terminal but keeps the session (rejoin with --sid and --token).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.prompt import Confirm, Prompt
from rich.syntax import Syntax
from rich.text import Text

from ..diagnostics import Diagnostic, Location
from ..jsontext import compact
from .common import EXIT_INVALID, EXIT_OK, report_diagnostics

T = TypeVar("T")
LEFT = "left the terminal; the session stays on the server"
DEFAULT_SERVER = "http://127.0.0.1:7777"
CHOICES = {"v": "submit a value", "p": "pass with a verdict", "f": "fail the step", "h": "halt the step"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("operator", help="act as an operator of a server (answer its requests)")
    commands = group.add_subparsers(dest="operator_command", metavar="COMMAND", required=True)
    join = commands.add_parser("join", help="hold an operator session in this terminal and answer requests")
    join.add_argument("--desc", default=None, help="what this operator is (shown to other operators)")
    join.add_argument(
        "--server", default=None, help=f"server URL (default: $MSE_HTTP or {DEFAULT_SERVER})", metavar="URL"
    )
    join.add_argument("--sid", default=None, help="rejoin this session (with --token) instead of joining anew")
    join.add_argument("--token", default=None, help="the bearer of --sid")
    join.set_defaults(handler=_join_main)


def _join_main(args: argparse.Namespace) -> int:
    if (args.sid is None) != (args.token is None):
        usage = Diagnostic(
            "usage",
            "--sid and --token go together",
            location=Location("command line"),
            hint="pass both (as `mse operator join` printed them when the session was made), or neither to join anew",
        )
        report_diagnostics([usage], as_json=False)
        return EXIT_INVALID
    server = args.server or os.environ.get("MSE_HTTP") or DEFAULT_SERVER
    console = Console()
    try:
        return asyncio.run(TerminalOperator(console, server, args.desc, args.sid, args.token).run())
    except KeyboardInterrupt:
        console.print(f"\n[dim]{LEFT}[/dim]")
        return EXIT_OK


JOIN_HINTS = {
    0: "start a server with `mse serve`, or pass --server URL",
    401: "--token is not this session's bearer: pass the token printed with it, or join anew without --sid/--token",
    404: "the session is gone (it left, or expired 24 h after its last use): join anew without --sid/--token",
}
"""What to do when joining fails, by the HTTP status of the refusal (0: the server was not reached)."""


class TerminalOperator:
    def __init__(self, console: Console, server: str, desc: str | None, sid: str | None, token: str | None) -> None:
        self.console = console
        self.server = server
        self.desc = desc or f"terminal operator ({os.environ.get('USER', 'someone')})"
        self.sid = sid
        self.token = token

    async def ask(self, prompt: str, **kwargs: Any) -> str:
        """A Rich prompt read off the event loop, so the socket keeps being served while the person types."""
        answer = await _typed(lambda: Prompt.ask(prompt, console=self.console, **kwargs))
        return str(answer)

    async def confirm(self, prompt: str) -> bool:
        answer: bool = await _typed(lambda: Confirm.ask(prompt, console=self.console, default=True))
        return answer

    async def run(self) -> int:
        from ..operator.client import OperatorClient, OperatorClientError

        client = OperatorClient(self.server, desc=self.desc, sid=self.sid, token=self.token)
        try:
            await client.start()
        except OperatorClientError as exc:
            refused = Diagnostic(
                "operator-join",
                f"cannot join: {exc.message}",
                location=Location(self.server),
                hint=JOIN_HINTS.get(exc.status, "change what the message names (see `mse operator join --help`)"),
                stage="server",
            )
            report_diagnostics([refused], as_json=False)
            await client.aclose()
            return EXIT_INVALID
        self.console.print(
            Panel(
                f"session [bold]{client.sid}[/bold] on {self.server}\n"
                f"rejoin later with: mse operator join --sid {client.sid} --token {client.token}\n"
                "waiting for requests… (Ctrl-C leaves; the session stays)",
                title="operator joined",
            )
        )
        try:
            async for request in client.requests():
                await self.handle(client, request)
        except OperatorClientError as exc:
            self.console.print(f"[red]the session ended[/red]: {escape(exc.message)}")
            return EXIT_INVALID
        except EOFError:  # Ctrl-D, or no more input: leaving, as with Ctrl-C
            self.console.print(f"\n[dim]{LEFT}[/dim]")
            return EXIT_OK
        finally:
            await client.aclose()
        return EXIT_OK

    async def handle(self, client: Any, request: Any) -> None:
        kind = request.type
        if kind == "spawn":
            await self.spawn(client, request)
        elif kind == "ask":
            title = escape(f"question from step {request.task_id}")
            self.console.print(Panel(_pretty(request.question), title=title))
            text = await self.ask("your answer")
            await client.answer(request.req_id, _value(text))
        elif kind == "hook_before":
            title = escape(
                f"agent {request.agent} is about to start (step {request.task_id}, attempt {request.attempt})"
            )
            self.console.print(Panel("\n".join(_gate_lines(request)), title=title))
            if await self.confirm("approve"):
                await client.hook_ack(request.req_id, True)
            else:
                reason = await self.ask("reason", default="rejected by the operator")
                await client.hook_ack(request.req_id, False, reason)
        elif kind == "hook_after":
            finished = f"{request.agent} ({request.task_id}) finished: {compact(request.result)}"
            self.console.print(f"[dim]{escape(finished)}[/dim]")
        elif kind == "cancel":
            self.console.print(
                f"[yellow]{escape(f'request {request.req_id} was withdrawn: {request.reason}')}[/yellow]"
            )

    async def spawn(self, client: Any, request: Any) -> None:
        worker = client.worker(request)
        payload = await worker.fetch()
        verdict = payload.get("verdict") or {}
        values: list[str] = list(verdict.get("values") or [])
        body = [f"[bold]agent[/bold] {escape(f'{request.agent}   step {request.task_id}   attempt {request.attempt}')}"]
        if payload.get("system"):
            body.append(f"[bold]system[/bold]\n{escape(str(payload['system']))}")
        body.append(f"[bold]prompt[/bold]\n{escape(str(payload.get('prompt')))}")
        body += _context_lines(payload.get("context"))
        if values:
            body.append(f"[bold]verdict choices[/bold] {escape(', '.join(values))}")
        self.console.print(Panel("\n".join(body), title="spawn"))
        menu = {k: v for k, v in CHOICES.items() if k != "p" or values}
        self.console.print("  ".join(f"[bold]{k}[/bold]={v}" for k, v in menu.items()))
        action = await self.ask("action", choices=list(menu), default="p" if values else "v")
        if action == "v":
            text = await self.ask("value (JSON or text)")
            await worker.submit(text)
            await client.spawn_ack(request.req_id, {})
        elif action == "p":
            chosen = await self.ask("verdict", choices=values, default=values[0])
            if verdict.get("channel") == "part":
                await worker.artifact("verdict", chosen)
                note = await self.ask("note", default="")
                await worker.submit(note or chosen)
            else:
                await worker.submit(chosen)
            await client.spawn_ack(request.req_id, {})
        elif action == "f":
            reason = await self.ask("why", default="failed by the operator")
            await client.spawn_ack(request.req_id, ok=False, error=reason)
        else:
            reason = await self.ask("reason", default="halted by the operator")
            await client.spawn_halt(request.req_id, {}, reason)
        self.console.print(f"[green]{escape(f'answered {request.req_id}')}[/green]")


async def _typed(read: Callable[[], T]) -> T:
    """`read` (a blocking terminal prompt) on a daemon thread that leaves SIGINT to the main thread.

    A terminal read in a thread can swallow Ctrl-C (the signal lands on the reading thread, which
    retries its read) and, in the event loop's executor, would hold the exit until a line is typed.
    Here Ctrl-C always reaches the loop, and leaving does not wait for the read.
    """
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if answer.done():
            return
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(value)  # type: ignore[arg-type]

    def work() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            value, error = read(), None
        except BaseException as exc:  # handed to the awaiting coroutine
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed: the terminal was left meanwhile
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=work, name="mse-operator-prompt", daemon=True).start()
    return await answer


def _context_lines(context: Any) -> list[str]:
    shown = {k: v for k, v in (context or {}).items() if v not in (None, [], {})}
    return [f"[bold]context[/bold] {escape(compact(shown))}"] if shown else []


def _gate_lines(request: Any) -> list[str]:
    """A `hook_before`: the step's prompt as its worker will get it, and its context."""
    lines: list[str] = []
    if request.prompt is not None:
        lines.append(f"[bold]prompt[/bold]\n{escape(request.prompt)}")
        if request.prompt_truncated:
            lines.append(f"[dim](the first {len(request.prompt)} of {request.prompt_chars} characters)[/dim]")
    lines += _context_lines(request.context)
    lines.append("approve this spawn?")
    return lines


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pretty(value: Any) -> Any:
    if isinstance(value, str):
        return Text(value)
    return Syntax(json.dumps(value, indent=2, ensure_ascii=False), "json")


__all__ = ["register"]
