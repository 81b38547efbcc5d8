"""The gates every request passes: origin and host checks, the body-size limit, the admin token.

Both are plain ASGI middleware so they act before any route reads anything: a body is counted as it
streams in (a client cannot make the server buffer 2 GiB before being told no), and a mutating
request without the admin token never reaches a route. Worker and operator routes carry their own
credentials and are exempt from the admin token; reads are open (loopback parity with upstream).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import BodyStalled, BodyTooLarge

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OWN_CREDENTIAL_PREFIXES: tuple[str, ...] = ("/v1/worker/", "/v1/data/", "/v1/operators", "/ui/")
"""Routes that check a worker token, an operator bearer, or (the dashboard's) a sign-in cookie and CSRF token."""


RETIRED_HANDLES = 10_000


class HandleMemory:
    """The `wh-` handles seen in use, to tell "your attempt ended" (410) from "never valid" (401)."""

    def __init__(self, size: int = RETIRED_HANDLES) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def saw(self, handle: str) -> None:
        self._seen[handle] = None
        self._seen.move_to_end(handle)
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)

    def known(self, handle: str) -> bool:
        return handle in self._seen


LOGIN_FAILURES = 5
LOGIN_WINDOW_SECS = 60.0
LOGIN_CLIENTS = 10_000


class LoginThrottle:
    """Failed dashboard sign-ins per client address, so the admin token cannot be guessed at speed.

    An address that failed `failures` times within `window_secs` of its first failure is refused until
    that window ends; a successful sign-in forgets it. An IPv6 client counts as its /64 (the block one
    subscriber is given: hopping inside it buys no fresh attempts). At most `clients` addresses are
    tracked: past that, the one whose last failure is oldest is dropped, so a flood of addresses costs
    bounded memory. `clock` (monotonic seconds) is replaceable so a test can let a window pass without waiting.
    """

    def __init__(
        self,
        failures: int = LOGIN_FAILURES,
        window_secs: float = LOGIN_WINDOW_SECS,
        clients: int = LOGIN_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window_secs = window_secs
        self.clients = clients
        self.clock = clock
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()
        """Address -> (time of the first failure in its window, failures since)."""

    def retry_after(self, client: str) -> float:
        """Seconds before `client` may try again (0: it may try now)."""
        client = _counted_as(client)
        entry = self._seen.get(client)
        if entry is None:
            return 0.0
        first, count = entry
        left = first + self.window_secs - self.clock()
        if left <= 0:
            del self._seen[client]
            return 0.0
        return left if count >= self.failures else 0.0

    def failed(self, client: str) -> None:
        client = _counted_as(client)
        now = self.clock()
        first, count = self._seen.pop(client, (now, 0))
        if now - first >= self.window_secs:
            first, count = now, 0
        self._seen[client] = (first, count + 1)
        while len(self._seen) > self.clients:
            self._seen.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._seen.pop(_counted_as(client), None)


def _counted_as(address: str) -> str:
    """What the sign-in limit counts for a client address: an IPv6 one's /64, any other as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return address
    mapped = ip.ipv4_mapped
    return str(mapped) if mapped is not None else str(ipaddress.ip_network(f"{ip}/64", strict=False))


def bearer_of(headers: Sequence[tuple[bytes, bytes]] | Request) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    if isinstance(headers, Request):
        value = headers.headers.get("authorization")
    else:
        value = next((v.decode("latin-1") for k, v in headers if k == b"authorization"), None)
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented secret with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def _send_json(send: Send, status: int, body: dict[str, object], headers: list[tuple[bytes, bytes]]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


class AdminGuard:
    """Answers 401 to a mutating request without `Authorization: Bearer <admin token>` (when one is set)."""

    def __init__(self, app: ASGIApp, token: Callable[[], str | None], exempt: Callable[[], Sequence[str]]) -> None:
        self.app = app
        self.token = token
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        expected = self.token()
        if scope["type"] == "http" and expected and scope["method"] not in SAFE_METHODS:
            path: str = scope["path"]
            if not path.startswith(tuple(self.exempt())) and not same_secret(bearer_of(scope["headers"]), expected):
                await _send_json(
                    send,
                    401,
                    {
                        "error": "this route needs the admin token",
                        "details": {"hint": "send Authorization: Bearer <admin token>"},
                    },
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        await self.app(scope, receive, send)


class OriginGuard:
    """Refuses what a web page could make a visitor's browser send to this server.

    - DNS rebinding: while the server listens on loopback, a request must name a loopback host
      (`localhost`, `127.0.0.1`, `[::1]`, with any port) or one of `allowed_hosts` (a reverse proxy's
      name); a page on `attacker.example` re-pointed at 127.0.0.1 names its own host and is refused.
    - Cross-site requests: a state-changing request (any method but GET/HEAD/OPTIONS) or a WebSocket
      carrying an `Origin` that is not this server's own is refused, so a page cannot launch runs
      with a form or `fetch(..., {mode: "no-cors"})`. Programs that are not browsers send no Origin.
    """

    def __init__(self, app: ASGIApp, loopback: Callable[[], bool], allowed_hosts: Callable[[], Sequence[str]]) -> None:
        self.app = app
        self.loopback = loopback
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": refusal[0]})
        else:
            await _send_json(send, 403, {"error": refusal[0], "details": {"hint": refusal[1]}}, [])

    def _refusal(self, scope: Scope) -> tuple[str, str] | None:
        """(why, hint) when the request must be refused."""
        headers = scope["headers"]
        host = _header(headers, b"host")
        if self.loopback() and host is not None and not self._local(host):
            return (
                f"this server answers only for a loopback host name, not {host[:100]!r}",
                "use http://127.0.0.1:PORT, or list the name in allowed_hosts (a reverse proxy's)",
            )
        origin = _header(headers, b"origin")
        changing = scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS
        if origin is not None and changing and (host is None or _netloc(origin) != host.lower()):
            return (
                f"cross-origin request from {origin[:100]!r} refused",
                "call the API from a program, or from a page this server serves",
            )
        return None

    def _local(self, host: str) -> bool:
        name = _hostname(host)
        if name is None:
            return False
        return name == "localhost" or _is_loopback_ip(name) or name in {h.lower() for h in self.allowed_hosts()}


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in headers if k == name), None)


def _hostname(host: str) -> str | None:
    try:
        return urlsplit("//" + host).hostname
    except ValueError:
        return None


def _netloc(origin: str) -> str | None:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return None
    return parts.netloc.lower() if parts.scheme in ("http", "https") else None


def _is_loopback_ip(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class BodyLimit:
    """Refuses bodies over `limit` bytes with 413 (at once when Content-Length says so, else as they
    stream), and bodies that stall with 408: nothing for `stall_secs` while more is due. Once the
    body is complete, waits on the connection (an event stream watching for the client to leave)
    are not timed."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int], stall_secs: Callable[[], float]) -> None:
        self.app = app
        self.limit = limit
        self.stall_secs = stall_secs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            err = BodyTooLarge(limit)
            await _send_json(send, 413, {"error": err.message, "details": err.details}, [(b"connection", b"close")])
            return
        seen = 0
        complete = False
        stall = self.stall_secs()

        async def counted() -> Message:
            nonlocal seen, complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout(stall):
                    message = await receive()
            except TimeoutError:
                raise BodyStalled(stall) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


__all__ = [
    "OWN_CREDENTIAL_PREFIXES",
    "SAFE_METHODS",
    "AdminGuard",
    "BodyLimit",
    "HandleMemory",
    "LoginThrottle",
    "OriginGuard",
    "bearer_of",
    "same_secret",
]
