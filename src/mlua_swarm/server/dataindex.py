"""The data plane's in-memory index: recent records by out id and the latest per (run, producer)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..ids import RunId

INDEX_SIZE = 10_000


@dataclass
class DataIndex:
    """Recent data-plane records by out id, and the latest one per (run, producer)."""

    size: int = INDEX_SIZE
    by_id: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    latest: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, record: dict[str, Any]) -> None:
        self.by_id[record["out_id"]] = record
        self.latest[(record["run_id"], record["producer_agent"])] = record["out_id"]
        while len(self.by_id) > self.size:
            _, old = self.by_id.popitem(last=False)
            key = (old["run_id"], old["producer_agent"])
            if self.latest.get(key) == old["out_id"]:
                del self.latest[key]

    def find(self, run_id: RunId, key: str) -> dict[str, Any] | None:
        record = self.by_id.get(key) or self.by_id.get(self.latest.get((run_id, key), ""))
        return record if record is not None and record["run_id"] == run_id else None


__all__ = ["INDEX_SIZE", "DataIndex"]
