"""The child programs the subprocess workload spawns; ours and the bare floor run exactly the same argv."""

from __future__ import annotations

import shutil
import sys

PYTHON_CHILD = "import json, sys; print(json.dumps({'echo': json.loads(sys.stdin.read() or 'null')}))"
"""Read the prompt on stdin, answer one plain JSON document on stdout."""


def child_argv(name: str) -> list[str]:
    """`cat` (the cheapest possible child: it echoes the JSON prompt) or `python` (a realistic script)."""
    if name == "cat":
        cat = shutil.which("cat")
        if cat is None:
            raise ValueError("no cat on PATH")
        return [cat]
    if name == "python":
        return [sys.executable, "-c", PYTHON_CHILD]
    raise ValueError(f"unknown child {name!r}; expected 'cat' or 'python'")
