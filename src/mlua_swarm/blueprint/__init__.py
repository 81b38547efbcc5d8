"""Blueprints: the schema, file loading with reference expansion, and the compiler with its lints."""

from .compiler import CompiledAgent, CompiledBlueprint, compile_blueprint
from .loader import expand_refs, load_blueprint_source
from .schema import AgentDef, Blueprint, blueprint_json_schema
from .validate import validate_blueprint

__all__ = [
    "AgentDef",
    "Blueprint",
    "CompiledAgent",
    "CompiledBlueprint",
    "blueprint_json_schema",
    "compile_blueprint",
    "expand_refs",
    "load_blueprint_source",
    "validate_blueprint",
]
