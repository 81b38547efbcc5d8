"""Worker output events and content references, with upstream's JSON wire shapes (part of the engine's contract).

`OutputEvent` is tagged by `type` (`progress | partial | artifact | final`); `ContentRef` by `kind`
(`inline | file_ref`). A worker streams events to its attempt's tail through an `OutputSink`; the
last `Final` on the tail is the attempt's value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, TypeAlias


class OutputEventError(ValueError):
    """A value that is not a well-formed OutputEvent or ContentRef."""


@dataclass(frozen=True, slots=True)
class Inline:
    value: Any

    def to_json(self) -> dict[str, Any]:
        return {"kind": "inline", "value": self.value}

    def as_value(self) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class FileRef:
    path: str
    mime: str | None = None
    size_hint: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": "file_ref", "path": self.path, "mime": self.mime, "size_hint": self.size_hint}

    def as_value(self) -> Any:
        return {"file_ref": self.path, "mime": self.mime, "size_hint": self.size_hint}


ContentRef: TypeAlias = Inline | FileRef


@dataclass(frozen=True, slots=True)
class Progress:
    stage: str
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": "progress", "stage": self.stage, "note": self.note}


@dataclass(frozen=True, slots=True)
class Partial:
    chunk: ContentRef

    def to_json(self) -> dict[str, Any]:
        return {"type": "partial", "chunk": self.chunk.to_json()}


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    content: ContentRef

    def to_json(self) -> dict[str, Any]:
        return {"type": "artifact", "name": self.name, "content": self.content.to_json()}


@dataclass(frozen=True, slots=True)
class Final:
    content: ContentRef
    ok: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"type": "final", "content": self.content.to_json(), "ok": self.ok}


OutputEvent: TypeAlias = Progress | Partial | Artifact | Final


def parse_content_ref(obj: Any) -> ContentRef:
    if not isinstance(obj, dict):
        raise OutputEventError(f"content must be an object tagged by 'kind', got {type(obj).__name__}")
    kind = obj.get("kind")
    if kind == "inline":
        if "value" not in obj:
            raise OutputEventError("inline content needs a 'value'")
        return Inline(obj["value"])
    if kind == "file_ref":
        path = obj.get("path")
        if not isinstance(path, str):
            raise OutputEventError("file_ref content needs a string 'path'")
        mime = obj.get("mime")
        size = obj.get("size_hint")
        if mime is not None and not isinstance(mime, str):
            raise OutputEventError("file_ref 'mime' must be a string or null")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise OutputEventError("file_ref 'size_hint' must be an integer or null")
        return FileRef(path, mime, size)
    raise OutputEventError(f"unknown content kind {kind!r} (expected 'inline' or 'file_ref')")


def parse_output_event(obj: Any) -> OutputEvent:
    """Decode one event from its JSON value; raises `OutputEventError` with the reason."""
    if not isinstance(obj, dict):
        raise OutputEventError(f"an output event must be an object tagged by 'type', got {type(obj).__name__}")
    kind = obj.get("type")
    if kind == "progress":
        stage = obj.get("stage")
        note = obj.get("note")
        if not isinstance(stage, str):
            raise OutputEventError("progress needs a string 'stage'")
        if note is not None and not isinstance(note, str):
            raise OutputEventError("progress 'note' must be a string or null")
        return Progress(stage, note)
    if kind == "partial":
        return Partial(parse_content_ref(obj.get("chunk")))
    if kind == "artifact":
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            raise OutputEventError("artifact needs a non-empty string 'name'")
        return Artifact(name, parse_content_ref(obj.get("content")))
    if kind == "final":
        ok = obj.get("ok", True)
        if not isinstance(ok, bool):
            raise OutputEventError("final 'ok' must be a boolean")
        return Final(parse_content_ref(obj.get("content")), ok)
    raise OutputEventError(f"unknown output event type {kind!r} (expected progress, partial, artifact, final)")


class OutputSink(ABC):
    """Where a running worker sends its events."""

    @abstractmethod
    async def emit(self, event: OutputEvent) -> None: ...


__all__ = [
    "Artifact",
    "ContentRef",
    "FileRef",
    "Final",
    "Inline",
    "OutputEvent",
    "OutputEventError",
    "OutputSink",
    "Partial",
    "Progress",
    "parse_content_ref",
    "parse_output_event",
]
