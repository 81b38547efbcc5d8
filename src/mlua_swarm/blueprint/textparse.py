"""Parsing JSON and YAML text into plain JSON data, with syntax errors as located diagnostics."""

from __future__ import annotations

import json
from typing import Any

import yaml

from ..diagnostics import Diagnostic, DiagnosticError, Location


class JsonYamlLoader(yaml.SafeLoader):
    """Safe YAML that keeps dates as strings, so every document is plain JSON data."""


JsonYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_error(code: str, message: str, hint: str, file: str, line: int | None = None) -> DiagnosticError:
    return DiagnosticError(
        [Diagnostic(code, message, location=Location(file=file, line=line), hint=hint, stage="load")]
    )


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


def parse_yaml_text(text: str, file: str) -> Any:
    """Parse YAML; a syntax error becomes an `invalid-yaml` diagnostic with its line and column."""
    try:
        return yaml.load(text, Loader=JsonYamlLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        where = f" at line {line}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise load_error(
            "invalid-yaml",
            f"invalid YAML{where}: {problem}",
            "fix the YAML syntax there (indentation and unquoted ':' are the usual causes)",
            file,
            line,
        ) from None
    except RecursionError:
        raise load_error("invalid-yaml", "the document is nested too deeply", "flatten the document", file) from None


__all__ = ["JsonYamlLoader", "load_error", "parse_json_text", "parse_yaml_text"]
