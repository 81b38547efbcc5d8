"""The operator console's server side: a person in the browser acts as an operator session.

The browser keeps the session's sid and bearer in an HttpOnly cookie. While the console page is open it
holds one Server-Sent Events stream; for that stream the dashboard connects an `OperatorClient` to the
server's own operator socket, so the session counts as attached exactly while the page is open. Requests
(`spawn`, `ask`, `hook_before`, and `cancel` notices) are passed on with the material a person needs
(the spawn's prompt and context, the run it belongs to, the agent's verdict values); replies come back
as CSRF-checked `fetch` calls. Closing or reloading the page drops the socket only: the server parks
what is unanswered and sends it again when the page reconnects, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ...ids import StepId
from ...operator.client import OperatorClient, OperatorClientError
from ...operator.frames import HookBeforeFrame, SpawnFrame
from ...paths import url_segment
from ..http import json_object, server
from .auth import secure_cookie
from .views import launch_of, parse_value

if TYPE_CHECKING:
    from .routes import Dashboard

SESSION_COOKIE = "mse_op"
KEEPALIVE_SECS = 15.0
REPLY_KINDS = ("spawn_ack", "spawn_halt", "answer", "hook_ack")
DEFAULT_DESC = "dashboard console"
"""Who a console session is when the person leaves "Who is answering" empty."""


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


class Console:
    """Operator sessions held by browsers, and the sockets open for the pages showing them."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.clients: dict[str, OperatorClient] = {}
        self.frames: dict[str, SpawnFrame] = {}

    @staticmethod
    def credentials(request: Request) -> tuple[str, str] | None:
        sid, _, token = request.cookies.get(SESSION_COOKIE, "").partition(":")
        return (sid, token) if sid.startswith("S-") and token else None

    def session_for(self, request: Request) -> dict[str, Any] | None:
        creds = self.credentials(request)
        if creds is None:
            return None
        return {"sid": creds[0], "attached": creds[0] in self.clients}

    # -- session ----------------------------------------------------------------------------------

    async def join(self, request: Request) -> Response:
        body = await json_object(request)
        desc = str(body.get("desc") or "").strip() or DEFAULT_DESC
        status, data = await self.dashboard.call(request, "POST", "/v1/operators", {"desc": desc})
        if status >= 400 or not isinstance(data, Mapping):
            return JSONResponse(data or {"error": f"join failed ({status})"}, status_code=status)
        response = JSONResponse({"sid": data["sid"]})
        secure_cookie(response, request, SESSION_COOKIE, f"{data['sid']}:{data['token']}")
        return response

    async def leave(self, request: Request) -> Response:
        creds = self.credentials(request)
        response = JSONResponse({"left": creds is not None})
        response.delete_cookie(SESSION_COOKIE, path="/")
        if creds is None:
            return response
        sid, token = creds
        client = self.clients.pop(sid, None)
        if client is not None:
            await client.aclose()
        base = self._base_url(request)
        async with OperatorClient(base, sid=sid, token=token, reconnect=False) as gone:
            with contextlib.suppress(OperatorClientError):
                await gone.leave()
        return response

    async def acquire(self, request: Request) -> Response:
        creds = self.credentials(request)
        if creds is None:
            return JSONResponse({"error": "join as an operator first"}, status_code=409)
        body = await json_object(request)
        run_id = str(body.get("run_id") or "").strip()
        # The seat names its holder as the person joined (their "Who is answering"), unless told otherwise.
        hub = server(request).operators
        joined = hub.sessions.get(creds[0]) if hub is not None else None
        desc = str(body.get("desc") or "") or (joined.desc if joined is not None and joined.desc else DEFAULT_DESC)
        request_body: dict[str, Any] = {"op": creds[0], "desc": desc}
        if body.get("slot"):
            request_body["slot"] = str(body["slot"])
        status, data = await self.dashboard.call(
            request, "POST", f"/v1/runs/{url_segment(run_id)}/acquire", request_body
        )
        return JSONResponse(data if data is not None else {}, status_code=status)

    # -- requests and replies -----------------------------------------------------------------------

    def _base_url(self, request: Request) -> str:
        return (server(request).base_url or str(request.base_url)).rstrip("/")

    async def describe(self, request: Request, client: OperatorClient, frame: Any) -> dict[str, Any]:
        """A request as the page shows it: the frame plus its run, prompt, context and verdict values.

        A spawn's prompt and context are fetched as its worker would; a `hook_before` carries them in
        the frame, and gets the agent's Blueprint entry (`agent_def`: its kind, spec, runner) beside them.
        """
        data: dict[str, Any] = frame.to_json() if hasattr(frame, "to_json") else dict(frame)
        data.pop("capability_token", None)
        step = data.get("task_id")
        run_id = self._run_of(request, step)
        if isinstance(frame, SpawnFrame):
            self.frames[frame.req_id] = frame
            try:
                payload = await client.worker(frame).fetch()
            except OperatorClientError as exc:
                payload = {"error": str(exc)}
            data["prompt"] = payload.get("prompt")
            data["context"] = payload.get("context")
        run_id = run_id or (data.get("context") or {}).get("run_id")
        data["run_id"] = run_id
        entry, data["verdicts"] = await self._agent(request, run_id, data.get("agent"))
        if isinstance(frame, HookBeforeFrame):
            data["agent_def"] = entry
        return data

    def _run_of(self, request: Request, step: Any) -> str | None:
        if not isinstance(step, str):
            return None
        try:
            live = server(request).runs.steps.get(StepId.parse(step))
        except ValueError:
            return None
        return str(live.run_id) if live is not None else None

    async def _agent(
        self, request: Request, run_id: str | None, agent: Any
    ) -> tuple[Mapping[str, Any] | None, dict[str, Any] | None]:
        """The agent as the run's launch snapshot declares it: its Blueprint entry, and its verdict
        values as `{values, channel}` when it has a verdict contract (each None when unknown)."""
        run = await self.dashboard._run(request, run_id) if run_id is not None and isinstance(agent, str) else None
        if run is None:
            return None, None
        launch = launch_of(run)
        agents = (launch.document or {}).get("agents") or []
        entry = next((a for a in agents if isinstance(a, Mapping) and a.get("name") == agent), None)
        values = launch.verdicts.get(agent)
        if not values:
            return entry, None
        channel = ((entry or {}).get("verdict") or {}).get("channel") or "body"
        return entry, {"values": values, "channel": channel}

    async def stream(self, request: Request) -> Response:
        creds = self.credentials(request)
        if creds is None:
            return JSONResponse({"error": "join as an operator first"}, status_code=409)
        sid, token = creds
        client = OperatorClient(self._base_url(request), sid=sid, token=token)
        try:
            await client.start()
        except (OperatorClientError, OSError) as exc:
            await client.aclose()
            response = JSONResponse({"error": f"operator session unavailable: {exc}"}, status_code=410)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response
        previous = self.clients.get(sid)
        self.clients[sid] = client
        if previous is not None:
            await previous.aclose()

        async def events() -> AsyncIterator[str]:
            try:
                yield _sse("hello", {"sid": sid, "attached": True})
                while True:
                    frame = await client.next_request(timeout=KEEPALIVE_SECS)
                    if frame is None:
                        yield ": keepalive\n\n"
                        continue
                    kind = getattr(frame, "type", "")
                    if kind == "hook_after":
                        continue
                    if kind == "cancel":
                        self.frames.pop(frame.req_id, None)
                        yield _sse("cancel", frame.to_json())
                        continue
                    yield _sse("request", await self.describe(request, client, frame))
            finally:
                if self.clients.get(sid) is client:
                    del self.clients[sid]
                await asyncio.shield(client.aclose())

        headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def reply(self, request: Request) -> Response:
        creds = self.credentials(request)
        client = self.clients.get(creds[0]) if creds is not None else None
        if client is None:
            return JSONResponse({"error": "the console is not connected; reload the page"}, status_code=409)
        body = await json_object(request)
        kind, req_id = body.get("kind"), body.get("req_id")
        if kind not in REPLY_KINDS or not isinstance(req_id, str):
            return JSONResponse({"error": f"kind must be one of {', '.join(REPLY_KINDS)}, with a req_id"}, 400)
        text = body.get("text")
        value = parse_value(text) if isinstance(text, str) else body.get("value")
        reason = body.get("reason") or None
        if kind == "answer":
            await client.answer(req_id, value)
        elif kind == "hook_ack":
            await client.hook_ack(req_id, bool(body.get("ok", True)), reason)
        elif kind == "spawn_halt":
            await client.spawn_halt(req_id, value, reason)
            self.frames.pop(req_id, None)
        else:
            await self._spawn_reply(client, req_id, value, body)
        return JSONResponse({"sent": True, "value": value})

    async def _spawn_reply(self, client: OperatorClient, req_id: str, value: Any, body: Mapping[str, Any]) -> None:
        """End a spawn with the person's value (`ok` false: the step reports failure with that value).

        A verdict on the `part` channel goes in as the `verdict` part, beside the value.
        """
        ok = bool(body.get("ok", True))
        verdict = body.get("verdict")
        frame = self.frames.pop(req_id, None)
        if isinstance(verdict, str) and body.get("channel") == "part" and frame is not None:
            worker = client.worker(frame)
            await worker.artifact("verdict", verdict)
            await worker.submit(value, ok=ok)
            await client.spawn_ack(req_id)
            return
        if isinstance(verdict, str):
            value = verdict
        await client.spawn_ack(req_id, value, ok=ok)

    def routes(self) -> list[BaseRoute]:
        g = self.dashboard.gated
        return [
            Route("/ui/api/operator/join", g(self.join, mutating=True, api=True), methods=["POST"]),
            Route("/ui/api/operator/leave", g(self.leave, mutating=True, api=True), methods=["POST"]),
            Route("/ui/api/operator/acquire", g(self.acquire, mutating=True, api=True), methods=["POST"]),
            Route("/ui/api/operator/reply", g(self.reply, mutating=True, api=True), methods=["POST"]),
            Route("/ui/api/operator/stream", g(self.stream, api=True)),
        ]


__all__ = ["SESSION_COOKIE", "Console"]
