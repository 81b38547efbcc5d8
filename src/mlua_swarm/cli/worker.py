"""`mse worker fetch|submit|artifact|stats`: the worker HTTP routes for shell-script workers.

Defaults come from the environment a server-hosted child gets: `MSE_HTTP` (the server), the bearer
`MSE_WORKER_HANDLE` (or the full `MSE_TOKEN`) and `MSE_TASK_ID` (the step).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..diagnostics import Diagnostic, DiagnosticError, Location
from .common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, read_json_arg, report_diagnostics


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("worker", help="fetch a prompt and submit results over the worker HTTP routes")
    commands = p.add_subparsers(dest="worker_command", metavar="COMMAND", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--server", help="server URL (default: $MSE_HTTP)")
        q.add_argument("--handle", help="worker handle or token (default: $MSE_WORKER_HANDLE or $MSE_TOKEN)")
        q.add_argument("--task-id", help="the step id (default: $MSE_TASK_ID)")

    fetch = commands.add_parser("fetch", help="print the step's prompt (--json: the whole payload)")
    common(fetch)
    fetch.add_argument("--json", action="store_true", help="print the whole payload as JSON")
    fetch.set_defaults(handler=fetch_main)

    submit = commands.add_parser("submit", help="complete the step with BODY (default: stdin)")
    common(submit)
    submit.add_argument("body", nargs="?", help="the result text; '-' or absent reads stdin")
    submit.add_argument("--ok", choices=["true", "false"], help="false reports the step blocked")
    submit.add_argument("--verdict", choices=["pass", "blocked", "skip"])
    submit.set_defaults(handler=submit_main)

    artifact = commands.add_parser("artifact", help="stage a named part of the result")
    common(artifact)
    artifact.add_argument("name")
    artifact.add_argument("body", nargs="?", help="the part's text; '-' or absent reads stdin")
    artifact.set_defaults(handler=artifact_main)

    stats = commands.add_parser("stats", help="report usage (JSON object, or @file)")
    common(stats)
    stats.add_argument("stats", help='e.g. {"model": "m", "usage": {"input_tokens": 10}}')
    stats.set_defaults(handler=stats_main)


class _Target:
    def __init__(self, args: argparse.Namespace) -> None:
        self.server = args.server or os.environ.get("MSE_HTTP")
        self.bearer = args.handle or os.environ.get("MSE_WORKER_HANDLE") or os.environ.get("MSE_TOKEN")
        self.task_id = args.task_id or os.environ.get("MSE_TASK_ID")
        missing = [
            what
            for what, value in (("--server or MSE_HTTP", self.server), ("--handle or MSE_WORKER_HANDLE", self.bearer))
            if not value
        ]
        if missing:
            raise ValueError(f"missing {' and '.join(missing)}")

    def call(self, method: str, path: str, *, params: dict[str, str] | None = None, **kwargs: Any) -> Any:
        import httpx

        query = dict(params or {})
        if self.task_id:
            query["task_id"] = self.task_id
        headers = {"authorization": f"Bearer {self.bearer}"}
        with httpx.Client(base_url=str(self.server), headers=headers, timeout=60) as client:
            return client.request(method, path, params=query, **kwargs)


def _body(value: str | None) -> bytes:
    if value is None or value == "-":
        return sys.stdin.buffer.read()
    return value.encode()


def _run(args: argparse.Namespace, go: Any) -> int:
    import httpx

    try:
        target = _Target(args)
    except ValueError as exc:
        hint = "see `mse worker --help`"
        missing = Diagnostic("invalid-argument", str(exc), location=Location("command line"), hint=hint, stage="worker")
        report_diagnostics([missing], as_json=False)
        return EXIT_INVALID
    where = Location(str(target.server))
    try:
        response = go(target)
    except DiagnosticError as exc:
        report_diagnostics(exc.diagnostics, as_json=False)
        return EXIT_INVALID
    except (httpx.HTTPError, OSError) as exc:
        hint = "check --server / MSE_HTTP (the server's URL, e.g. http://127.0.0.1:7777) and that it runs"
        unreachable = f"cannot reach the server: {exc or type(exc).__name__}"
        report_diagnostics(
            [Diagnostic("server-unreachable", unreachable, location=where, hint=hint, stage="worker")], as_json=False
        )
        return EXIT_FAILED
    if response.status_code >= 400:
        try:
            reason = response.json().get("error") or response.text
        except ValueError:
            reason = response.text
        refused = Diagnostic(
            f"http-{response.status_code}",
            f"{response.request.method} {response.request.url.path}: {reason}",
            location=where,
            hint="the worker's credential and step come from --handle/--task-id or MSE_WORKER_HANDLE/MSE_TASK_ID",
            stage="worker",
        )
        report_diagnostics([refused], as_json=False)
        return EXIT_FAILED
    return EXIT_OK


def fetch_main(args: argparse.Namespace) -> int:
    def go(target: _Target) -> Any:
        response = target.call("GET", "/v1/worker/prompt")
        if response.status_code < 400:
            payload = response.json()
            print(json.dumps(payload, ensure_ascii=False) if args.json else payload.get("prompt", ""))
        return response

    return _run(args, go)


def submit_main(args: argparse.Namespace) -> int:
    params = {k: v for k, v in (("ok", args.ok), ("verdict", args.verdict)) if v}
    return _run(args, lambda t: t.call("POST", "/v1/worker/submit", params=params, content=_body(args.body)))


def artifact_main(args: argparse.Namespace) -> int:
    params = {"name": args.name}
    return _run(args, lambda t: t.call("POST", "/v1/worker/artifact", params=params, content=_body(args.body)))


def stats_main(args: argparse.Namespace) -> int:
    return _run(args, lambda t: t.call("POST", "/v1/worker/stats", json=read_json_arg(args.stats, "stats")))
