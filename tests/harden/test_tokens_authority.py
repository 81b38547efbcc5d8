"""Slice A: worker tokens live as long as their attempt, dispatch honours the step binding, tokens are
always verified, and hostile token text raises only the decode error."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from mlua_swarm.cancel import CancellationToken
from mlua_swarm.core.config import EngineConfig
from mlua_swarm.core.ctx import Ctx
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.errors import BadSignature, DispatchFailed, EngineError, TokenTaskMismatch
from mlua_swarm.ids import StepId, WorkerId
from mlua_swarm.tokens import CapToken, Role, TokenBook, TokenDecodeError, Verb
from mlua_swarm.worker import MiddlewareWorker, Worker, WorkerJoinHandler
from mlua_swarm.worker.adapter import InProcSpawner, SpawnerAdapter, WorkerInvocation
from mlua_swarm.worker.output import Final, Inline

from ..conftest import run_one


async def test_an_attempt_outliving_the_token_ttl_still_delivers_its_final() -> None:
    # A TTL of zero seconds stands for "the attempt ran longer than the TTL".
    engine = Engine(EngineConfig(worker_token_ttl_secs=0))
    op = engine.attach("op")

    async def slow(inv: WorkerInvocation) -> Any:
        return {"done": inv.input}

    outcome = await run_one(engine, op, InProcSpawner().register("slow", slow), TaskSpec("slow", 7))
    assert (outcome.kind, outcome.value) == ("pass", {"done": 7})


async def test_the_worker_token_dies_with_its_attempt(engine: Engine, op: Any) -> None:
    kept: list[CapToken] = []

    async def keep(inv: WorkerInvocation) -> str:
        kept.append(inv.token)
        return "ok"

    step = await engine.start_task(op, TaskSpec("k"))
    await engine.dispatch_attempt(op, step, InProcSpawner().register("k", keep))
    with pytest.raises(Exception, match="token not found"):
        await engine.fetch_prompt(kept[0], step)


class ForgedFinal(SpawnerAdapter):
    """A worker whose Final arrives under a token the engine never minted."""

    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
        forged = TokenBook(b"x" * 32).mint(token.agent_id, Role.WORKER, 60, step_id=task_id)

        async def run() -> None:
            with contextlib.suppress(EngineError):
                await engine.submit_output(forged, task_id, attempt, Final(Inline("v")))

        completion = asyncio.ensure_future(run())
        return MiddlewareWorker(WorkerJoinHandler(WorkerId.new(), CancellationToken(), completion))


async def test_a_refused_final_says_why(engine: Engine, op: Any) -> None:
    step = await engine.start_task(op, TaskSpec("f"))
    refused = r"no Final in output_tail \(a Final was refused: token signature does not verify"
    with pytest.raises(DispatchFailed, match=refused):
        await engine.dispatch_attempt(op, step, ForgedFinal())


async def test_a_worker_token_cannot_dispatch_another_pending_step(engine: Engine, op: Any) -> None:
    victim = await engine.start_task(op, TaskSpec("victim", "real work"))
    seen: list[BaseException] = []

    async def attacker(inv: WorkerInvocation) -> str:
        evil = InProcSpawner().register("victim", lambda _inv: "attacker's value")
        try:
            await engine.dispatch_attempt(inv.token, victim, evil)
        except Exception as exc:
            seen.append(exc)
        return "innocent"

    await run_one(engine, op, InProcSpawner().register("attacker", attacker), TaskSpec("attacker"))
    assert len(seen) == 1 and isinstance(seen[0], TokenTaskMismatch)
    assert engine.read_task_state(op, victim).status == "pending"


async def test_a_worker_token_may_dispatch_the_steps_it_started(engine: Engine, op: Any) -> None:
    async def parent(inv: WorkerInvocation) -> Any:
        child = await engine.start_task(inv.token, TaskSpec("child", 2))
        outcome = await engine.dispatch_attempt(inv.token, child, InProcSpawner().register("child", lambda i: 40))
        return outcome.value + inv.input

    outcome = await run_one(engine, op, InProcSpawner().register("parent", parent), TaskSpec("parent", 2))
    assert outcome.value == 42


def test_a_token_edited_in_place_is_refused() -> None:
    book = TokenBook(b"k" * 32)
    token = book.mint("w", Role.OBSERVER, 60)
    with pytest.raises(AttributeError):
        token.role = Role.OPERATOR  # type: ignore[misc]
    with pytest.raises(AttributeError):
        object.__setattr__(token, "role", Role.OPERATOR)  # a read-only property, even behind the guard
    # Swapping the fields tuple behind the guard is possible; the signature check catches it.
    forged = (token.agent_id, Role.OPERATOR, token.scopes, token.issued_at, token.expire_at + 10**6, None, token.nonce)
    object.__setattr__(token, "_fields", forged)
    assert token.role is Role.OPERATOR
    with pytest.raises(BadSignature):
        book.verify(token, Verb.START_TASK)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"agent_id":"a","role":"worker","scopes":[],"issued_at":1e999,"expire_at":1,"nonce":"n","sig_hex":"s"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"agent_id":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"agent_id":"a","role":"worker","scopes":"abc","issued_at":true,"expire_at":1,"nonce":"n","sig_hex":"s"}',
        b"\xff\xfe",
    ],
)
def test_hostile_token_text_raises_only_the_decode_error(payload: bytes) -> None:
    text = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    with pytest.raises(TokenDecodeError):
        CapToken.decode(text)


def test_overlong_token_text_is_refused_before_decoding() -> None:
    with pytest.raises(TokenDecodeError, match="long"):
        CapToken.decode("A" * 10_000_000)


_json = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | hs.floats() | hs.text(max_size=8),
    lambda children: hs.lists(children, max_size=4) | hs.dictionaries(hs.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
_FIELDS = ("agent_id", "role", "scopes", "issued_at", "expire_at", "max_uses", "nonce", "sig_hex")


@settings(max_examples=300, deadline=None)
@given(hs.dictionaries(hs.sampled_from(_FIELDS), _json))
def test_fuzzed_token_json_raises_only_the_decode_error(obj: dict[str, Any]) -> None:
    text = base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    with contextlib.suppress(TokenDecodeError):
        CapToken.decode(text)


@settings(max_examples=300, deadline=None)
@given(hs.text(max_size=200) | hs.binary(max_size=200).map(lambda b: base64.urlsafe_b64encode(b).decode()))
def test_fuzzed_token_text_raises_only_the_decode_error(text: str) -> None:
    with contextlib.suppress(TokenDecodeError):
        CapToken.decode(text)
