"""Ctx paths (`$`, `$.a.b`, `$["x.y"]`): parsing, reads, copy-on-write writes and existence checks.

Writes mutate only the root object of the ctx in place and copy every nested object they pass
through, so values shared between ctx locations, lane snapshots and IR literals are never changed.
"""

from __future__ import annotations

from typing import Any

from mlua_swarm.flow.errors import PathError, PathNotFound, PathWriteError

_KEY_STOP = frozenset(".[]")
_INDEX_HINT = 'paths walk object keys only; there is no array index (`$.r.0` reads the key "0")'


def _display_key(key: str) -> str:
    return f'["{key}"]' if any(c in _KEY_STOP for c in key) else f".{key}"


def json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class Path:
    """A parsed path: the key chain, the text it was written as, and its canonical display."""

    __slots__ = ("canonical", "keys", "source")

    keys: tuple[str, ...]
    source: str
    canonical: str

    def __init__(self, keys: tuple[str, ...], source: str | None = None) -> None:
        self.keys = keys
        self.canonical = "$" + "".join(_display_key(k) for k in keys)
        self.source = source if source is not None else self.canonical

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Path) and other.keys == self.keys

    def __hash__(self) -> int:
        return hash(self.keys)

    def __repr__(self) -> str:
        return f"Path({self.canonical!r})"

    def __str__(self) -> str:
        return self.canonical

    def get(self, ctx: Any) -> Any:
        """Read the value at this path; a missing key or non-object intermediate raises PathNotFound.

        Reading `$` returns a shallow copy of the root, so the live ctx object never escapes.
        """
        keys = self.keys
        if not keys:
            return dict(ctx) if isinstance(ctx, dict) else ctx
        cur = ctx
        for key in keys:
            if isinstance(cur, dict):
                try:
                    cur = cur[key]
                except KeyError:
                    raise self._not_found(ctx) from None
            else:
                raise self._not_found(ctx)
        return cur

    def exists(self, ctx: Any) -> bool:
        """True when every key resolves (a null value counts as present)."""
        cur = ctx
        for key in self.keys:
            if not isinstance(cur, dict) or key not in cur:
                return False
            cur = cur[key]
        return True

    def set(self, ctx: dict[str, Any], value: Any) -> dict[str, Any]:
        """Write `value` here and return the (possibly new) root; nothing is written on error.

        Missing or null intermediates become `{}`; `$` replaces the root with a copy of `value`,
        which must be an object.
        """
        keys = self.keys
        if not keys:
            if not isinstance(value, dict):
                raise PathWriteError(f"cannot write a {json_type_name(value)} to $: the whole ctx must stay an object")
            return dict(value)
        if len(keys) == 1:
            ctx[keys[0]] = value
            return ctx
        first: dict[str, Any] | None = None
        node: dict[str, Any] = ctx
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = {}
            elif isinstance(child, dict):
                child = dict(child)
            else:
                prefix = Path(keys[: depth + 1]).canonical
                raise PathWriteError(
                    f"cannot write {self.canonical}: {prefix} is a {json_type_name(child)}, not an object"
                )
            if first is None:
                first = child
            else:
                node[key] = child
            node = child
        node[keys[-1]] = value
        ctx[keys[0]] = first
        return ctx

    def _not_found(self, ctx: Any) -> PathNotFound:
        cur = ctx
        for depth, key in enumerate(self.keys):
            here = Path(self.keys[:depth]).canonical
            if not isinstance(cur, dict):
                return PathNotFound(self.canonical, f"{here} is a {json_type_name(cur)}, not an object")
            if key not in cur:
                return PathNotFound(self.canonical, f"{here} has no key {key!r}")
            cur = cur[key]
        return PathNotFound(self.canonical, "unresolvable")


def parse_path(text: Any) -> Path:
    """Parse path text (`$`, `.key`, `["key"]` segments) into a Path, or raise PathError."""
    if not isinstance(text, str):
        raise PathError(f"a path must be a string, got {json_type_name(text)}", repr(text), 0, 'write e.g. "$.key"')
    if not text.startswith("$"):
        raise PathError("a path must start with '$'", text, 0, f'write "$.{text}" to read the top-level key')
    keys: list[str] = []
    i, n = 1, len(text)
    while i < n:
        c = text[i]
        if c == ".":
            j = i + 1
            while j < n and text[j] not in _KEY_STOP:
                j += 1
            if j == i + 1:
                raise PathError("empty key after '.'", text, i, 'remove the extra "." or name the key')
            keys.append(text[i + 1 : j])
            i = j
        elif c == "[":
            if i + 1 < n and text[i + 1] == '"':
                end = text.find('"', i + 2)
                if end == -1:
                    raise PathError("unterminated bracket key", text, i, 'close it with "]')
                if end == i + 2:
                    raise PathError("empty bracket key", text, i, 'write a non-empty key, e.g. ["name"]')
                if end + 1 >= n or text[end + 1] != "]":
                    raise PathError(
                        "expected ']' after the closing quote", text, end + 1, "bracket keys contain no '\"'"
                    )
                keys.append(text[i + 2 : end])
                i = end + 2
            elif i + 1 < n and text[i + 1].isdigit():
                raise PathError("array index in path", text, i, _INDEX_HINT)
            else:
                raise PathError("expected '\"' after '['", text, i + 1, 'write bracket keys as ["key"]')
        else:
            raise PathError(f"unexpected character {c!r}", text, i, 'continue with .key or ["key"]')
    return Path(tuple(keys), text)
