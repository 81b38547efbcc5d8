"""What the dashboard pages show, computed from store records: run rows, a run's picture data, Blueprint diffs.

Everything here is plain data (JSON-ready dicts); the routes embed it in pages or return it as JSON, and the
browser modules draw it.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ...flow.errors import FlowParseError
from ...flow.nodes import parse_node
from ...operator.hub import OperatorHub
from ...store.records import TERMINAL, LaunchSnapshot, ReplayRow, RunRecord, StepEntry, TaskRecord, TraceEvent, dumps

_NAME_CACHE_SIZE = 4096


class BlueprintNames:
    """The Blueprint id each run was launched from, read once from its launch snapshot and remembered."""

    def __init__(self) -> None:
        self._names: dict[str, str | None] = {}

    def of(self, run: RunRecord) -> str | None:
        if run.run_id in self._names:
            return self._names[run.run_id]
        name = None
        document = launch_document(run)
        if isinstance(document, Mapping):
            value = document.get("id")
            name = value if isinstance(value, str) else None
        if len(self._names) >= _NAME_CACHE_SIZE:
            self._names.clear()
        self._names[run.run_id] = name
        return name


@dataclass(frozen=True, slots=True)
class Launch:
    """What a run page reads from a run's launch snapshot; shared between requests, so never mutated."""

    document: Any
    init: Any
    flow: dict[str, Any] | None
    verdicts: dict[str, list[str]]


@lru_cache(maxsize=16)
def _launch(input_json: str) -> Launch:
    try:
        snapshot = LaunchSnapshot.from_json(input_json)
    except (ValueError, KeyError, TypeError):
        return Launch(None, None, None, {})
    return Launch(snapshot.blueprint, snapshot.init, flow_ir(snapshot.blueprint), verdicts(snapshot.blueprint))


def launch_of(run: RunRecord) -> Launch:
    """The run's launch snapshot as the pages use it: parsed once per snapshot text and remembered."""
    return _launch(run.input_json) if run.input_json is not None else Launch(None, None, None, {})


def launch_document(run: RunRecord) -> Any:
    """The Blueprint JSON a run was launched with, or None when it kept no snapshot."""
    return launch_of(run).document


RESULT_CAP = 64 * 1024
"""Bytes of a run's result a page embeds; a larger one is replaced by a marker (the API has it whole)."""


def run_record(run: RunRecord) -> dict[str, Any]:
    """The run's record for a page: its result left out when larger than `RESULT_CAP`."""
    data = run.to_json()
    if data["result"] is not None:
        size = len(dumps(data["result"]))
        if size > RESULT_CAP:
            data["result"] = {"truncated": True, "size_bytes": size, "see": f"/v1/runs/{run.run_id}"}
    return data


def run_row(run: RunRecord, task: TaskRecord | None, blueprint: str | None, now: float | None = None) -> dict[str, Any]:
    """One line of the runs list: status, Blueprint, goal, age and duration (seconds)."""
    now = time.time() if now is None else now
    end = run.updated_at if run.status in TERMINAL else now
    return {
        "run_id": run.run_id,
        "task_id": run.task_id,
        "status": run.status.value,
        "blueprint": blueprint,
        "goal": task.goal if task is not None else "",
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "age_s": max(0.0, now - run.created_at),
        "duration_s": max(0.0, end - run.created_at),
    }


def flow_ir(document: Any) -> dict[str, Any] | None:
    """The Blueprint's flow in its normalised wire form (parsed and written back), or None when it has none."""
    if not isinstance(document, Mapping) or "flow" not in document:
        return None
    try:
        return parse_node(document["flow"]).to_json()
    except FlowParseError:
        flow = document["flow"]
        return flow if isinstance(flow, dict) else None


def verdicts(document: Any) -> dict[str, list[str]]:
    """Each agent's verdict contract values (`agents[].verdict.values`), for verdict buttons."""
    out: dict[str, list[str]] = {}
    if not isinstance(document, Mapping):
        return out
    for agent in document.get("agents") or []:
        if not isinstance(agent, Mapping):
            continue
        contract = agent.get("verdict")
        if isinstance(contract, Mapping) and isinstance(agent.get("name"), str):
            values = contract.get("values")
            if isinstance(values, list):
                out[agent["name"]] = [str(v) for v in values]
    return out


def step_rows(entries: Sequence[StepEntry], replay: Sequence[ReplayRow], start: int = 0) -> list[dict[str, Any]]:
    """Step entries from index `start` as JSON, each passed or skipped one with its logged value.

    A replay row is stored together with its step entry, so the n-th logged value of a step_ref belongs to
    the n-th passed-or-skipped entry of that step_ref; entries left without a row (the log was cut by a
    rerun) show none.
    """
    values: dict[str, list[ReplayRow]] = {}
    for row in replay:
        values.setdefault(row.step_ref, []).append(row)
    taken: dict[str, int] = {}
    for entry in entries[:start]:
        if entry.status in ("passed", "skipped"):
            taken[entry.step_ref] = taken.get(entry.step_ref, 0) + 1
    out = []
    for entry in entries[start:]:
        item = entry.to_json()
        if entry.status in ("passed", "skipped"):
            rows = values.get(entry.step_ref, [])
            index = taken.get(entry.step_ref, 0)
            taken[entry.step_ref] = index + 1
            if index < len(rows):
                item["value"] = rows[index].value
                item["has_value"] = True
        out.append(item)
    return out


def trace_rows(events: Sequence[TraceEvent]) -> list[dict[str, Any]]:
    return [e.to_json() for e in events]


def pretty(document: Any) -> str:
    """The JSON text the source view and the diff show: sorted keys, two-space indent."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)


def _agents(document: Any) -> dict[str, Any]:
    if not isinstance(document, Mapping):
        return {}
    return {a["name"]: a for a in document.get("agents") or [] if isinstance(a, Mapping) and "name" in a}


def blueprint_diff(old: Any, new: Any) -> dict[str, Any]:
    """A line diff of two versions' JSON plus a summary of agents added, removed and changed."""
    old_agents, new_agents = _agents(old), _agents(new)
    changed = sorted(n for n in old_agents.keys() & new_agents.keys() if old_agents[n] != new_agents[n])
    lines = []
    for line in difflib.unified_diff(pretty(old).splitlines(), pretty(new).splitlines(), "a", "b", n=3, lineterm=""):
        if line.startswith(("---", "+++")):
            continue
        kind = "hunk" if line.startswith("@@") else {"+": "add", "-": "del"}.get(line[:1], "ctx")
        lines.append({"kind": kind, "text": line})
    return {
        "agents_added": sorted(new_agents.keys() - old_agents.keys()),
        "agents_removed": sorted(old_agents.keys() - new_agents.keys()),
        "agents_changed": changed,
        "flow_changed": (old or {}).get("flow") != (new or {}).get("flow") if isinstance(old, Mapping) else True,
        "lines": lines,
    }


def parse_value(text: str) -> Any:
    """An operator's answer: the JSON value when the text parses as JSON, otherwise the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def operator_waits(hub: OperatorHub | None, run_id: str) -> list[dict[str, Any]]:
    """The run's steps waiting on an operator right now: which step, for what, on which seat, the
    holder as the seat names it, and whether its session has a socket (else the request is parked)."""
    if hub is None:
        return []
    seats = hub.seats.get(run_id)
    rows = []
    for pending in hub.pending_for_run(run_id):
        holder = seats.holders.get(pending.slot) if seats is not None and pending.slot else None
        rows.append(
            {
                "step_id": pending.step_id,
                "agent": pending.frame.get("agent"),
                "kind": pending.kind,
                "slot": pending.slot,
                "holder": holder.desc if holder is not None else pending.session.desc,
                "sid": pending.session.sid,
                "connected": pending.session.connected,
            }
        )
    return rows


__all__ = [
    "BlueprintNames",
    "Launch",
    "blueprint_diff",
    "flow_ir",
    "launch_document",
    "launch_of",
    "operator_waits",
    "parse_value",
    "pretty",
    "run_record",
    "run_row",
    "step_rows",
    "trace_rows",
    "verdicts",
]
