"""The catalogue of Blueprint diagnostic codes and how lint settings change a finding's level.

Codes follow upstream's lint registry so tools written for upstream recognise them. Only findings
whose default level is a warning can be tuned by `lints` maps (`allow` hides, `deny` makes an
error); errors can never be softened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..diagnostics import Level


@dataclass(frozen=True, slots=True)
class LintDecl:
    code: str
    level: Level
    category: str


def _decls(level: Level, category: str, *codes: str) -> dict[str, LintDecl]:
    return {code: LintDecl(code, level, category) for code in codes}


LINT_DECLS: dict[str, LintDecl] = {
    **_decls(
        Level.ERROR,
        "correctness",
        "bound-agent-resolution",
        "unknown-agent-kind",
        "invalid-agent-spec",
        "retry-backoff-too-long",
        "unresolved-agent-ref",
        "duplicate-agent-name",
        "unresolved-operator-ref",
        "unresolved-meta-ref",
        "step-naming-collision",
        "invalid-projection-placement",
        "unresolved-audit-agent",
        "halted-at-missing",
    ),
    **_decls(
        Level.ERROR, "contract", "worker-binding-missing", "verdict-channel-mismatch", "verdict-value-not-in-contract"
    ),
    **_decls(Level.ERROR, "migration", "removed-spawner-hint"),
    **_decls(Level.WARN, "suspicious", "verdict-value-unhandled"),
    **_decls(Level.WARN, "contract", "verdict-contract-never-read"),
    **_decls(Level.WARN, "meta", "unknown-lint-kind", "non-suppressible-lint"),
    **_decls(Level.WARN, "style", "dsl-dead-halt", "dsl-gate-on-fanout"),
    # Input stage: the document could not be read or does not match the schema.
    **_decls(
        Level.ERROR,
        "input",
        "file-not-found",
        "unsupported-file",
        "invalid-json",
        "invalid-yaml",
        "schema",
        "invalid-flow",
        "ref-not-found",
        "ref-path-rejected",
        "invalid-agent-md",
        "dsl-error",
        "dsl-not-a-table",
        "document-too-deep",
        "invalid-option",
    ),
}
CATEGORIES = frozenset(decl.category for decl in LINT_DECLS.values())
# Findings upstream's compile only logs unless a `lints` map names them: reported at level info by
# default (shown, but the lint verdict stays OK), as a warning under `warn`, an error under `deny`.
QUIET_BY_DEFAULT = frozenset({"verdict-value-unhandled", "verdict-contract-never-read"})
# Codes that can be reported as warnings, so `lints` settings may hide them or turn them into errors.
TUNABLE = frozenset(
    {"unresolved-agent-ref", "unknown-agent-kind"}
    | {code for code, decl in LINT_DECLS.items() if decl.level is Level.WARN}
)


def setting_in(layer: Mapping[str, str] | None, code: str) -> str | None:
    """The level one `lints` map gives `code`: exact key, then `category:<cat>`, then `all`."""
    if not layer:
        return None
    decl = LINT_DECLS.get(code)
    for key in (code, f"category:{decl.category}" if decl else None, "all"):
        if key is not None and key in layer:
            return layer[key]
    return None


def resolve_setting(code: str, *layers: Mapping[str, str] | None) -> str | None:
    """The first layer (nearest first) that mentions `code` decides its setting outright."""
    for layer in layers:
        setting = setting_in(layer, code)
        if setting is not None:
            return setting
    return None


def lint_key_known(key: str) -> bool:
    """Whether a `lints` key names a code, a `category:<cat>`, or `all`."""
    if key == "all" or key in LINT_DECLS:
        return True
    return key.startswith("category:") and key.removeprefix("category:") in CATEGORIES


__all__ = [
    "CATEGORIES",
    "LINT_DECLS",
    "QUIET_BY_DEFAULT",
    "LintDecl",
    "lint_key_known",
    "resolve_setting",
    "setting_in",
]
