"""Parsing YAML text into plain JSON data, with located diagnostics (see `textparse` for files).

Bounded: aliases may not expand a document past `MAX_YAML_NODES` nodes, and YAML that is not JSON
data (non-string keys, `!!binary`, `!!set`, timestamps) is refused rather than turned into Python
objects.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .textparse import NUMBER_HINT, load_error

MAX_YAML_NODES = 1_000_000
"""How many nodes a YAML document may hold once its aliases are expanded."""

_NOT_JSON_TAGS = ("binary", "set", "omap", "pairs", "timestamp")


_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML was built with it: the pure-Python scanner takes seconds per megabyte
(a 16 MiB string took over half a minute), libyaml a few milliseconds."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKey(ConstructorError):
    """A mapping names the same key twice."""


class NonFiniteFloat(ConstructorError):
    """`.inf`, `.nan` or a float too large: not JSON data."""


class JsonYamlLoader(_SAFE_LOADER):  # type: ignore[valid-type,misc]
    """Safe YAML limited to plain JSON data: dates stay strings, keys are strings and appear once
    per mapping (YAML requires it; which duplicate wins would otherwise be silent), no binary or sets."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                if key_node.value in seen:
                    raise DuplicateKey(
                        "while reading a mapping",
                        node.start_mark,
                        f"the key {key_node.value!r} appears twice in this mapping",
                        key_node.start_mark,
                    )
                seen.add(key_node.value)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        for key in mapping:
            if not isinstance(key, str):
                raise ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"mapping keys must be strings, found {type(key).__name__} {key!r} (quote it)",
                    node.start_mark,
                )
        return mapping


def _finite_float(loader: yaml.SafeLoader, node: Node) -> Any:
    value = loader.construct_yaml_float(node)  # type: ignore[arg-type]
    if not math.isfinite(value):
        raise NonFiniteFloat(None, None, f"{node.value} is not a finite number", node.start_mark)
    return value


def _refuse_tag(loader: yaml.SafeLoader, node: Node) -> Any:
    short = node.tag.rsplit(":", 1)[-1]
    raise ConstructorError(None, None, f"!!{short} values are not JSON data", node.start_mark)


JsonYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _SAFE_LOADER.yaml_implicit_resolvers.items()
}
for _tag in _NOT_JSON_TAGS:
    JsonYamlLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)
JsonYamlLoader.add_constructor("tag:yaml.org,2002:float", _finite_float)


def load_yaml(text: str) -> Any:
    """One YAML document as JSON data; raises `yaml.YAMLError` (aliases past the bound included)."""
    loader = JsonYamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expansion(root: Node) -> None:
    """Refuse a node graph whose aliases expand past `MAX_YAML_NODES`, or that refers to itself."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        known = sizes.get(key)
        if known is not None:
            return known
        if key in open_nodes:
            raise ConstructorError(None, None, "an alias refers to the node that contains it", node.start_mark)
        total = 1
        if isinstance(node, SequenceNode | MappingNode):
            open_nodes.add(key)
            items = node.value if isinstance(node, SequenceNode) else [n for pair in node.value for n in pair]
            for child in items:
                total += size(child)
                if total > MAX_YAML_NODES:
                    raise ConstructorError(
                        None,
                        None,
                        f"aliases expand the document past {MAX_YAML_NODES:,} nodes",
                        node.start_mark,
                    )
            open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)


def parse_yaml_text(text: str, file: str) -> Any:
    """Parse YAML; a syntax error becomes an `invalid-yaml` diagnostic with its line and column."""
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        where = f" at line {line}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, NonFiniteFloat):
            message = f"{problem}{where}; JSON data has finite numbers only"
            raise load_error("invalid-number", message, NUMBER_HINT, file, line) from None
        if isinstance(exc, DuplicateKey):
            raise load_error(
                "duplicate-key",
                f"{problem}{where}",
                "keep one of them: which one would count is not defined",
                file,
                line,
            ) from None
        raise load_error(
            "invalid-yaml",
            f"invalid YAML{where}: {problem}",
            "fix the YAML there (indentation, unquoted ':' and anchors/aliases are the usual causes)",
            file,
            line,
        ) from None
    except RecursionError:
        raise load_error("invalid-yaml", "the document is nested too deeply", "flatten the document", file) from None
    except ValueError as exc:
        raise load_error("invalid-yaml", f"a number is out of range: {exc}", "write it as a string", file) from None


__all__ = ["MAX_YAML_NODES", "DuplicateKey", "JsonYamlLoader", "NonFiniteFloat", "load_yaml", "parse_yaml_text"]
