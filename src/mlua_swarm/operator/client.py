"""`OperatorClient`: join a server as an operator, receive its requests, answer them, work as the sub-agent.

    async with OperatorClient("http://127.0.0.1:7777", desc="reviewer bot") as op:
        async for request in op.requests():
            if isinstance(request, SpawnFrame):
                worker = op.worker(request)
                payload = await worker.fetch()
                await worker.submit({"verdict": "PASS"})
                await op.spawn_ack(request.req_id)
            elif isinstance(request, AskFrame):
                await op.answer(request.req_id, "go ahead")

The socket reconnects by itself (exponential backoff) until the client is closed or the server
says the session is gone; the server re-sends whatever is still unanswered after a reconnect and
`requests()` yields each request once. Replies sent while the socket is down wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ..jsontext import compact, wire_text
from ..paths import url_segment
from .frames import (
    AnswerFrame,
    CancelFrame,
    HookAckFrame,
    ServerFrame,
    SpawnAckFrame,
    SpawnFrame,
    SpawnHaltFrame,
    parse_server_frame,
)

log = logging.getLogger(__name__)


class OperatorClientError(Exception):
    """The server refused a call (`status` is the HTTP status, 0 when it could not be reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    return str(body.get("error", body)) if isinstance(body, dict) else str(body)


class _Http:
    """JSON over httpx with the server's `{"error": ...}` bodies turned into `OperatorClientError`."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def call(
        self,
        method: str,
        path: str,
        *,
        bearer: str | None = None,
        json: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        try:
            response = await self.client.request(
                method, path, headers=headers, json=json, content=content, params=params
            )
        except httpx.HTTPError as exc:
            raise OperatorClientError(0, f"{method} {path}: {exc}") from exc
        if response.status_code >= 400:
            raise OperatorClientError(response.status_code, _error_text(response))
        return response


class SubAgent:
    """The worker side of one spawn: fetch the prompt and submit the result over the worker routes."""

    def __init__(self, http: _Http, spawn: SpawnFrame) -> None:
        self._http = http
        self.spawn = spawn
        self.bearer = spawn.worker_handle or spawn.capability_token

    async def fetch(self) -> dict[str, Any]:
        """`GET /v1/worker/prompt`: `{task_id, attempt, agent, system?, prompt, context}`."""
        response = await self._http.call(
            "GET", "/v1/worker/prompt", bearer=self.bearer, params={"task_id": self.spawn.task_id}
        )
        payload: dict[str, Any] = response.json()
        return payload

    async def submit(self, body: Any, *, ok: bool | None = None, verdict: str | None = None) -> None:
        """`POST /v1/worker/submit`: completes the attempt (a non-string body is sent as JSON text)."""
        params: dict[str, Any] = {}
        if ok is not None:
            params["ok"] = "true" if ok else "false"
        if verdict is not None:
            params["verdict"] = verdict
        await self._http.call("POST", "/v1/worker/submit", bearer=self.bearer, content=_body(body), params=params)

    async def artifact(self, name: str, body: Any) -> None:
        """`POST /v1/worker/artifact`: stage one named part of the result."""
        await self._http.call(
            "POST", "/v1/worker/artifact", bearer=self.bearer, content=_body(body), params={"name": name}
        )

    async def stats(self, stats: dict[str, Any]) -> None:
        """`POST /v1/worker/stats` (before the submit)."""
        await self._http.call("POST", "/v1/worker/stats", bearer=self.bearer, json=stats)


def _body(body: Any) -> bytes:
    return body.encode() if isinstance(body, str) else compact(body).encode()


class OperatorClient:
    """An operator session on a server (see the module docstring).

    Without `sid`/`token` entering the context joins (`POST /v1/operators`); with them it resumes that
    session (after a restart of either side). `backoff` is the first and the longest reconnect delay.
    """

    def __init__(
        self,
        base_url: str,
        *,
        desc: str | None = None,
        capability_manifest: Any = None,
        sid: str | None = None,
        token: str | None = None,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.1, 5.0),
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.desc = desc
        self.capability_manifest = capability_manifest
        self.sid = sid
        self.token = token
        self.reconnect = reconnect
        self.backoff = backoff
        self._http = _Http(self.base_url, timeout)
        self._queue: asyncio.Queue[ServerFrame | BaseException] = asyncio.Queue()
        self._seen: set[str] = set()
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self.connects = 0
        """How many times the socket was (re)opened."""

    # -- lifetime -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Join (unless a sid and token were given) and open the socket; returns once it is connected."""
        if self.sid is None or self.token is None:
            body: dict[str, Any] = {}
            if self.desc is not None:
                body["desc"] = self.desc
            if self.capability_manifest is not None:
                body["capability_manifest"] = self.capability_manifest
            joined = (await self._http.call("POST", "/v1/operators", json=body)).json()
            self.sid, self.token = joined["sid"], joined["token"]
        self._reader = asyncio.create_task(self._read_loop(), name=f"operator-client-{self.sid}")
        await self.wait_connected()

    async def wait_connected(self) -> None:
        """Wait for the socket (raising what ended the client if it cannot connect any more)."""
        while not self._connected.is_set():
            if self._reader is None or self._reader.done():
                error = self._reader.exception() if self._reader is not None else None
                if isinstance(error, OperatorClientError):  # the server refused the session: keep its status
                    raise OperatorClientError(error.status, f"operator socket closed: {error.message}")
                raise OperatorClientError(0, f"operator socket closed: {error}")
            waiter = asyncio.ensure_future(self._connected.wait())
            await asyncio.wait({waiter, self._reader}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def disconnect(self) -> None:
        """Drop the socket and stay away until `resume()` (the session and its requests stay on the server)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        self._connected.clear()

    async def resume(self) -> None:
        """Open the socket again after `disconnect()`."""
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_loop(), name=f"operator-client-{self.sid}")
        await self.wait_connected()

    async def aclose(self) -> None:
        """Close the socket and the HTTP client (the server session stays; `leave()` deletes it)."""
        self._closed = True
        await self.disconnect()
        await self._http.client.aclose()

    @property
    def _session_path(self) -> str:
        """This session's route, `/v1/operators/{sid}`."""
        return f"/v1/operators/{url_segment(str(self.sid))}"

    def _ws_url(self) -> str:
        scheme, rest = self.base_url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{self._session_path}/ws"

    async def _read_loop(self) -> None:
        delay = self.backoff[0]
        while not self._closed:
            try:
                async with connect(
                    self._ws_url(), additional_headers={"Authorization": f"Bearer {self.token}"}, max_size=None
                ) as ws:
                    self._ws = ws
                    self.connects += 1
                    self._connected.set()
                    delay = self.backoff[0]
                    async for message in ws:
                        self._dispatch(message)
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403, 404):
                    error = OperatorClientError(status, f"operator session {self.sid} refused the socket")
                    self._queue.put_nowait(error)
                    raise error from exc
            except (OSError, ConnectionClosed, TimeoutError) as exc:
                log.debug("operator socket %s dropped: %s", self.sid, exc)
            finally:
                self._ws = None
                self._connected.clear()
            if not self.reconnect:
                error = OperatorClientError(0, "operator socket closed")
                self._queue.put_nowait(error)
                raise error
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff[1])

    def _dispatch(self, message: str | bytes) -> None:
        frame = parse_server_frame(message)
        if frame is None:
            log.debug("operator %s ignored a frame it does not understand: %.200s", self.sid, message)
            return
        if isinstance(frame, CancelFrame):
            self._seen.discard(frame.req_id)
        elif frame.type != "hook_after":
            if frame.req_id in self._seen:
                return
            self._seen.add(frame.req_id)
        self._queue.put_nowait(frame)

    # -- requests and replies -------------------------------------------------------------------

    def received(self, req_id: str) -> bool:
        """Whether the server sent the request `req_id` to this client and has not cancelled it since."""
        return req_id in self._seen

    async def requests(self) -> AsyncIterator[ServerFrame]:
        """Every request as it arrives (each once), until the client is closed or its session is gone."""
        while True:
            item = await self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    async def next_request(self, timeout: float | None = None) -> ServerFrame | None:
        """The next request, or None after `timeout` seconds."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    async def _send(self, frame: AnswerFrame | HookAckFrame | SpawnAckFrame | SpawnHaltFrame) -> None:
        text = wire_text(frame.to_json())
        while True:
            await self.wait_connected()
            ws = self._ws
            if ws is None:
                continue
            try:
                await ws.send(text)
            except ConnectionClosed:
                self._connected.clear()
                continue
            self._seen.discard(frame.req_id)
            return

    async def answer(self, req_id: str, value: Any) -> None:
        await self._send(AnswerFrame(req_id=req_id, value=value))

    async def hook_ack(self, req_id: str, ok: bool = True, reason: str | None = None) -> None:
        await self._send(HookAckFrame(req_id=req_id, ok=ok, reason=reason))

    async def spawn_ack(
        self,
        req_id: str,
        value: Any = None,
        *,
        ok: bool = True,
        error: str | None = None,
        stats: dict[str, Any] | None = None,
    ) -> None:
        """End a spawn. The sub-agent's submit is the value; without one, `value`/`ok` become it."""
        await self._send(SpawnAckFrame(req_id=req_id, value=value, ok=ok, error=error, stats=stats))

    async def spawn_halt(self, req_id: str, value: Any = None, reason: str | None = None) -> None:
        await self._send(SpawnHaltFrame(req_id=req_id, value=value, reason=reason))

    def worker(self, spawn: SpawnFrame) -> SubAgent:
        """Act as the sub-agent of `spawn` (bearer: its `wh-` handle, else its token)."""
        return SubAgent(self._http, spawn)

    # -- session and seats ----------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = (await self._http.call("GET", self._session_path, bearer=self.token)).json()
        return result

    async def list_operators(self, limit: int | None = None) -> dict[str, Any]:
        params = {"limit": limit} if limit is not None else None
        result: dict[str, Any] = (
            await self._http.call("GET", "/v1/operators", bearer=self.token, params=params)
        ).json()
        return result

    async def leave(self) -> None:
        """Delete the session on the server (its seats are vacated) and close the client."""
        self.reconnect = False
        await self.disconnect()
        with contextlib.suppress(OperatorClientError):
            await self._http.call("DELETE", self._session_path, bearer=self.token)
        await self.aclose()

    async def acquire(self, run_id: str, desc: str, slot: str | None = None, op: str | None = None) -> dict[str, Any]:
        """Take a run's seat for this session (or for `op`)."""
        body: dict[str, Any] = {"op": op or self.sid, "desc": desc}
        if slot is not None:
            body["slot"] = slot
        result: dict[str, Any] = (
            await self._http.call("POST", f"/v1/runs/{url_segment(run_id)}/acquire", json=body)
        ).json()
        return result

    async def assignees(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = (
            await self._http.call("GET", f"/v1/runs/{url_segment(run_id)}/assignees", bearer=self.token)
        ).json()
        return result

    async def handover(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = (
            await self._http.call("GET", f"/v1/runs/{url_segment(run_id)}/handover", bearer=self.token)
        ).json()
        return result

    async def material(self, run_id: str, step_id: str) -> dict[str, Any]:
        result: dict[str, Any] = (
            await self._http.call(
                "GET", f"/v1/runs/{url_segment(run_id)}/material", bearer=self.token, params={"step_id": step_id}
            )
        ).json()
        return result


__all__ = ["OperatorClient", "OperatorClientError", "SubAgent"]
