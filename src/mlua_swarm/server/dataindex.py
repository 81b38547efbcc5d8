"""The data plane's in-memory index: recent records by out id and the latest per (run, producer)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..ids import RunId

INDEX_SIZE = 10_000
INDEX_BYTES = 64 * 1024 * 1024
"""What the records held may weigh in all, counted as the bodies they arrived in: without it, ten
thousand emits of a 2 MiB body each would keep 20 GiB in memory."""


@dataclass
class DataIndex:
    """Recent data-plane records by out id, and the latest one per (run, producer); the oldest are
    dropped past `size` records or `max_bytes` of them."""

    size: int = INDEX_SIZE
    max_bytes: int = INDEX_BYTES
    by_id: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    latest: dict[tuple[str, str], str] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    held_bytes: int = 0

    def add(self, record: dict[str, Any], weight: int = 0) -> None:
        """Index `record`, which arrived in a body of `weight` bytes."""
        self.by_id[record["out_id"]] = record
        self.latest[(record["run_id"], record["producer_agent"])] = record["out_id"]
        self.weights[record["out_id"]] = weight
        self.held_bytes += weight
        while len(self.by_id) > self.size or (self.held_bytes > self.max_bytes and len(self.by_id) > 1):
            _, old = self.by_id.popitem(last=False)
            self.held_bytes -= self.weights.pop(old["out_id"])
            key = (old["run_id"], old["producer_agent"])
            if self.latest.get(key) == old["out_id"]:
                del self.latest[key]

    def find(self, run_id: RunId, key: str) -> dict[str, Any] | None:
        record = self.by_id.get(key) or self.by_id.get(self.latest.get((run_id, key), ""))
        return record if record is not None and record["run_id"] == run_id else None


__all__ = ["INDEX_BYTES", "INDEX_SIZE", "DataIndex"]
