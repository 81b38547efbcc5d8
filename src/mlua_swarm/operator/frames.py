"""The WebSocket operator frames (`GET /v1/operators/{sid}/ws`), in upstream's JSON shapes.

Every frame is a JSON text message tagged by `type`. The server sends `ask`, `hook_before`,
`hook_after` and `spawn` (upstream's four) plus our `cancel`; the operator replies with `answer`,
`hook_ack`, `spawn_ack` or `spawn_halt`, echoing the request's `req_id`. Unknown keys are ignored
on the way in, and a frame that does not parse is dropped, as upstream does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..jsontext import loads_strict

HOOK_PROMPT_CAP = 32 * 1024
"""Characters of a step's prompt a `hook_before` frame carries (the worker still receives all of it)."""


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    def to_json(self) -> dict[str, Any]:
        """The wire form: optional fields (`parent_req_id`, `worker_handle`, `prompt`…) are left out when unset."""
        return self.model_dump(mode="json", exclude_none=True, include=None) | _nullable(self)


def _nullable(frame: _Frame) -> dict[str, Any]:
    """Fields whose `null` is part of the wire shape (a reply value, a reason, a step result)."""
    keep = {"value", "result", "question", "reason", "error", "stats"}
    return {k: getattr(frame, k) for k in keep & set(type(frame).model_fields) if getattr(frame, k) is None}


class WorkerBinding(BaseModel):
    """The worker binding an `operator` agent declares (`runner.variant`/`tools`, or `profile.worker_binding`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    variant: str
    tools: list[str] = Field(default_factory=list)
    request_digest: str | None = None
    requested_model: str | None = None


# -- server → operator ---------------------------------------------------------------------------------


class AskFrame(_Frame):
    """A question for the operator (senior escalation); expects an `answer`."""

    type: Literal["ask"] = "ask"
    req_id: str
    parent_req_id: str | None = None
    task_id: str
    question: Any = None


class HookBeforeFrame(_Frame):
    """A gate before a spawn (main AI hook); expects a `hook_ack`, whose `ok=false` refuses the spawn.

    Beyond upstream's fields it carries what the operator decides on: `prompt`, the step's prompt as
    its worker will receive it (cut to `HOOK_PROMPT_CAP` characters, `prompt_truncated` then true and
    `prompt_chars` the whole length), and `context`, the step's context view (run id, project root,
    work dir, task metadata, earlier steps), the same `context` a worker fetches with its prompt.
    """

    type: Literal["hook_before"] = "hook_before"
    req_id: str
    parent_req_id: str | None = None
    task_id: str
    agent: str
    attempt: int
    prompt: str | None = None
    prompt_truncated: bool | None = None
    prompt_chars: int | None = None
    context: dict[str, Any] | None = None


class HookAfterFrame(_Frame):
    """What a spawn produced; fire-and-forget (dropped while the operator is away)."""

    type: Literal["hook_after"] = "hook_after"
    req_id: str
    parent_req_id: str | None = None
    task_id: str
    agent: str
    attempt: int
    result: Any = None


class SpawnFrame(_Frame):
    """Execute one step: hand `worker_handle` (or `capability_token`) to a sub-agent, then `spawn_ack`.

    The prompt is not in the frame: the sub-agent fetches it from `GET /v1/worker/prompt` and
    submits over `POST /v1/worker/submit`; `directive` says so in words for an AI operator.
    """

    type: Literal["spawn"] = "spawn"
    req_id: str
    parent_req_id: str | None = None
    task_id: str
    agent: str
    attempt: int
    capability_token: str
    worker_handle: str | None = None
    worker: WorkerBinding | None = None
    directive: str


class CancelFrame(_Frame):
    """Ours: the step behind `req_id` was cancelled (or moved to another operator); stop working on it."""

    type: Literal["cancel"] = "cancel"
    req_id: str
    task_id: str
    reason: str


ServerFrame = Annotated[
    AskFrame | HookBeforeFrame | HookAfterFrame | SpawnFrame | CancelFrame, Field(discriminator="type")
]


# -- operator → server ---------------------------------------------------------------------------------


class AnswerFrame(_Frame):
    type: Literal["answer"] = "answer"
    req_id: str
    value: Any = None


class HookAckFrame(_Frame):
    type: Literal["hook_ack"] = "hook_ack"
    req_id: str
    ok: bool
    reason: str | None = None


class SpawnAckFrame(_Frame):
    """The spawn is over. A sub-agent's HTTP submit is canonical; without one, `value`/`ok` become the Final."""

    type: Literal["spawn_ack"] = "spawn_ack"
    req_id: str
    value: Any = None
    ok: bool = True
    error: str | None = None
    stats: dict[str, Any] | None = None


class SpawnHaltFrame(_Frame):
    """A controlled stop of one spawn: the step passes with `{halted: true, reason, value}`."""

    type: Literal["spawn_halt"] = "spawn_halt"
    req_id: str
    value: Any = None
    reason: str | None = None


ClientFrame = Annotated[AnswerFrame | HookAckFrame | SpawnAckFrame | SpawnHaltFrame, Field(discriminator="type")]

_SERVER: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame)
_CLIENT: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


def parse_client_frame(text: str | bytes) -> ClientFrame | None:
    """An operator's reply, or None for anything that does not parse (it is ignored).

    The text is read as strict JSON first: `NaN` or `Infinity` in a reply's value would become a
    step value that no JSON answer (the run, its trace, its events) could be written with.
    """
    try:
        return _CLIENT.validate_python(loads_strict(text))
    except ValueError:
        return None


def parse_server_frame(text: str | bytes) -> ServerFrame | None:
    """A server request, or None for a frame this client does not understand."""
    try:
        return _SERVER.validate_json(text)
    except ValidationError:
        return None


def halt_marker(frame: SpawnHaltFrame) -> dict[str, Any]:
    """The step value of a `spawn_halt`."""
    return {"halted": True, "reason": frame.reason, "value": frame.value}


__all__ = [
    "HOOK_PROMPT_CAP",
    "AnswerFrame",
    "AskFrame",
    "CancelFrame",
    "ClientFrame",
    "HookAckFrame",
    "HookAfterFrame",
    "HookBeforeFrame",
    "ServerFrame",
    "SpawnAckFrame",
    "SpawnFrame",
    "SpawnHaltFrame",
    "WorkerBinding",
    "halt_marker",
    "parse_client_frame",
    "parse_server_frame",
]
