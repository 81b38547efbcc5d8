"""The adapter's declarations against the rest of the package."""

from __future__ import annotations

from typing import get_args

from mlua_swarm.cli.bp_dsl import template_names
from mlua_swarm.mcp.tools_bp import TemplateName


def test_bp_new_offers_exactly_the_shipped_templates() -> None:
    assert sorted(get_args(TemplateName)) == template_names()
