"""Reading input files and parsing JSON text into plain JSON data, with located diagnostics.

Input files are read up to `MAX_INPUT_BYTES`. YAML lives in `yamltext`, so reading a JSON file
does not load the YAML parser.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from .diagnostics import Diagnostic, DiagnosticError, Location

MAX_INPUT_BYTES = 16 * 1024 * 1024
"""The largest Blueprint, script or JSON argument file read; a larger one is a `file-too-large` diagnostic."""


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
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise load_error(
            "invalid-utf8",
            f"the file is not UTF-8 text: invalid byte 0x{data[exc.start]:02x} at offset {exc.start}",
            "save the file as UTF-8",
            file,
            line,
        ) from None
    # A byte order mark (some Windows editors write one) is not part of the text.
    return text.removeprefix("\ufeff")


class NonFiniteNumber(ValueError):
    """`NaN`, an infinity, or a number too large for a float: not JSON data (no JSON text can carry it
    back out, so `--json` output would stop being JSON)."""


_MAYBE_HUGE = re.compile(r"[eE][+]?0*\d{3}|\d{309}")
"""A number that might overflow a float: an exponent of three digits or 309 digits in a row."""


def _refuse_constant(literal: str) -> Any:
    raise NonFiniteNumber(f"{literal} is not a finite number")


def check_finite(value: Any, text: str) -> Any:
    """`value` (parsed from `text`), after making sure no number overflowed to an infinity; the walk
    only happens when `text` holds a number that could."""
    if _MAYBE_HUGE.search(text) is None:
        return value
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise NonFiniteNumber("a number is too large for a float (it would become an infinity)")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


def loads_finite(text: str) -> Any:
    """`json.loads`, refusing `NaN`, `Infinity` and numbers that overflow (`NonFiniteNumber`)."""
    return check_finite(json.loads(text, parse_constant=_refuse_constant), text)


class _DuplicateKey(Exception):
    def __init__(self, key: str, keys: list[str]) -> None:
        super().__init__(key)
        self.key = key
        self.keys = keys


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key, list(value))
            seen.add(key)
    return value


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)


NUMBER_HINT = "write a finite number, or the value as a string"


def parse_json_text(text: str, file: str) -> Any:
    """Parse JSON; a syntax error becomes an `invalid-json` diagnostic with its line and column, and a
    key that appears twice in one object (where parsers disagree on which one wins) `duplicate-key`."""
    try:
        return check_finite(_DECODER.decode(text), text)
    except NonFiniteNumber as exc:
        raise load_error("invalid-number", f"{exc}; JSON data has finite numbers only", NUMBER_HINT, file) from None
    except _DuplicateKey as exc:
        keys = ", ".join(exc.keys[:8]) + (", …" if len(exc.keys) > 8 else "")
        raise load_error(
            "duplicate-key",
            f"the key {exc.key!r} appears twice in one object (its keys: {keys})",
            "keep one of them: which one would count is not defined",
            file,
        ) from None
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


__all__ = [
    "MAX_INPUT_BYTES",
    "NUMBER_HINT",
    "NonFiniteNumber",
    "check_finite",
    "load_error",
    "loads_finite",
    "parse_json_text",
    "read_input_text",
]
