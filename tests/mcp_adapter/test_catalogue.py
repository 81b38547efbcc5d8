"""The adapter's declarations against the rest of the package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

from mcp import Client
from mcp_types import TextResourceContents

from mlua_swarm.cli.bp_dsl import template_names
from mlua_swarm.mcp.resources import guide_files, sample_files, sample_key
from mlua_swarm.mcp.tools_bp import TemplateName
from tests.mcp_adapter.conftest import mse_mcp, payload

GUIDES = {
    "getting-started",
    "operator-execution-model",
    "replay-and-resume",
    "blueprint-lifecycle",
    "subprocess-backends",
}


def test_bp_new_offers_exactly_the_shipped_templates() -> None:
    assert sorted(get_args(TemplateName)) == template_names()


async def test_resources_guides_samples_schema_and_tools(tmp_path: Path) -> None:
    async with mse_mcp(tmp_path) as client:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        guides = {uri.removeprefix("mse://guides/") for uri in listed if uri.startswith("mse://guides/")}
        assert guides == GUIDES
        model = await read_text(client, "mse://guides/operator-execution-model")
        assert model.startswith("# The operator execution model") and "mse_pending_wait" in model
        samples = {uri for uri in listed if uri.startswith("mse://blueprints/samples/")}
        assert samples == {f"mse://blueprints/samples/{sample_key(f.name)}" for f in sample_files()}
        for file in sample_files():
            text = await read_text(client, f"mse://blueprints/samples/{sample_key(file.name)}")
            assert text == file.read_text(encoding="utf-8")
        schema = json.loads(await read_text(client, "mse://api/blueprint-schema"))
        assert schema == payload(await client.call_tool("bp_schema", {}))
        catalogue = json.loads(await read_text(client, "mse://api/mcp-tools"))
        tools = (await client.list_tools()).tools
        assert [t["name"] for t in catalogue["tools"]] == sorted(t.name for t in tools)
        assert all(t["inputSchema"]["type"] == "object" for t in catalogue["tools"])


async def read_text(client: Client, uri: str) -> str:
    result = await client.read_resource(uri)
    (content,) = result.contents
    assert isinstance(content, TextResourceContents), content
    return content.text


def test_every_guide_is_referenced_from_the_getting_started_guide() -> None:
    text = next(f for f in guide_files() if f.name == "getting-started.md").read_text(encoding="utf-8")
    for slug in GUIDES - {"getting-started"}:
        assert f"mse://guides/{slug}" in text, slug
