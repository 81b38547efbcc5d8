"""MCP servers as an agent's tools: stdio servers started through the `mcp` SDK's client.

An `McpHub` belongs to one attempt. `connect` starts a server (once per name; later calls reuse
it) in a task of its own that holds the SDK's stdio transport and session open, so tool calls
may come from any task of the attempt. `aclose` ends every server: the SDK closes the child's
stdin and, if it does not exit within its grace period, terminates the process tree. The model
sees each tool as `mcp__<server>__<tool>`, the same name a profile's `tools` entry grants.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import LlmError
from .providers import ToolSpec

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class McpError(LlmError):
    """A server could not start, answer, or run a tool."""


@dataclass(frozen=True, slots=True)
class McpServerSpec:
    """`{name, command, args}` from `spec.mcp_servers` (or a script's `mcp.connect`)."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None

    @classmethod
    def parse(cls, raw: Any, where: str = "mcp server") -> McpServerSpec:
        """Validate one entry; raises ValueError with a message naming `where`."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where} must be an object with name, command and args")
        unknown = set(raw) - {"name", "command", "args", "env"}
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))} (allowed: name, command, args, env)"
            )
        name, command, args, env = raw.get("name"), raw.get("command"), raw.get("args", []), raw.get("env")
        if not isinstance(name, str) or not _NAME.match(name) or "__" in name:
            raise ValueError(f"{where}: name must be letters, digits, '-' or '_' (no '__'), got {name!r}")
        if not isinstance(command, str) or not command:
            raise ValueError(f"{where} '{name}': command must be a non-empty string")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValueError(f"{where} '{name}': args must be a list of strings")
        if env is not None and (not isinstance(env, Mapping) or not all(isinstance(v, str) for v in env.values())):
            raise ValueError(f"{where} '{name}': env must map names to strings")
        return cls(name, command, tuple(args), None if env is None else dict(env))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "command": self.command, "args": list(self.args)}
        if self.env is not None:
            out["env"] = dict(self.env)
        return out


def tool_name(server: str, tool: str) -> str:
    """The name the model sees: `mcp__<server>__<tool>` (characters a provider refuses become `_`)."""
    return f"mcp__{server}__{_UNSAFE.sub('_', tool)}"[:64]


def granted_servers(tools: Sequence[str]) -> set[str]:
    """Server names selected by `mcp__<server>__<tool>` entries; other names grant nothing."""
    out: set[str] = set()
    for entry in tools:
        if entry.startswith("mcp__"):
            server, sep, _ = entry[len("mcp__") :].partition("__")
            if sep and server:
                out.add(server)
    return out


@dataclass(slots=True)
class _Server:
    spec: McpServerSpec
    task: asyncio.Task[None] | None = None
    session: Any = None
    tools: dict[str, ToolSpec] = field(default_factory=dict)
    """model-facing name -> spec; `names` maps it back to the server's own tool name."""
    names: dict[str, str] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    errlog: IO[str] | None = None


class McpHub:
    """The MCP servers of one attempt."""

    def __init__(self, cwd: Path | None = None, rpc_timeout: float = 30.0) -> None:
        self.cwd = cwd
        self.rpc_timeout = rpc_timeout
        self._servers: dict[str, _Server] = {}
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> list[str]:
        return list(self._servers)

    async def connect(self, spec: McpServerSpec) -> list[ToolSpec]:
        """Start `spec` (or reuse the server already started under its name); its tools."""
        async with self._lock:
            server = self._servers.get(spec.name)
            if server is not None:
                if server.spec != spec:
                    raise McpError(f"MCP server '{spec.name}' is already connected with a different command")
                return list(server.tools.values())
            errlog = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed by _close
            server = _Server(spec, errlog=errlog)
            self._servers[spec.name] = server
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            server.task = asyncio.create_task(self._own(server, ready), name=f"mcp:{spec.name}")
            try:
                await asyncio.wait_for(asyncio.shield(ready), self.rpc_timeout)
            except BaseException as exc:
                await self._close(server)
                del self._servers[spec.name]
                if isinstance(exc, TimeoutError):
                    raise McpError(
                        f"MCP server '{spec.name}' did not finish its handshake within {self.rpc_timeout:g}s"
                        f"{self._stderr(server)}; raise spec.mcp_rpc_timeout_ms if it is slow to start"
                    ) from None
                raise
            return list(server.tools.values())

    async def _own(self, server: _Server, ready: asyncio.Future[None]) -> None:
        """Hold the transport and session open until `stop` is set (the SDK's contexts stay in one task)."""
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        spec = server.spec
        params = StdioServerParameters(
            command=spec.command,
            args=list(spec.args),
            env=None if spec.env is None else dict(spec.env),
            cwd=None if self.cwd is None else str(self.cwd),
        )
        try:
            async with (
                stdio_client(params, errlog=server.errlog) as (read, write),  # type: ignore[arg-type]
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                listed = await session.list_tools()
                for tool in listed.tools:
                    exposed = tool_name(spec.name, tool.name)
                    schema = getattr(tool, "input_schema", None) or getattr(tool, "inputSchema", None) or {}
                    server.tools[exposed] = ToolSpec(exposed, tool.description or "", dict(schema))
                    server.names[exposed] = tool.name
                server.session = session
                ready.set_result(None)
                await server.stop.wait()
        except Exception as exc:
            if not ready.done():
                hint = "use an absolute path or put it on PATH" if isinstance(exc, OSError) else "see its stderr"
                ready.set_exception(
                    McpError(
                        f"MCP server '{spec.name}' ({spec.command}) failed to start: "
                        f"{type(exc).__name__}: {exc}{self._stderr(server)}; {hint}"
                    )
                )
            else:
                server.session = None

    def _stderr(self, server: _Server) -> str:
        log = server.errlog
        if log is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            log.seek(0)
            tail = log.read()[-400:].strip()
            if tail:
                return f"; its stderr ends: {tail}"
        return ""

    def tools(self, servers: Sequence[str] | None = None) -> list[ToolSpec]:
        """The tools of `servers` (all connected ones when None), as the model sees them."""
        names = self.connected if servers is None else servers
        return [t for name in names if name in self._servers for t in self._servers[name].tools.values()]

    def find(self, exposed: str) -> tuple[str, str] | None:
        """(server, tool) for a model-facing tool name."""
        for name, server in self._servers.items():
            if exposed in server.names:
                return name, server.names[exposed]
        return None

    async def call(self, server_name: str, tool: str, arguments: Mapping[str, Any]) -> tuple[str, bool]:
        """Run a tool; (result text, is_error). A tool's own failure is a result, not an exception."""
        server = self._servers.get(server_name)
        if server is None:
            raise McpError(f"MCP server '{server_name}' is not connected (connected: {', '.join(self.connected)})")
        if server.session is None:
            raise McpError(f"MCP server '{server_name}' has exited{self._stderr(server)}")
        try:
            result = await asyncio.wait_for(server.session.call_tool(tool, dict(arguments)), self.rpc_timeout)
        except TimeoutError:
            raise McpError(
                f"MCP tool {server_name}.{tool} did not answer within {self.rpc_timeout:g}s; "
                "raise spec.mcp_rpc_timeout_ms if it is expected to be slow"
            ) from None
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}", True
        return _result_text(result), bool(getattr(result, "is_error", False) or getattr(result, "isError", False))

    async def aclose(self) -> None:
        """End every server of the attempt (children gone when this returns)."""
        servers = list(self._servers.values())
        self._servers.clear()
        await asyncio.gather(*(self._close(s) for s in servers), return_exceptions=True)

    async def _close(self, server: _Server) -> None:
        server.stop.set()
        task = server.task
        if task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(task)
        if server.errlog is not None:
            server.errlog.close()


def _result_text(result: Any) -> str:
    parts: list[str] = []
    for block in getattr(result, "content", None) or ():
        text = getattr(block, "text", None)
        if isinstance(text, str):
            parts.append(text)
        else:
            parts.append(json.dumps(block.model_dump(mode="json", exclude_none=True), ensure_ascii=False))
    if not parts:
        structured = getattr(result, "structured_content", None) or getattr(result, "structuredContent", None)
        if structured is not None:
            return json.dumps(structured, ensure_ascii=False)
    return "\n".join(parts)


__all__ = ["McpError", "McpHub", "McpServerSpec", "granted_servers", "tool_name"]
