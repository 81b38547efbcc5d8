"""Just enough semantic versioning to pick a stored Blueprint version: parse, compare, match a requirement.

A requirement is one or more comma- or space-separated clauses: `1.2.3` or `=1.2.3` (exact),
`^1.2` (same major), `~1.2` (same minor), `1.x` / `1.*` / `*` (wildcards), `>=`, `>`, `<=`, `<`.
"""

from __future__ import annotations

import re

Version = tuple[int, int, int]

_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?$")
_CLAUSE = re.compile(r"^(\^|~|>=|<=|>|<|=)?\s*(.+)$")


def parse_version(text: str) -> Version | None:
    """`1.2.3` (also `v1.2`, `1`, `1.2.3-rc1`) as a tuple; None when it is not a version."""
    m = _VERSION.match(text.strip())
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0))


def _wildcard(body: str) -> tuple[Version, Version] | None:
    """`1.x` / `1.2.*` / `*` as a half-open range [low, high)."""
    parts = body.split(".")
    fixed: list[int] = []
    for part in parts:
        if part in ("x", "X", "*"):
            break
        if not part.isdigit():
            return None
        fixed.append(int(part))
    else:
        return None
    if not fixed:
        return ((0, 0, 0), (1 << 31, 0, 0))
    low = (*fixed, 0, 0, 0)[:3]
    bumped = [*fixed[:-1], fixed[-1] + 1]
    high = (*bumped, 0, 0, 0)[:3]
    return (low[0], low[1], low[2]), (high[0], high[1], high[2])


def _clause_matches(clause: str, version: Version) -> bool:
    m = _CLAUSE.match(clause)
    if not m:
        raise ValueError(f"bad version requirement clause {clause!r}")
    op, body = m.group(1) or "", m.group(2)
    span = _wildcard(body)
    if span is not None and op in ("", "="):
        return span[0] <= version < span[1]
    wanted = parse_version(body)
    if wanted is None:
        raise ValueError(f"bad version in requirement clause {clause!r}")
    ndots = body.count(".")
    if op in ("", "="):
        return version == wanted
    if op == "^":
        high = (wanted[0] + 1, 0, 0) if wanted[0] else (0, wanted[1] + 1, 0)
        return wanted <= version < high
    if op == "~":
        high = (wanted[0] + 1, 0, 0) if ndots == 0 else (wanted[0], wanted[1] + 1, 0)
        return wanted <= version < high
    return {
        ">=": version >= wanted,
        ">": version > wanted,
        "<=": version <= wanted,
        "<": version < wanted,
    }[op]


def matches(requirement: str, version: Version) -> bool:
    """Whether `version` satisfies every clause of `requirement`; a malformed requirement raises ValueError."""
    glued = re.sub(r"(\^|~|>=|<=|>|<|=)\s+", r"\1", requirement.strip())
    clauses = [c for c in re.split(r"[,\s]+", glued) if c]
    if not clauses:
        raise ValueError("empty version requirement")
    return all(_clause_matches(c, version) for c in clauses)


def is_requirement(text: str) -> bool:
    """Whether `text` reads as a version requirement rather than a hash or a keyword."""
    try:
        matches(text, (0, 0, 0))
    except ValueError:
        return False
    return True
