"""Model conversations over the official SDKs: OpenAI-compatible chat completions and Anthropic Messages.

A `Conversation` keeps one agent's message history in its provider's own shape and plays one turn
at a time: it streams the answer (each text fragment goes to `on_text` as it arrives), collects
the tool calls the model asked for and the turn's token usage. The SDKs are imported when a
conversation opens, so a core install without the `llm` extra never loads them. The SDKs' own
retries are off: `with_retries` retries 429 and 5xx answers itself, honouring `Retry-After`, and
SDK errors become `LlmError`s naming the setting to fix.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import json
import random
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .config import DEFAULTS, Endpoint, require_sdk
from .errors import LlmError
from .usage import Usage

TextSink = Callable[[str], Awaitable[None]]
RetryNotice = Callable[[int, float, str], Awaitable[None]]
"""Told (retry number, seconds to wait, reason) before each retry."""
T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call, under the name the model sees."""

    name: str
    description: str
    schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    bad_arguments: str | None = None
    """Set when the model's arguments were not a JSON object (the raw text, reported back to it)."""


@dataclass(slots=True)
class Turn:
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    stop_reason: str | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of a refused request (429, 5xx): `max_retries` more tries, exponential backoff, Retry-After wins."""

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        backoff = min(self.base_delay * 2.0 ** (retry - 1), self.max_delay)
        return backoff * (0.75 + random.random() / 2)


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), if given."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # neither seconds nor an HTTP date: back off as if no header came
    return max(0.0, when.timestamp() - time.time())


def _parse_arguments(call_id: str, name: str, text: str) -> ToolCall:
    try:
        args = json.loads(text) if text.strip() else {}
    except ValueError:
        return ToolCall(call_id, name, {}, text)
    if not isinstance(args, dict):
        return ToolCall(call_id, name, {}, text)
    return ToolCall(call_id, name, args)


class Conversation(ABC):
    """One agent's dialogue with one model endpoint."""

    def __init__(self, endpoint: Endpoint, system: str, prompt: str, *, max_tokens: int, retry: RetryPolicy) -> None:
        self.endpoint = endpoint
        self.system = system
        self.max_tokens = max_tokens
        self.retry = retry
        self.messages: list[dict[str, Any]] = []
        self.on_retry: RetryNotice | None = None

    @abstractmethod
    async def turn(self, tools: list[ToolSpec], on_text: TextSink) -> Turn:
        """Ask the model for its next message (streamed); the answer joins the history."""

    @abstractmethod
    def add_tool_results(self, results: list[tuple[ToolCall, str, bool]]) -> None:
        """Append (call, result text, is_error) for every call of the last turn."""

    # Both official SDKs share one error shape (APIStatusError, APIConnectionError under a base error
    # class); each subclass sets its SDK module, client and base error class.
    _sdk: Any
    _client: Any
    _base_error: type[Exception]

    async def aclose(self) -> None:
        await self._client.close()

    def _status_of(self, exc: BaseException) -> tuple[int, Mapping[str, str]] | None:
        """(HTTP status, headers) if `exc` is the SDK's error for a refused request."""
        if isinstance(exc, self._sdk.APIStatusError):
            return exc.status_code, exc.response.headers
        return None

    def _error(self, exc: BaseException) -> LlmError | None:
        """The `LlmError` for an SDK error, or None if `exc` is not one."""
        if isinstance(exc, self._sdk.APIConnectionError):
            return self._unreachable(exc)
        if isinstance(exc, self._sdk.APIStatusError):
            return self._describe(exc.status_code, _detail(exc.body) or exc.message)
        if isinstance(exc, self._base_error):
            return LlmError(f"{self.endpoint.label}: {exc}")
        return None

    async def with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` with 429/5xx retried per the policy; SDK errors mapped to `LlmError`."""
        retry = 0
        while True:
            try:
                return await call()
            except Exception as exc:
                status = self._status_of(exc)
                if status is not None and status[0] in RETRY_STATUSES and retry < self.retry.max_retries:
                    retry += 1
                    delay = self.retry.delay(retry, retry_after(status[1]))
                    if self.on_retry is not None:
                        await self.on_retry(retry, delay, f"HTTP {status[0]}")
                    await asyncio.sleep(delay)
                    continue
                error = self._error(exc)
                if error is None:
                    raise
                raise error from exc

    def _describe(self, status: int, detail: str) -> LlmError:
        ep = self.endpoint
        where = f"{ep.label} at {ep.base_url}"
        if status in (401, 403):
            if ep.api_key is None:
                return LlmError(f"{where} refused the request ({status}): no API key was sent; set {ep.key_setting}")
            return LlmError(f"{where} rejected the API key ({status}): set a valid {ep.key_setting}")
        if status == 404:
            return LlmError(f"{where} answered 404 ({detail}): check the model name and {ep.base_url_setting}")
        return LlmError(f"{where} answered HTTP {status}: {detail}")

    def _unreachable(self, exc: BaseException) -> LlmError:
        ep = self.endpoint
        return LlmError(
            f"cannot reach the {ep.provider} endpoint {ep.base_url} ({type(exc).__name__}: {exc}): "
            f"check {ep.base_url_setting}"
        )


class OpenAIChat(Conversation):
    """Chat completions on any OpenAI-compatible server."""

    def __init__(self, endpoint: Endpoint, system: str, prompt: str, *, max_tokens: int, retry: RetryPolicy) -> None:
        super().__init__(endpoint, system, prompt, max_tokens=max_tokens, retry=retry)
        require_sdk("openai")
        import openai

        self._sdk = openai
        self._base_error = openai.OpenAIError
        self._client = openai.AsyncOpenAI(
            api_key=endpoint.api_key or "no-key", base_url=endpoint.base_url, max_retries=0
        )
        if system:
            self.messages.append({"role": "system", "content": system})
        self.messages.append({"role": "user", "content": prompt})

    async def turn(self, tools: list[ToolSpec], on_text: TextSink) -> Turn:
        kwargs: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": self.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        # OpenAI's own API refuses `max_tokens` for its reasoning models and takes
        # `max_completion_tokens` for all; compatible servers (vLLM, Ollama, llama.cpp) know `max_tokens`.
        kwargs["max_tokens" if self.endpoint.custom_endpoint else "max_completion_tokens"] = self.max_tokens
        if tools:
            kwargs["tools"] = [
                {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.schema}}
                for t in tools
            ]
        stream = await self.with_retries(lambda: self._client.chat.completions.create(**kwargs))
        turn = Turn()
        calls: dict[int, list[str]] = {}
        try:
            async with stream:
                async for chunk in stream:
                    turn.model = chunk.model or turn.model
                    usage = getattr(chunk, "usage", None)
                    if usage is not None:
                        details = getattr(usage, "prompt_tokens_details", None)
                        cached = getattr(details, "cached_tokens", None) if details is not None else None
                        turn.usage = Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0, cached or 0)
                    for choice in chunk.choices:
                        delta = choice.delta
                        if delta.content:
                            turn.text += delta.content
                            await on_text(delta.content)
                        for call in delta.tool_calls or ():
                            slot = calls.setdefault(call.index, ["", "", ""])
                            if call.id:
                                slot[0] = call.id
                            if call.function is not None:
                                slot[1] += call.function.name or ""
                                slot[2] += call.function.arguments or ""
                        if choice.finish_reason:
                            turn.stop_reason = choice.finish_reason
        except Exception as exc:
            error = self._error(exc)
            if error is None:
                raise
            raise error from exc
        turn.tool_calls = [
            _parse_arguments(cid or f"call_{i}", name, args) for i, (cid, name, args) in sorted(calls.items())
        ]
        message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
        if turn.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.bad_arguments or json.dumps(c.arguments)},
                }
                for c in turn.tool_calls
            ]
        self.messages.append(message)
        return turn

    def add_tool_results(self, results: list[tuple[ToolCall, str, bool]]) -> None:
        for call, text, is_error in results:
            self.messages.append(
                {"role": "tool", "tool_call_id": call.id, "content": f"error: {text}" if is_error else text}
            )


class AnthropicMessages(Conversation):
    """The Anthropic Messages API."""

    def __init__(self, endpoint: Endpoint, system: str, prompt: str, *, max_tokens: int, retry: RetryPolicy) -> None:
        super().__init__(endpoint, system, prompt, max_tokens=max_tokens, retry=retry)
        require_sdk("anthropic")
        import anthropic

        self._sdk = anthropic
        self._base_error = anthropic.AnthropicError
        self._client = anthropic.AsyncAnthropic(
            api_key=endpoint.api_key or "no-key", base_url=endpoint.base_url, max_retries=0
        )
        self.messages.append({"role": "user", "content": prompt})

    async def turn(self, tools: list[ToolSpec], on_text: TextSink) -> Turn:
        kwargs: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "stream": True,
        }
        if self.system:
            kwargs["system"] = self.system
        if tools:
            kwargs["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.schema} for t in tools]
        stream = await self.with_retries(lambda: self._client.messages.create(**kwargs))
        turn = Turn()
        blocks: dict[int, dict[str, Any]] = {}
        try:
            async with stream:
                async for event in stream:
                    await self._event(event, turn, blocks, on_text)
        except Exception as exc:
            error = self._error(exc)
            if error is None:
                raise
            raise error from exc
        content: list[dict[str, Any]] = []
        for _, block in sorted(blocks.items()):
            if block["type"] == "text":
                content.append({"type": "text", "text": block["text"]})
            elif block["type"] == "tool_use":
                call = _parse_arguments(block["id"], block["name"], block["json"])
                turn.tool_calls.append(call)
                content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
        self.messages.append({"role": "assistant", "content": content})
        return turn

    async def _event(self, event: Any, turn: Turn, blocks: dict[int, dict[str, Any]], on_text: TextSink) -> None:
        kind = event.type
        if kind == "message_start":
            message = event.message
            turn.model = message.model or turn.model
            u = message.usage
            cached = getattr(u, "cache_read_input_tokens", None) or 0
            created = getattr(u, "cache_creation_input_tokens", None) or 0
            turn.usage = Usage((u.input_tokens or 0) + cached + created, u.output_tokens or 0, cached)
        elif kind == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                blocks[event.index] = {"type": "tool_use", "id": block.id, "name": block.name, "json": ""}
            elif block.type == "text":
                blocks[event.index] = {"type": "text", "text": block.text or ""}
        elif kind == "content_block_delta":
            delta = event.delta
            block = blocks.get(event.index)
            if delta.type == "text_delta" and block is not None:
                block["text"] += delta.text
                turn.text += delta.text
                await on_text(delta.text)
            elif delta.type == "input_json_delta" and block is not None:
                block["json"] += delta.partial_json
        elif kind == "message_delta":
            if event.usage is not None and event.usage.output_tokens is not None:
                turn.usage.output_tokens = event.usage.output_tokens
            turn.stop_reason = event.delta.stop_reason or turn.stop_reason

    def add_tool_results(self, results: list[tuple[ToolCall, str, bool]]) -> None:
        self.messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": text, "is_error": is_error}
                    for call, text, is_error in results
                ],
            }
        )


def _detail(body: object) -> str | None:
    """The `error.message` of a provider's JSON error body, when there is one."""
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
    return None


async def open_conversation(
    endpoint: Endpoint, system: str, prompt: str, *, max_tokens: int = 4096, retry: RetryPolicy | None = None
) -> Conversation:
    """A conversation with `endpoint`'s provider (raises `MissingExtra` if its SDK is not installed).

    The first conversation of a process imports the provider's SDK, which takes seconds of CPU;
    that happens in a worker thread so the event loop (a server's, say) keeps serving meanwhile.
    """
    package = DEFAULTS[endpoint.provider].package
    if package not in sys.modules:
        require_sdk(endpoint.provider)
        await asyncio.to_thread(importlib.import_module, package)
    kind = OpenAIChat if endpoint.provider == "openai" else AnthropicMessages
    return kind(endpoint, system, prompt, max_tokens=max_tokens, retry=retry or RetryPolicy())


__all__ = [
    "RETRY_STATUSES",
    "AnthropicMessages",
    "Conversation",
    "OpenAIChat",
    "RetryPolicy",
    "TextSink",
    "ToolCall",
    "ToolSpec",
    "Turn",
    "open_conversation",
    "retry_after",
]
