"""The two gates every request passes: the body-size limit and the admin token on mutating routes.

Both are plain ASGI middleware so they act before any route reads anything: a body is counted as it
streams in (a client cannot make the server buffer 2 GiB before being told no), and a mutating
request without the admin token never reaches a route. Worker and operator routes carry their own
credentials and are exempt from the admin token; reads are open (loopback parity with upstream).
"""

from __future__ import annotations

import hmac
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import BodyTooLarge

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


class BodyLimit:
    """Refuses bodies over `limit` bytes with 413: at once when Content-Length says so, else as they stream."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

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

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
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
    "bearer_of",
    "same_secret",
]
