"""Reading input files and parsing JSON and YAML text into plain JSON data, with located diagnostics.

Everything here is bounded: input files are read up to `MAX_INPUT_BYTES`, YAML aliases may not
expand a document past `MAX_YAML_NODES` nodes, and YAML that is not JSON data (non-string keys,
`!!binary`, `!!set`, timestamps) is refused rather than turned into Python objects.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

from .diagnostics import Diagnostic, DiagnosticError, Location

MAX_INPUT_BYTES = 16 * 1024 * 1024
"""The largest Blueprint, script or JSON argument file read; a larger one is a `file-too-large` diagnostic."""
MAX_YAML_NODES = 1_000_000
"""How many nodes a YAML document may hold once its aliases are expanded."""

_NOT_JSON_TAGS = ("binary", "set", "omap", "pairs", "timestamp")


class JsonYamlLoader(yaml.SafeLoader):
    """Safe YAML limited to plain JSON data: dates stay strings, keys are strings, no binary or sets."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        for key in mapping:
            if not isinstance(key, str):
                raise ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"mapping keys must be strings, found {type(key).__name__} {key!r} (quote it)",
                    node.start_mark,
                )
        return mapping


def _refuse_tag(loader: yaml.SafeLoader, node: Node) -> Any:
    short = node.tag.rsplit(":", 1)[-1]
    raise ConstructorError(None, None, f"!!{short} values are not JSON data", node.start_mark)


JsonYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag in _NOT_JSON_TAGS:
    JsonYamlLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)


def load_error(code: str, message: str, hint: str, file: str, line: int | None = None) -> DiagnosticError:
    return DiagnosticError(
        [Diagnostic(code, message, location=Location(file=file, line=line), hint=hint, stage="load")]
    )


def read_input_text(path: str | Path, file: str | None = None, *, limit: int = MAX_INPUT_BYTES) -> str:
    """A UTF-8 input file's text, read without following it past `limit` bytes.

    Missing, unreadable, not a regular file, too large and not UTF-8 are distinct diagnostics.
    """
    file = file or str(path)
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode) and not stat.S_ISCHR(mode):
                raise load_error("not-a-file", "this is not a regular file", "name a file, not a folder", file)
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise load_error("file-not-found", "no such file", "check the path", file) from None
    except IsADirectoryError:
        raise load_error("not-a-file", "this is a folder", "name a file, not a folder", file) from None
    except OSError as exc:
        raise load_error(
            "file-unreadable", f"cannot read the file: {exc.strerror or exc}", "check the permissions", file
        ) from None
    if len(data) > limit:
        raise load_error(
            "file-too-large",
            f"the input is larger than {limit // (1024 * 1024)} MiB",
            "split the document, or check that the path names the file you meant",
            file,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise load_error(
            "invalid-utf8",
            f"the file is not UTF-8 text: invalid byte 0x{data[exc.start]:02x} at offset {exc.start}",
            "save the file as UTF-8",
            file,
            line,
        ) from None


def parse_json_text(text: str, file: str) -> Any:
    """Parse JSON; a syntax error becomes an `invalid-json` diagnostic with its line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise load_error(
            "invalid-json",
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            "fix the JSON syntax there (a missing comma, quote or bracket is the usual cause)",
            file,
            exc.lineno,
        ) from None
    except RecursionError:
        raise load_error("invalid-json", "the document is nested too deeply", "flatten the document", file) from None
    except ValueError as exc:
        raise load_error("invalid-json", f"a number is out of range: {exc}", "write it as a string", file) from None


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


__all__ = [
    "MAX_INPUT_BYTES",
    "MAX_YAML_NODES",
    "JsonYamlLoader",
    "load_error",
    "load_yaml",
    "parse_json_text",
    "parse_yaml_text",
    "read_input_text",
]
