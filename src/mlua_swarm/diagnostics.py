"""Diagnostics: what every layer reports about bad input, with a code, a place and a hint.

The wire form follows upstream's model (`kind`, `stage`, `level`, `message`, `help`, `span`), so
tools built for upstream can read ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Level(StrEnum):
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a finding is: an element (agent / step / operator / meta / root), a JSON path, a file and line."""

    element: str | None = None
    name: str | None = None
    json_path: str | None = None
    file: str | None = None
    line: int | None = None

    def describe(self) -> str:
        parts: list[str] = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.element and self.name:
            parts.append(f"{self.element} '{self.name}'")
        elif self.element:
            parts.append(self.element)
        if self.json_path:
            parts.append(f"at {self.json_path}")
        return ", ".join(parts) or "blueprint"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.element:
            elem: dict[str, Any] = {"type": self.element}
            if self.name is not None:
                elem["name"] = self.name
            out["element"] = elem
        for key in ("json_path", "file", "line"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    message: str
    level: Level = Level.ERROR
    location: Location = field(default_factory=Location)
    hint: str | None = None
    stage: str = "compile"

    def render(self) -> str:
        text = f"{self.level.value}[{self.code}] {self.location.describe()}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.code,
            "stage": {"type": self.stage},
            "level": self.level.value,
            "message": self.message,
            "span": self.location.to_json(),
        }
        if self.hint:
            out["help"] = self.hint
        return out


class DiagnosticError(Exception):
    """Input was refused; carries every diagnostic found (at least one error)."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        errors = [d for d in diagnostics if d.level is Level.ERROR] or diagnostics
        super().__init__("\n".join(d.render() for d in errors))


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.level is Level.ERROR for d in diagnostics)


__all__ = ["Diagnostic", "DiagnosticError", "Level", "Location", "has_errors"]
