"""The step naming table: one canonical name per agent a flow dispatches, plus the aliases it answers to.

The canonical name is the agent's declared `meta.projection_name`, else the step's `ref`. A step
claims names with two strengths:

- strong: its ref, its canonical name, and the key of an `out` path one level deep (`$.plan`
  makes the step own all of `plan`);
- weak: the top key of a deeper `out` (`$.lane.lint` only writes inside `lane`).

A weak claim holds only while no other step claims that name at all; once contested, every weak
claim on it is dropped without a word (several steps writing under one root is ordinary shape),
so the name resolves to the step claiming it strongly, or to nothing. Two strong claims on one
name are an error when either side declared a projection name, else a warning; the step whose own
ref is the name keeps it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
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


@dataclass(frozen=True, slots=True)
class OutClaim:
    """The top key of a step's `out` path; `nested` when the path goes deeper than that key."""

    key: str
    nested: bool

    @classmethod
    def of(cls, keys: Sequence[str]) -> OutClaim | None:
        """The claim an `out` path with these keys makes (None for `$` itself)."""
        return cls(keys[0], len(keys) > 1) if keys else None


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
        cls, steps: Iterable[tuple[str, OutClaim | None]], projection_names: Mapping[str, str]
    ) -> tuple[StepNaming, list[NamingClash]]:
        """The table for `(ref, out claim)` step occurrences in document order, and every clash."""
        order: list[str] = []
        outs: dict[str, set[OutClaim]] = {}
        for ref, claim in steps:
            if ref not in outs:
                order.append(ref)
                outs[ref] = set()
            if claim is not None and claim.key:
                outs[ref].add(claim)
        strong: dict[str, set[str]] = {}
        weak: dict[str, set[str]] = {}
        for ref in order:
            strong[ref] = {ref} | {c.key for c in outs[ref] if not c.nested}
            claimed = strong[ref] | {projection_names.get(ref, ref)}
            weak[ref] = {c.key for c in outs[ref] if c.nested} - claimed
        claimants = Counter(
            name for ref in order for name in strong[ref] | {projection_names.get(ref, ref)} | weak[ref]
        )

        naming = cls()
        clashes: list[NamingClash] = []
        owners: dict[str, tuple[str, bool]] = {}
        for ref in order:
            declared = ref in projection_names
            canonical = projection_names.get(ref, ref)
            uncontested = {name for name in weak[ref] if claimants[name] == 1}
            aliases = frozenset(strong[ref] | uncontested)
            for name in sorted(aliases | {canonical}):
                owner = owners.get(name)
                if owner is None:
                    owners[name] = (ref, declared)
                    naming.by_name[name] = canonical
                    continue
                other_ref, other_declared = owner
                clashes.append(NamingClash(name, other_ref, ref, declared or other_declared))
                if name == ref and other_ref != name:
                    owners[name] = (ref, declared)
                    naming.by_name[name] = canonical
            naming.by_ref[ref] = canonical
            naming.entries[canonical] = StepNameEntry(canonical, aliases)
        return naming, clashes


__all__ = ["NamingClash", "OutClaim", "StepNameEntry", "StepNaming"]
