"""Which operator kind each agent of a server run has: upstream's four-tier cascade, and the run's operator id.

The kind decides whether the `main_ai` layer's hooks (`hook_before`/`hook_after`) fire for an agent:
`main_ai` and `composite` do, `automate` does not (`senior_escalation` asks whatever the kind). The
first tier that names a kind wins:

1. the launch's `operator.per_agent_kinds[agent]` (MCP `swarm_run` `operator_kind_overrides`);
2. the launch's `operator.kind` (MCP `operator_kind`), an explicit `automate` included;
3. `operators[].kind` of the seat the agent names in `spec.operator_ref`;
4. the Blueprint's `default_operator_kind`;
5. none: ours is `main_ai` for a run that has an operator (its Blueprint asked for the `main_ai`
   layer, so it is hooked); upstream falls back to `automate`.

The launch's `operator` object is kept in the run's launch snapshot (`options.operator`), so a run
resumed by another server process resolves the same kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.ctx import OperatorKind

KIND_NAMES = tuple(kind.value for kind in OperatorKind)


class BadOperatorRequest(ValueError):
    """A launch's `operator` object that does not fit (the route answers 400 with this message)."""


def _kind(value: Any, where: str) -> OperatorKind:
    if isinstance(value, str) and value in KIND_NAMES:
        return OperatorKind(value)
    raise BadOperatorRequest(f"{where} must be one of {', '.join(KIND_NAMES)}, got {value!r}")


def operator_request(value: Any) -> dict[str, Any] | None:
    """The checked `operator` object of a launch body (`{kind?, id?, per_agent_kinds?}`), or None.

    Upstream's other keys (`spawn_hook_id`, `senior_bridge_id`, `operator_backend_id`) name engine
    registries this server does not have; they are left out, as before.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BadOperatorRequest("operator must be an object {kind?, id?, per_agent_kinds?}")
    checked: dict[str, Any] = {}
    if value.get("kind") is not None:
        checked["kind"] = _kind(value["kind"], "operator.kind").value
    if value.get("id") is not None:
        if not isinstance(value["id"], str) or not value["id"].strip():
            raise BadOperatorRequest("operator.id must be a non-blank string")
        checked["id"] = value["id"]
    per_agent = value.get("per_agent_kinds")
    if per_agent is not None:
        if not isinstance(per_agent, Mapping):
            raise BadOperatorRequest("operator.per_agent_kinds must be an object {agent: kind}")
        checked["per_agent_kinds"] = {
            str(agent): _kind(kind, f"operator.per_agent_kinds.{agent}").value for agent, kind in per_agent.items()
        }
    return checked or None


@dataclass(frozen=True, slots=True)
class RunOperatorSettings:
    """One run's kind tiers (see the module docstring) and the id its operator steps carry."""

    id: str | None = None
    kind: OperatorKind | None = None
    per_agent: Mapping[str, OperatorKind] = field(default_factory=dict)
    seat_kinds: Mapping[str, OperatorKind] = field(default_factory=dict)
    """Agent name → the `kind` of the seat its `spec.operator_ref` names."""
    default_kind: OperatorKind | None = None

    @classmethod
    def of(cls, blueprint: Mapping[str, Any], request: Mapping[str, Any] | None) -> RunOperatorSettings:
        """From the run's Blueprint JSON and its launch's checked `operator` object."""
        request = request or {}
        seats = {
            str(op.get("name")): OperatorKind(op["kind"])
            for op in blueprint.get("operators") or ()
            if isinstance(op, Mapping) and op.get("kind") in KIND_NAMES
        }
        seat_kinds: dict[str, OperatorKind] = {}
        for agent in blueprint.get("agents") or ():
            spec = agent.get("spec") if isinstance(agent, Mapping) else None
            seat = spec.get("operator_ref") if isinstance(spec, Mapping) else None
            if isinstance(seat, str) and seat in seats:
                seat_kinds[str(agent.get("name"))] = seats[seat]
        default = blueprint.get("default_operator_kind")
        return cls(
            id=request.get("id"),
            kind=OperatorKind(request["kind"]) if request.get("kind") else None,
            per_agent={agent: OperatorKind(kind) for agent, kind in (request.get("per_agent_kinds") or {}).items()},
            seat_kinds=seat_kinds,
            default_kind=OperatorKind(default) if default in KIND_NAMES else None,
        )

    def kind_of(self, agent: str) -> OperatorKind:
        """The first tier that names a kind for `agent`; `main_ai` when none does."""
        for kind in (self.per_agent.get(agent), self.kind, self.seat_kinds.get(agent), self.default_kind):
            if kind is not None:
                return kind
        return OperatorKind.MAIN_AI


__all__ = ["KIND_NAMES", "BadOperatorRequest", "RunOperatorSettings", "operator_request"]
