"""uvicorn's HTTP/1.1 protocol with a deadline for each request head.

uvicorn closes a keep-alive connection that stays silent between requests, but it sets no limit on a
connection that never sends a request, or sends its head a few bytes at a time: such connections
are held for as long as the client likes, and a few thousand of them take every file descriptor the
process may open (a "slow loris"). Here a connection whose request head has not fully arrived
`head_secs` after it opened, or after the previous response, is closed. A body that stalls is the
body limit's business (`auth.BodyLimit`).
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


class HeadDeadlineProtocol(H11Protocol):
    """`H11Protocol`, closing a connection whose request head is not in after `head_secs`."""

    head_secs: float = 30.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm()

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_secs, self._head_late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.debug("closing a connection whose request head did not arrive within %s s", self.head_secs)
            self.transport.close()


def head_deadline_protocol(head_secs: float) -> type[HeadDeadlineProtocol]:
    """The protocol class uvicorn is given, with `head_secs` set."""
    return type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_secs": head_secs})


__all__ = ["HeadDeadlineProtocol", "head_deadline_protocol"]
