"""The client side of `mse run --server URL` and `mse runs … --server URL`.

A run launched on a server is followed through its SSE stream: step events drive the same live
progress as a local run, and the run's record gives the same `--json` document and exit code. Ctrl-C
or SIGTERM cancels the run on the server (its children are killed there), and the client keeps
reading until the run ends, exactly as a local run would. A dropped stream is reopened with
`Last-Event-ID`, so no event is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..diagnostics import Diagnostic, DiagnosticError, Location
from ..ids import RunId
from ..paths import url_segment
from ..run import RunResult
from ..run.progress import TerminalProgress
from ..run.run import ResultStatus
from .common import Interrupted
from .endpoint import ADMIN_TOKEN_ENV

TERMINAL_KINDS = frozenset({"core.run_finished", "core.run_interrupted"})
STREAM_RETRIES = 5
REQUEST_TIMEOUT = 60.0


def _diagnostic(code: str, message: str, hint: str, url: str) -> DiagnosticError:
    return DiagnosticError([Diagnostic(code, message, location=Location(url), hint=hint, stage="server")])


@dataclass(slots=True)
class ServerClient:
    """Calls to one server; HTTP errors and an unreachable server become diagnostics."""

    url: str
    token: str | None = None

    def __post_init__(self) -> None:
        if self.token is None:
            self.token = os.environ.get(ADMIN_TOKEN_ENV) or None

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, *, timeout: float | httpx.Timeout | None = REQUEST_TIMEOUT) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=timeout)

    async def call(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """One request; its JSON body (None when empty) or a DiagnosticError naming the failure."""
        try:
            async with self.client() as http:
                response = await http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from None
        if response.status_code not in ok:
            raise self.refused(response)
        return response.json() if response.content else None

    def unreachable(self, exc: Exception) -> DiagnosticError:
        return _diagnostic(
            "server-unreachable",
            f"cannot reach the server at {self.url}: {exc or type(exc).__name__}",
            "start it with `mse serve` (or `mse server start`), or check --server / MSE_HTTP",
            self.url,
        )

    def refused(self, response: httpx.Response) -> DiagnosticError:
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text}
        message = str(body.get("error") if isinstance(body, dict) else body)
        details = body.get("details") if isinstance(body, dict) else None
        if response.status_code == 401:
            code, hint = "unauthorized", f"pass --admin-token T or set {ADMIN_TOKEN_ENV}"
        elif response.status_code == 404:
            code, hint = "not-found", "check the id (`mse runs list --server URL`)"
        else:
            code, hint = f"http-{response.status_code}", ""
        if details:
            text = json.dumps(details, ensure_ascii=False)
            hint = f"{hint}; details: {text[:1000]}" if hint else f"details: {text[:1000]}"
        where = f"{response.request.method} {response.request.url.path}"
        return _diagnostic(code, f"{where}: {message}", hint or "see the server's log", self.url)

    # ── following a run ──────────────────────────────────────────────────

    async def last_seq(self, run_id: str) -> int:
        """The sequence number of the run's newest event (0 when it has none)."""
        events = (await self.call("GET", f"/v1/runs/{url_segment(run_id)}/trace", params={"latest": 1}))["events"]
        return int(events[-1]["seq"]) if events else 0

    async def events(self, run_id: str, *, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """The run's events after seq `after` until its terminal one, reconnecting with Last-Event-ID
        when dropped."""
        last: str | None = str(after) if after else None
        failures = 0
        async with self.client(timeout=httpx.Timeout(REQUEST_TIMEOUT, read=None)) as http:
            while True:
                headers = {"last-event-id": last} if last else {}
                try:
                    async with http.stream(
                        "GET", f"/v1/runs/{url_segment(run_id)}/events", headers=headers
                    ) as response:
                        if response.status_code != 200:
                            await response.aread()
                            raise self.refused(response)
                        async for event_id, data in _sse(response):
                            failures = 0
                            last = event_id or last
                            yield data
                            if data.get("kind") in TERMINAL_KINDS:
                                return
                    return
                except httpx.HTTPError as exc:
                    failures += 1
                    if failures > STREAM_RETRIES:
                        raise self.unreachable(exc) from None
                    await asyncio.sleep(0.2 * failures)

    async def follow(self, title: str, start: Callable[[], Awaitable[Started]]) -> RunResult:
        """Start a run on the server with `start` (launch, resume or rerun), then show its live
        progress from its events after the seq `start` names (a resumed or rerun run's earlier passes
        are history). Ctrl-C/SIGTERM from the launch on cancel the run on the server (`_Interrupts`)."""
        loop = asyncio.get_running_loop()
        interrupts = _Interrupts(self, loop)
        signals = (signal.SIGINT, signal.SIGTERM)
        for signum in signals:
            loop.add_signal_handler(signum, interrupts)
        ended: dict[str, Any] = {}
        try:
            started = await interrupts.wait_for(start())
            run_id = started.run_id
            interrupts.named(run_id)
            progress = TerminalProgress(f"{title} · {run_id} @ {self.url}")
            with progress:
                async for event in self.events(run_id, after=started.after):
                    _show(progress, event)
                    if event.get("kind") == "core.run_interrupted":
                        ended = {"status": "interrupted"}
                    elif event.get("kind") in TERMINAL_KINDS:
                        ended = event.get("data") or {}
            await interrupts.settled()
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
        try:
            record = await self.call("GET", f"/v1/runs/{url_segment(run_id)}")
        except DiagnosticError:
            if ended.get("status") != "interrupted":
                raise
            record = {"run_id": run_id, "status": "interrupted"}
        result = result_of(record, replayed=started.replayed)
        progress.console.print(f"■ {result.status}: {progress.summary()}", highlight=False, markup=False)
        return result


@dataclass(frozen=True, slots=True)
class Started:
    """What a server answered to a launch, resume or rerun: the run, the seq of the last event before
    this pass (its events after it are followed), and how many steps it will replay."""

    run_id: str
    after: int = 0
    replayed: int = 0


class _Interrupts:
    """Ctrl-C and SIGTERM from a remote run's launch to its end: the run is cancelled on the server.

    A signal that comes before the server has answered the launch is held, and the run cancelled as
    soon as its id is known: cutting the request short could leave a run the server had already
    started running unseen. A second signal in that window stops waiting for the answer (the run,
    if it started, goes on; the message says how to find it).
    """

    __slots__ = ("_cancelling", "_loop", "_run_id", "_server", "_signals", "_waiting")

    def __init__(self, server: ServerClient, loop: asyncio.AbstractEventLoop) -> None:
        self._server = server
        self._loop = loop
        self._run_id: str | None = None
        self._signals = 0
        self._waiting: asyncio.Future[Started] | None = None
        self._cancelling: asyncio.Task[Any] | None = None

    def __call__(self) -> None:
        self._signals += 1
        if self._run_id is not None:
            self._cancel()
        elif self._signals > 1 and self._waiting is not None:
            self._waiting.cancel()

    async def wait_for(self, start: Awaitable[Started]) -> Started:
        """Await the server's answer to the launch; a second signal before it comes gives up."""
        self._waiting = asyncio.ensure_future(start)
        try:
            return await self._waiting
        except asyncio.CancelledError:
            if self._signals < 2:
                raise
            raise Interrupted(
                "interrupted before the server answered; the run may have started there: find it with"
                f" `mse runs list --server {self._server.url}` and stop it with `mse runs cancel`"
            ) from None
        finally:
            self._waiting = None

    def named(self, run_id: str) -> None:
        """The server has named the run: cancel it now if a signal came while it was being started."""
        self._run_id = run_id
        if self._signals:
            self._cancel()

    async def settled(self) -> None:
        """Wait for a cancel request sent to the server, if any (its refusal is reported)."""
        if self._cancelling is not None:
            await self._cancelling

    def _cancel(self) -> None:
        if self._cancelling is None and self._run_id is not None:
            path = f"/v1/runs/{url_segment(self._run_id)}/cancel"
            self._cancelling = self._loop.create_task(self._server.call("POST", path, ok=(204,)))


def _show(progress: TerminalProgress, event: dict[str, Any]) -> None:
    data = event.get("data") or {}
    step = event.get("step") or "?"
    if event.get("kind") == "step.started":
        progress.step_started(step, data.get("step_id"), data.get("node_index"))
    elif event.get("kind") == "step.finished":
        status = str(data.get("status"))
        detail = data.get("error") if "error" in data else data.get("value")
        progress.step_finished(step, data.get("step_id"), status, (data.get("elapsed_ms") or 0) / 1000, detail)


async def _sse(response: httpx.Response) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
    """(id, data) of each event of a stream; comments and events without data are skipped."""
    event_id: str | None = None
    lines: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            lines.append(line[5:].strip())
        elif line == "" and lines:
            yield event_id, json.loads("\n".join(lines))
            event_id, lines = None, []


CANCELLED_STATUSES = ("cancelled", "interrupted")


def result_of(run: dict[str, Any], *, replayed: int = 0) -> RunResult:
    """A finished run's record (`GET /v1/runs/{id}`) as the `RunResult` a local run gives: an
    `interrupted` run (the server stopped) reads as cancelled, like a local run stopped by a signal."""
    run_id = RunId(run["run_id"])
    stored = run.get("result")
    if run.get("status") == "done":
        return RunResult("done", run_id, final_ctx=stored, steps_replayed=replayed)
    stored = stored if isinstance(stored, dict) else {}
    error = stored.get("error")
    if run.get("status") == "interrupted":
        error = {"message": "the server stopped before the run ended; resume it", "failed_step": None}
    elif not isinstance(error, dict):
        error = {"message": str(error), "failed_step": None}
    status: ResultStatus = "cancelled" if run.get("status") in CANCELLED_STATUSES else "failed"
    return RunResult(status, run_id, error=error, partial_ctx=stored.get("partial_ctx"), steps_replayed=replayed)


def session(
    url: str, token: str | None, go: Callable[[ServerClient], Awaitable[RunResult]]
) -> RunResult | list[Diagnostic]:
    """Run `go` against the server at `url`; a refusal or an unreachable server comes back as diagnostics."""

    async def main() -> RunResult | list[Diagnostic]:
        try:
            return await go(ServerClient(url, token))
        except DiagnosticError as exc:
            return exc.diagnostics

    return asyncio.run(main())


LOCAL_ONLY = (("ephemeral", "--ephemeral"), ("store", "--store"), ("fn", "--fn"))


def launch_body(args: argparse.Namespace, blueprint: dict[str, Any], init: Any, base_dir: Path) -> dict[str, Any]:
    """The detached `POST /v1/tasks` of `mse run --server`; options only a local run has are refused.

    Relative references of the Blueprint resolve on the server from the Blueprint's folder
    (`base_dir`), so a server on the same machine finds what a local run would.
    """
    refused = [flag for name, flag in LOCAL_ONLY if getattr(args, name, None)]
    if args.durability != "batch":
        refused.append("--durability")
    if refused:
        raise DiagnosticError(
            [
                Diagnostic(
                    "invalid-argument",
                    f"{', '.join(refused)} {'applies' if len(refused) == 1 else 'apply'} to a local run,"
                    " not to one launched on a server",
                    location=Location("command line"),
                    hint="the server's own settings apply (`mse serve --store/--fn/--durability`); or add --local",
                    stage="server",
                )
            ]
        )
    body: dict[str, Any] = {
        "blueprint": {"kind": "inline", "value": blueprint},
        "init_ctx": init,
        "detach": True,
        "base_dir": str(base_dir.resolve()),
    }
    if args.project_root is not None:
        body["project_root"] = str(args.project_root.resolve())
    if args.work_dir is not None:
        body["work_dir"] = str(args.work_dir.resolve())
    if args.timeout is not None:
        body["ttl_secs"] = args.timeout
    body.update(operator_pin(args, blueprint))
    return body


def operator_pin(args: argparse.Namespace, blueprint: dict[str, Any]) -> dict[str, Any]:
    """The launch's `operator_sid/desc/slot` from `--operator-*`, checked against the seats the
    Blueprint declares (so a missing or unknown `--operator-slot` is said in the flag's words)."""

    def refused(message: str, hint: str) -> DiagnosticError:
        return DiagnosticError(
            [Diagnostic("invalid-argument", message, location=Location("command line"), hint=hint, stage="server")]
        )

    if args.operator_sid is None:
        if args.operator_desc is not None or args.operator_slot is not None:
            raise refused(
                "--operator-desc and --operator-slot describe the pin of --operator-sid, which is missing",
                "add --operator-sid S-… (the session that holds the seats)",
            )
        return {}
    seats = [str(seat.get("name")) for seat in blueprint.get("operators") or [] if isinstance(seat, dict)]
    if args.operator_slot is None and len(seats) > 1:
        raise refused(
            f"the Blueprint declares {len(seats)} operator seats ({', '.join(seats)}): --operator-sid holds one",
            f"name it with --operator-slot (the others go to the same session), e.g. --operator-slot {seats[0]}",
        )
    if args.operator_slot is not None and args.operator_slot not in seats:
        raise refused(
            f"--operator-slot {args.operator_slot}: the Blueprint declares no such seat",
            f"declared: {', '.join(seats) or 'none'}",
        )
    pin = {
        "operator_sid": args.operator_sid,
        "operator_desc": args.operator_desc or f"{os.environ.get('USER') or 'someone'} via mse run",
    }
    if args.operator_slot is not None:
        pin["operator_slot"] = args.operator_slot
    return pin


async def launch_and_follow(server: ServerClient, body: dict[str, Any], title: str) -> RunResult:
    async def launch() -> Started:
        started = await server.call("POST", "/v1/tasks", ok=(202,), json=body)
        return Started(str(started["run_id"]))

    return await server.follow(title, launch)


__all__ = ["ServerClient", "Started", "launch_and_follow", "launch_body", "result_of", "session"]
