"""Text bound for a terminal, with its control characters shown as escapes.

Names and values that reach a terminal come from Blueprints, workers and stores anyone may write:
an escape sequence among them could move the cursor, clear the screen or retitle the window. Every
control character but tab and newline is written as `\\xNN` instead.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def terminal_text(text: str) -> str:
    """`text` with every control character except tab and newline written as `\\xNN`."""
    return _CONTROL.sub(_escaped, text)


__all__ = ["terminal_text"]
