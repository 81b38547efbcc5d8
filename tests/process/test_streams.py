import asyncio

import pytest

from mlua_swarm.worker.output import Artifact, Final, Inline, Progress
from mlua_swarm.worker.streams import (
    FrameTooLarge,
    Malformed,
    StreamMode,
    TailBuffer,
    read_bounded,
    read_events,
    read_lines,
)


def reader_of(*chunks: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return reader


async def collect(reader: asyncio.StreamReader, mode: StreamMode, limit: int = 1 << 20) -> list[object]:
    return [item async for item in read_events(reader, mode, limit)]


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


FINAL = b'{"type":"final","content":{"kind":"inline","value":1},"ok":true}'
PROGRESS = b'{"type":"progress","stage":"s","note":null}'


async def test_lines_split_across_chunks_drop_cr_and_keep_an_unterminated_last_line() -> None:
    lines = [line async for line in read_lines(reader_of(b"ab", b"c\r\nd", b"e\n\nlast"), 100)]
    assert lines == [b"abc", b"de", b"", b"last"]


async def test_a_line_without_newline_over_the_limit_raises_before_buffering_more() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"x" * 5000)
    with pytest.raises(FrameTooLarge, match="line exceeds 4096 bytes"):
        async for _ in read_lines(reader, 4096):
            pass


async def test_ndjson_skips_blank_lines_and_reports_malformed_ones_in_order() -> None:
    items = await collect(
        reader_of(PROGRESS + b"\n  \nnot json\n" + b'{"type":"nope"}\n' + FINAL), StreamMode.NDJSON_LINES
    )
    assert items[0] == Progress("s", None)
    assert isinstance(items[1], Malformed) and items[1].index == 2 and "not JSON" in items[1].reason
    assert isinstance(items[2], Malformed) and "unknown output event type 'nope'" in items[2].reason
    assert items[3] == Final(Inline(1), True)


async def test_sse_joins_data_lines_and_ignores_fields_and_comments_but_reports_stray_text() -> None:
    body = (
        b": comment\nevent: output\nid: 7\nretry: 10\n"
        b'data: {"type":"artifact","name":"n",\n'
        b'data:"content":{"kind":"inline","value":"v"}}\n\n'
        b"stray text\n"
        b"data: " + FINAL
    )
    items = await collect(reader_of(body), StreamMode.SSE_EVENTS)
    assert items[0] == Artifact("n", Inline("v"))
    assert isinstance(items[1], Malformed) and "not an SSE field" in items[1].reason
    assert items[2] == Final(Inline(1), True)


async def test_sse_event_over_the_limit_raises() -> None:
    body = b"".join(b"data: " + b"x" * 100 + b"\n" for _ in range(20))
    with pytest.raises(FrameTooLarge, match="event"):
        await collect(reader_of(body), StreamMode.SSE_EVENTS, limit=1000)


async def test_length_prefixed_frames_with_empty_and_truncated_frames_reported() -> None:
    body = frame(PROGRESS) + (0).to_bytes(4, "big") + frame(FINAL) + (50).to_bytes(4, "big") + b"short"
    items = await collect(reader_of(body), StreamMode.LENGTH_PREFIXED)
    assert items[0] == Progress("s", None)
    assert isinstance(items[1], Malformed) and "empty frame" in items[1].reason
    assert items[2] == Final(Inline(1), True)
    assert isinstance(items[3], Malformed) and "truncated frame" in items[3].reason and "5 of 50" in items[3].reason


async def test_length_prefixed_truncated_header_is_reported_and_clean_eof_is_not() -> None:
    assert await collect(reader_of(frame(FINAL)), StreamMode.LENGTH_PREFIXED) == [Final(Inline(1), True)]
    items = await collect(reader_of(frame(FINAL) + b"\x00\x01"), StreamMode.LENGTH_PREFIXED)
    assert isinstance(items[1], Malformed) and "truncated length prefix" in items[1].reason


async def test_length_prefix_over_the_limit_raises_without_reading_the_body() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data((10_000_000).to_bytes(4, "big"))
    with pytest.raises(FrameTooLarge, match="frame of 10000000 bytes exceeds 1024"):
        await collect(reader, StreamMode.LENGTH_PREFIXED, limit=1024)


async def test_read_bounded_refuses_a_body_over_the_limit() -> None:
    assert await read_bounded(reader_of(b"a" * 10, b"b" * 10), 20) == b"a" * 10 + b"b" * 10
    with pytest.raises(FrameTooLarge, match="body exceeds 20 bytes"):
        await read_bounded(reader_of(b"a" * 21), 20)


def test_tail_buffer_keeps_only_the_last_bytes_and_counts_all() -> None:
    tail = TailBuffer(8)
    tail.write(b"0123456789")
    tail.write(b"ab")
    assert tail.text() == "456789ab" and tail.total == 12 and tail.truncated
