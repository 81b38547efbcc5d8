"""Resources `mse mcp` serves: guides, bundled sample Blueprints, the Blueprint schema, the tool list."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from mcp.server.mcpserver.resources import FunctionResource, Resource
from mcp.server.mcpserver.tools import Tool

from ..blueprint.schema import blueprint_json_schema

SAMPLES_DIR = "samples"
"""Where the bundled sample Blueprints live inside the `mlua_swarm` package."""

SAMPLE_SUFFIXES = (".bp.lua", ".json", ".yaml", ".yml")


def guide_files() -> list[Traversable]:
    folder = resources.files("mlua_swarm").joinpath("mcp/guides")
    return sorted((f for f in folder.iterdir() if f.name.endswith(".md")), key=lambda f: f.name)


def sample_files() -> list[Traversable]:
    folder = resources.files("mlua_swarm").joinpath(SAMPLES_DIR)
    if not folder.is_dir():
        return []
    return sorted(
        (f for f in folder.iterdir() if f.is_file() and f.name.endswith(SAMPLE_SUFFIXES)), key=lambda f: f.name
    )


def sample_key(name: str) -> str:
    """`01-pure-ctx.json` is served as `01`; a name without a number keeps its stem."""
    stem = name.split(".", 1)[0]
    head = stem.split("-", 1)[0]
    return head if head.isdigit() else stem


def title_of(text: str, fallback: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return fallback


def _reader(file: Traversable) -> Callable[[], str]:
    def read() -> str:
        return file.read_text(encoding="utf-8")

    return read


def text_resource(uri: str, name: str, description: str, mime: str, read: Callable[[], str]) -> Resource:
    return FunctionResource.from_function(read, uri=uri, name=name, description=description, mime_type=mime)


def tool_catalogue(tools: list[Tool]) -> dict[str, Any]:
    return {
        "tools": [
            {"name": t.name, "description": t.description, "inputSchema": t.parameters}
            for t in sorted(tools, key=lambda t: t.name)
        ]
    }


def all_resources(tools: list[Tool]) -> list[Resource]:
    out: list[Resource] = []
    for file in guide_files():
        slug = file.name.removesuffix(".md")
        title = title_of(file.read_text(encoding="utf-8"), slug)
        out.append(text_resource(f"mse://guides/{slug}", f"guide-{slug}", title, "text/markdown", _reader(file)))
    for file in sample_files():
        key = sample_key(file.name)
        mime = "application/json" if file.name.endswith(".json") else "text/plain"
        out.append(
            text_resource(
                f"mse://blueprints/samples/{key}", f"sample-{key}", f"Sample Blueprint {file.name}", mime, _reader(file)
            )
        )
    out.append(
        text_resource(
            "mse://api/blueprint-schema",
            "blueprint-schema",
            "JSON Schema of a Blueprint document",
            "application/json",
            lambda: json.dumps(blueprint_json_schema(), indent=2),
        )
    )
    catalogue = json.dumps(tool_catalogue(tools), indent=2)
    out.append(
        text_resource(
            "mse://api/mcp-tools",
            "mcp-tools",
            "Every tool of mse mcp with its description and input schema",
            "application/json",
            lambda: catalogue,
        )
    )
    return out


__all__ = ["SAMPLES_DIR", "all_resources", "guide_files", "sample_files", "sample_key", "tool_catalogue"]
