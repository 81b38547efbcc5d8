"""The occurrence each recorded replay row gets, against the rule it must follow (issue #14: durable step cost).

The journal carries a sequential run's one waiting occurrence outside its table of waiting
occurrences. Whatever the interleaving of lookups and records (identical steps side by side,
steps that miss and never record, records with no lookup before them), every record must get what
the rule gives: the lowest occurrence of its key that a miss handed out and nobody recorded yet,
else the key's next one.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from mlua_swarm.store import MemoryStore, ReplayRow, RunJournal

from .conftest import entry, new_run

KEYS = [("a", "h1"), ("a", "h2"), ("b", "h1")]


class Rule:
    """The occurrence rule, kept as plainly as possible."""

    def __init__(self) -> None:
        self.handed_out: Counter[tuple[str, str]] = Counter()
        self.waiting: dict[tuple[str, str], list[int]] = {}

    def lookup(self, key: tuple[str, str]) -> None:
        heapq.heappush(self.waiting.setdefault(key, []), self.handed_out[key])
        self.handed_out[key] += 1

    def record(self, key: tuple[str, str]) -> int:
        waiting = self.waiting.get(key)
        if waiting:
            return heapq.heappop(waiting)
        self.handed_out[key] += 1
        return self.handed_out[key] - 1


operations = st.lists(st.tuples(st.sampled_from(["lookup", "record"]), st.sampled_from(range(len(KEYS)))), max_size=30)


async def recorded_occurrences(ops: list[tuple[str, int]]) -> tuple[list[int], list[int]]:
    store = MemoryStore()
    run = await new_run(store)
    journal = RunJournal(store, run.run_id)
    rule = Rule()
    got, expected = [], []
    for n, (op, k) in enumerate(ops):
        ref, digest = KEYS[k]
        if op == "lookup":
            assert journal.lookup(ref, digest) is None
            rule.lookup(KEYS[k])
        else:
            row = ReplayRow(ref, digest, n)
            await journal.record_step(entry(ref), row)
            assert row.occurrence is not None
            got.append(row.occurrence)
            expected.append(rule.record(KEYS[k]))
    stored = [(r.step_ref, r.input_hash, r.occurrence) for r in await store.list_replay(run.run_id)]
    assert len(stored) == len(set(stored)), "every stored replay key is unique"
    await store.close()
    return got, expected


@settings(max_examples=300, deadline=None)
@given(operations)
def test_every_record_gets_the_occurrence_the_rule_gives(ops: list[tuple[str, int]]) -> None:
    got, expected = asyncio.run(recorded_occurrences(ops))
    assert got == expected


async def test_a_sequential_run_leaves_nothing_waiting() -> None:
    store = MemoryStore()
    run = await new_run(store)
    journal = RunJournal(store, run.run_id)
    for n in range(5):
        assert journal.lookup("a", "same") is None
        await journal.record_step(entry("a"), ReplayRow("a", "same", n))
    assert journal._unrecorded == {} and journal._carried is None
    assert [r.occurrence for r in await store.list_replay(run.run_id)] == [0, 1, 2, 3, 4]


async def test_a_step_that_never_records_keeps_its_occurrence_from_the_next_ones() -> None:
    store = MemoryStore()
    run = await new_run(store)
    journal = RunJournal(store, run.run_id)
    assert journal.lookup("a", "h") is None  # this step fails: no replay row
    for n in range(3):
        assert journal.lookup("b", f"h{n}") is None
        await journal.record_step(entry("b"), ReplayRow("b", f"h{n}", n))
    assert journal.lookup("a", "h") is None
    await journal.record_step(entry("a"), ReplayRow("a", "h", "later"))
    rows = {(r.step_ref, r.input_hash): r.occurrence for r in await store.list_replay(run.run_id)}
    assert rows[("a", "h")] == 0, "the lowest waiting occurrence of the key, as before"
    assert [rows[("b", f"h{n}")] for n in range(3)] == [0, 0, 0]
