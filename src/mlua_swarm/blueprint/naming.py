"""The step naming table: one canonical name per agent a flow dispatches, plus the aliases it answers to.

The canonical name is the agent's declared `meta.projection_name`, else the step's `ref`. Aliases
are the ref and the top key of every `out` path the ref writes. Two steps claiming the same name is
an error when either side declared a projection name, and a warning otherwise (the step whose own
ref is the name keeps it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class StepNameEntry:
    canonical: str
    aliases: frozenset[str]


@dataclass(frozen=True, slots=True)
class NamingClash:
    """Two steps claim one name; `declared` says whether a projection name is involved (then it is an error)."""

    name: str
    first_ref: str
    second_ref: str
    declared: bool


@dataclass(slots=True)
class StepNaming:
    by_ref: dict[str, str] = field(default_factory=dict)
    by_name: dict[str, str] = field(default_factory=dict)
    entries: dict[str, StepNameEntry] = field(default_factory=dict)

    def canonical_of(self, ref: str) -> str | None:
        """The canonical name of the agent `ref` dispatched by a step."""
        return self.by_ref.get(ref)

    def resolve(self, name: str) -> str | None:
        """The canonical name a canonical name or alias stands for."""
        return self.by_name.get(name)

    @classmethod
    def build(
        cls, steps: Iterable[tuple[str, str | None]], projection_names: Mapping[str, str]
    ) -> tuple[StepNaming, list[NamingClash]]:
        """The table for `(ref, top key of out)` step occurrences in document order, and every clash."""
        order: list[str] = []
        tops: dict[str, set[str]] = {}
        for ref, top in steps:
            if ref not in tops:
                order.append(ref)
                tops[ref] = set()
            if top:
                tops[ref].add(top)
        naming = cls()
        clashes: list[NamingClash] = []
        claims: dict[str, tuple[str, bool]] = {}
        for ref in order:
            declared = ref in projection_names
            canonical = projection_names.get(ref, ref)
            aliases = frozenset(tops[ref] | {ref})
            for name in sorted(aliases | {canonical}):
                claim = claims.get(name)
                if claim is None:
                    claims[name] = (ref, declared)
                    naming.by_name[name] = canonical
                    continue
                other_ref, other_declared = claim
                clashes.append(NamingClash(name, other_ref, ref, declared or other_declared))
                if name == ref and other_ref != name:
                    claims[name] = (ref, declared)
                    naming.by_name[name] = canonical
            naming.by_ref[ref] = canonical
            naming.entries[canonical] = StepNameEntry(canonical, aliases)
        return naming, clashes


__all__ = ["NamingClash", "StepNameEntry", "StepNaming"]
