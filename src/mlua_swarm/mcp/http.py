"""The `mse serve` HTTP API as `mse mcp` calls it: one client per base URL, failures as tool errors.

The base URL is `MSE_HTTP` (default `http://127.0.0.1:7777`); tools that take a `bind` argument
may point one call elsewhere (`host:port` or a URL).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .toolkit import ToolFailure

DEFAULT_SERVER = "http://127.0.0.1:7777"
REQUEST_TIMEOUT = 30.0
EVENT_READ_TIMEOUT = 60.0
"""An event stream with nothing (not even its 15 s keepalive) for this long is taken as lost."""

STATUS_HINTS = {
    400: "the server refused the request as malformed; read the error and fix the argument it names",
    401: "the bearer was missing or wrong; join again with mse_operator_join and use the sid it returns",
    404: "nothing by that id on this server; check the id (mse_doctor lists registered Blueprints)",
    409: "the target is in a state that forbids this (archived, already finished, seat moved); read the error",
    410: "the run or worker handle is gone (finished, cancelled or lost in a restart); start a new run",
    422: "the server understood the request but cannot act on it; read the error for the part to change",
    503: "the server is not ready for this (for example no operator attached); join first, then retry",
}
WORKER_HINTS = {
    401: "the worker handle is unknown or expired (a restarted server, or one older than the server's "
    "worker_token_ttl_secs): use the worker_handle of the latest spawn mse_pending_wait returned for this step",
}
"""A worker route's bearer is a spawn's worker handle, not an operator session's."""


def server_url(bind: str | None = None) -> str:
    """`bind` (`host:port` or a URL), else `MSE_HTTP`, else the default; no trailing slash."""
    value = (bind or os.environ.get("MSE_HTTP") or DEFAULT_SERVER).strip().rstrip("/")
    if "://" not in value:
        value = "http://" + value
    return value


class ServerApi:
    """Async JSON calls to one `mse serve`; connection and HTTP errors become `ToolFailure`s."""

    def __init__(self, base_url: str, *, timeout: float = REQUEST_TIMEOUT) -> None:
        self.base_url = base_url
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: str | bytes | None = None,
        params: dict[str, Any] | None = None,
        bearer: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The decoded JSON answer (None for an empty body); any non-2xx answer raises `ToolFailure`."""
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self._client.request(
                method,
                path,
                json=json,
                content=content,
                params=query or None,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TimeoutException:
            raise ToolFailure(
                "server-timeout",
                f"{method} {self.base_url}{path} did not answer in time",
                "the server is busy or hung; check it with mse_doctor, or retry with a longer timeout",
            ) from None
        except httpx.HTTPError as exc:
            raise ToolFailure(
                "server-unreachable",
                f"cannot reach mse serve at {self.base_url} ({type(exc).__name__}: {exc})",
                "start the server with `mse serve` (or point MSE_HTTP / the bind argument at the right address)",
            ) from None
        return decode(response, f"{method} {path}")

    async def events(self, path: str, *, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """The JSON `data:` of each Server-Sent Event at `path` (events after sequence `after`),
        until the server ends the stream; a dropped connection raises `ToolFailure`."""
        headers = {"Last-Event-ID": str(after)} if after else None
        try:
            async with self._client.stream(
                "GET", path, headers=headers, timeout=httpx.Timeout(REQUEST_TIMEOUT, read=EVENT_READ_TIMEOUT)
            ) as response:
                if not response.is_success:
                    await response.aread()
                    decode(response, f"GET {path}")
                data: list[str] = []
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif not line and data:
                        event = json.loads("\n".join(data))
                        data = []
                        if isinstance(event, dict):
                            yield event
        except httpx.HTTPError as exc:
            raise ToolFailure(
                "server-unreachable",
                f"lost the event stream {self.base_url}{path} ({type(exc).__name__}: {exc})",
                "check the server with mse_doctor; the run goes on there (follow it with swarm_status)",
            ) from None


def decode(response: httpx.Response, what: str) -> Any:
    """The JSON (or text) body of a 2xx answer; an error answer raises `ToolFailure` with its hint."""
    body: Any
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = response.text
    if response.is_success:
        return body
    message = body.get("error") if isinstance(body, dict) else None
    hint = body.get("hint") if isinstance(body, dict) else None
    details = body.get("details") if isinstance(body, dict) else None
    if not hint and response.request.url.path.startswith("/v1/worker/"):
        hint = WORKER_HINTS.get(response.status_code)
    raise ToolFailure(
        f"http-{response.status_code}",
        f"{what} answered {response.status_code}: {message or body or response.reason_phrase}",
        hint or STATUS_HINTS.get(response.status_code),
        details,
    )


__all__ = ["DEFAULT_SERVER", "STATUS_HINTS", "ServerApi", "decode", "server_url"]
