"""Loopback model servers for the LLM tests: an OpenAI-compatible chat-completions endpoint and an
Anthropic Messages endpoint, both real HTTP on 127.0.0.1 (Starlette + uvicorn in a thread).

Each server plays a script: a queue of `Reply` objects, one per request, spoken in the provider's
real wire format (JSON bodies, or SSE streams when the request asks for `stream`), so the official
SDK clients parse them as they would the real services. Every request body is recorded.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Reply:
    """One scripted answer: text and/or tool calls with usage, an HTTP error, or a stream that hangs."""

    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    input_tokens: int = 10
    output_tokens: int = 5
    cached_tokens: int = 0
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    """Stream `text` (one chunk per word), then never finish: the client has to hang up."""

    @classmethod
    def error(cls, status: int, **headers: str) -> Reply:
        return cls(status=status, headers=headers)

    def words(self) -> list[str]:
        parts = self.text.split(" ")
        return [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)] if self.text else []


class LoopbackServer:
    """Base: a Starlette app served on a free loopback port from a daemon thread."""

    def __init__(self, model: str = "test-model") -> None:
        self.model = model
        self.script: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.stream_started = threading.Event()
        self.client_hung_up = threading.Event()
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        app = Starlette(routes=self.routes())
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def routes(self) -> list[Route]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def play(self, *replies: Reply) -> LoopbackServer:
        with self._lock:
            self.script.extend(replies)
        return self

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        while not self._server.started:
            self._thread.join(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    async def _take(self, request: Request) -> tuple[dict[str, Any], Reply]:
        body = await request.json()
        with self._lock:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            reply = self.script.pop(0) if self.script else Reply(text="(script exhausted)")
        return body, reply

    async def _sse(self, events: Iterator[str], hang: bool) -> AsyncIterator[str]:
        try:
            for event in events:
                yield event
                self.stream_started.set()
            if hang:
                await asyncio.Event().wait()
        finally:
            if hang:
                self.client_hung_up.set()

    def _error(self, reply: Reply, body: dict[str, Any]) -> Response:
        return JSONResponse(body, status_code=reply.status, headers=reply.headers)


class OpenAIServer(LoopbackServer):
    """`POST /v1/chat/completions`; the client's base URL is `url + "/v1"`."""

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def routes(self) -> list[Route]:
        return [Route("/v1/chat/completions", self.completions, methods=["POST"])]

    async def completions(self, request: Request) -> Response:
        body, reply = await self._take(request)
        if reply.status != 200:
            message = {401: "Incorrect API key provided", 429: "Rate limit reached"}.get(reply.status, "server error")
            return self._error(reply, {"error": {"message": message, "type": "error", "code": str(reply.status)}})
        if body.get("stream"):
            return StreamingResponse(
                self._sse(self._chunks(reply, bool(body.get("stream_options", {}).get("include_usage"))), reply.hang),
                media_type="text/event-stream",
            )
        return JSONResponse(self._completion(reply))

    def _usage(self, reply: Reply) -> dict[str, Any]:
        return {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
        }

    def _calls(self, reply: Reply) -> list[dict[str, Any]]:
        return [
            {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for i, (name, args) in enumerate(reply.tool_calls)
        ]

    def _completion(self, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = self._calls(reply)
        return {
            "id": "chatcmpl-loopback",
            "object": "chat.completion",
            "created": 0,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else "stop"}
            ],
            "usage": self._usage(reply),
        }

    def _chunks(self, reply: Reply, include_usage: bool) -> Iterator[str]:
        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            doc = {
                "id": "chatcmpl-loopback",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": self.model,
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(doc)}\n\n"

        yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for word in reply.words():
            yield chunk([{"index": 0, "delta": {"content": word}, "finish_reason": None}])
        if reply.hang:
            return
        for i, call in enumerate(self._calls(reply)):
            args = call["function"]["arguments"]
            head = {"index": i, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"]}}
            head["function"]["arguments"] = ""
            yield chunk([{"index": 0, "delta": {"tool_calls": [head]}, "finish_reason": None}])
            for piece in (args[: len(args) // 2], args[len(args) // 2 :]):
                delta = {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
                yield chunk([{"index": 0, "delta": delta, "finish_reason": None}])
        finish = "tool_calls" if reply.tool_calls else "stop"
        yield chunk([{"index": 0, "delta": {}, "finish_reason": finish}])
        if include_usage:
            yield chunk([], usage=self._usage(reply))
        yield "data: [DONE]\n\n"


class AnthropicServer(LoopbackServer):
    """`POST /v1/messages`; the client's base URL is `url`."""

    def routes(self) -> list[Route]:
        return [Route("/v1/messages", self.messages, methods=["POST"])]

    async def messages(self, request: Request) -> Response:
        body, reply = await self._take(request)
        if reply.status != 200:
            kind = {401: "authentication_error", 429: "rate_limit_error"}.get(reply.status, "api_error")
            return self._error(reply, {"type": "error", "error": {"type": kind, "message": f"status {reply.status}"}})
        if body.get("stream"):
            return StreamingResponse(self._sse(self._events(reply), reply.hang), media_type="text/event-stream")
        return JSONResponse(self._message(reply, self._blocks(reply)))

    def _blocks(self, reply: Reply) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        blocks += [
            {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": args}
            for i, (name, args) in enumerate(reply.tool_calls)
        ]
        return blocks

    def _message(self, reply: Reply, content: list[dict[str, Any]], done: bool = True) -> dict[str, Any]:
        return {
            "id": "msg_loopback",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": ("tool_use" if reply.tool_calls else "end_turn") if done else None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": reply.input_tokens,
                "output_tokens": reply.output_tokens if done else 1,
                "cache_read_input_tokens": reply.cached_tokens,
                "cache_creation_input_tokens": 0,
            },
        }

    def _events(self, reply: Reply) -> Iterator[str]:
        def event(doc: dict[str, Any]) -> str:
            return f"event: {doc['type']}\ndata: {json.dumps(doc)}\n\n"

        yield event({"type": "message_start", "message": self._message(reply, [], done=False)})
        index = 0
        if reply.text:
            yield event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
            for word in reply.words():
                yield event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}})
            if reply.hang:
                return
            yield event({"type": "content_block_stop", "index": 0})
            index = 1
        for i, (name, args) in enumerate(reply.tool_calls):
            block = {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": {}}
            yield event({"type": "content_block_start", "index": index, "content_block": block})
            text = json.dumps(args)
            for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield event({"type": "content_block_delta", "index": index, "delta": delta})
            yield event({"type": "content_block_stop", "index": index})
            index += 1
        stop = "tool_use" if reply.tool_calls else "end_turn"
        yield event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": reply.output_tokens},
            }
        )
        yield event({"type": "message_stop"})


__all__ = ["AnthropicServer", "LoopbackServer", "OpenAIServer", "Reply"]
