"""Reading a child's pipes with bounded memory: stream decoders, a bounded body, and a stderr tail.

Streaming children write `OutputEvent`s in one of three framings (`StreamMode`): one JSON document
per line, Server-Sent Events `data:` blocks, or 4-byte big-endian length-prefixed frames. Every
decoder refuses a line, event or frame over `max_frame` bytes with `FrameTooLarge` (so a child that
floods stdout cannot grow our memory), and reports a record it cannot decode as `Malformed` instead
of dropping it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

from ..jsontext import loads_strict
from .output import OutputEvent, OutputEventError, parse_output_event

DEFAULT_MAX_FRAME = 2 * 1024 * 1024
"""Largest line, event, frame or plain stdout body accepted from a child (2 MiB)."""
STDERR_TAIL_BYTES = 64 * 1024
"""How much of a child's stderr is kept: its last 64 KiB."""
_CHUNK = 64 * 1024


class StreamMode(StrEnum):
    NDJSON_LINES = "ndjson_lines"
    SSE_EVENTS = "sse_events"
    LENGTH_PREFIXED = "length_prefixed"


class FrameTooLarge(Exception):
    """A line, event, frame or body from the child is over the limit; the attempt fails."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(
            f"child stdout {what} exceeds {limit} bytes (max_frame_bytes); "
            "the child was stopped so memory stays bounded"
        )
        self.what = what
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Malformed:
    """A record that is not a well-formed OutputEvent: which one (1-based) and why."""

    index: int
    reason: str

    def describe(self) -> str:
        return f"record {self.index}: {self.reason}"


async def read_lines(reader: asyncio.StreamReader, max_line: int) -> AsyncIterator[bytes]:
    """Lines without their `\\n` (a trailing `\\r` is dropped too); the last one may lack a newline."""
    buf = bytearray()
    while True:
        chunk = await reader.read(_CHUNK)
        if not chunk:
            if buf:
                yield _strip_cr(bytes(buf))
            return
        start = len(buf)
        buf += chunk
        line_start = 0
        while True:
            newline = buf.find(b"\n", start)
            if newline < 0:
                break
            if newline - line_start > max_line:
                raise FrameTooLarge("line", max_line)
            yield _strip_cr(bytes(buf[line_start:newline]))
            line_start = start = newline + 1
        if line_start:
            del buf[:line_start]
        if len(buf) > max_line:
            raise FrameTooLarge("line", max_line)


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


async def read_bounded(reader: asyncio.StreamReader, limit: int) -> bytes:
    """All of a stream, refusing more than `limit` bytes (plain mode's stdout)."""
    buf = bytearray()
    while True:
        chunk = await reader.read(_CHUNK)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise FrameTooLarge("body", limit)


class TailBuffer:
    """Keeps the last `size` bytes written to it and counts them all."""

    __slots__ = ("_buf", "size", "total")

    def __init__(self, size: int = STDERR_TAIL_BYTES) -> None:
        self._buf = bytearray()
        self.size = size
        self.total = 0

    def write(self, data: bytes) -> None:
        self.total += len(data)
        self._buf += data
        excess = len(self._buf) - self.size
        if excess > 0:
            del self._buf[:excess]

    def text(self) -> str:
        return self._buf.decode("utf-8", errors="replace")

    @property
    def truncated(self) -> bool:
        return self.total > len(self._buf)


async def read_events(
    reader: asyncio.StreamReader, mode: StreamMode, max_frame: int = DEFAULT_MAX_FRAME
) -> AsyncIterator[OutputEvent | Malformed]:
    """Decode the child's stdout as `mode`, yielding each event or malformed record in order."""
    if mode is StreamMode.NDJSON_LINES:
        payloads = _ndjson_payloads(reader, max_frame)
    elif mode is StreamMode.SSE_EVENTS:
        payloads = _sse_payloads(reader, max_frame)
    else:
        payloads = _frame_payloads(reader, max_frame)
    index = 0
    async for payload in payloads:
        index += 1
        if isinstance(payload, str):
            yield Malformed(index, payload)
        else:
            yield decode_event(index, payload)


def decode_event(index: int, payload: bytes) -> OutputEvent | Malformed:
    """One JSON OutputEvent, or why it is not one."""
    try:
        obj = loads_strict(payload)
    except ValueError as exc:
        return Malformed(index, f"not JSON ({exc}): {_preview(payload)}")
    try:
        return parse_output_event(obj)
    except OutputEventError as exc:
        return Malformed(index, f"{exc}: {_preview(payload)}")


def _preview(payload: bytes, size: int = 120) -> str:
    text = payload[:size].decode("utf-8", errors="replace")
    return text + ("…" if len(payload) > size else "")


async def _ndjson_payloads(reader: asyncio.StreamReader, max_frame: int) -> AsyncIterator[bytes | str]:
    async for line in read_lines(reader, max_frame):
        line = line.strip()
        if line:
            yield line


async def _sse_payloads(reader: asyncio.StreamReader, max_frame: int) -> AsyncIterator[bytes | str]:
    """`data:` lines joined by `\\n` until a blank line; `event:`/`id:`/`retry:`/comments are skipped."""
    data: list[bytes] = []
    size = 0
    async for line in read_lines(reader, max_frame):
        if not line:
            if data:
                yield b"\n".join(data)
                data, size = [], 0
            continue
        if line.startswith(b"data:"):
            value = line[5:]
            if value.startswith(b" "):
                value = value[1:]
            size += len(value) + 1
            if size > max_frame:
                raise FrameTooLarge("event", max_frame)
            data.append(value)
        elif line.startswith(b":") or line.split(b":", 1)[0] in (b"event", b"id", b"retry"):
            continue
        else:
            yield f"not an SSE field: {_preview(line)}"
    if data:
        yield b"\n".join(data)


async def _frame_payloads(reader: asyncio.StreamReader, max_frame: int) -> AsyncIterator[bytes | str]:
    """4-byte big-endian length, then that many bytes; clean EOF between frames ends the stream."""
    while True:
        try:
            header = await reader.readexactly(4)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                yield f"truncated length prefix at end of stream ({len(exc.partial)} of 4 bytes)"
            return
        length = int.from_bytes(header, "big")
        if length > max_frame:
            raise FrameTooLarge(f"frame of {length} bytes", max_frame)
        if length == 0:
            yield "empty frame (length 0)"
            continue
        try:
            yield await reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            yield f"truncated frame at end of stream ({len(exc.partial)} of {length} bytes)"
            return


__all__ = [
    "DEFAULT_MAX_FRAME",
    "STDERR_TAIL_BYTES",
    "FrameTooLarge",
    "Malformed",
    "StreamMode",
    "TailBuffer",
    "decode_event",
    "read_bounded",
    "read_events",
    "read_lines",
]
