"""Capability tokens: HMAC-SHA256 signed grants checked against a Role x Verb gate.

Wire form (upstream-compatible): URL-safe unpadded base64 of the token's JSON. The signature covers
`agent_id|Role|scopes|issued_at|expire_at|max_uses|nonce` exactly as upstream formats it, so tokens
minted by either side verify on the other given the same secret. Records are keyed by the token's
fingerprint, the SHA-256 hex of its nonce; errors name the fingerprint, never the nonce.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from enum import StrEnum
from typing import Any

from .errors import (
    BadSignature,
    RoleViolation,
    TokenExpired,
    TokenNotFound,
    TokenTaskMismatch,
    TokenUsesExhausted,
)
from .ids import StepId, WorkerHandle, secure_hex


class Role(StrEnum):
    OPERATOR = "operator"
    WORKER = "worker"
    OBSERVER = "observer"
    SENIOR = "senior"

    @property
    def debug_name(self) -> str:
        """The name upstream signs with (Rust's Debug form)."""
        return _DEBUG_NAMES[self]


_DEBUG_NAMES = {role: role.value.capitalize() for role in Role}


class Verb(StrEnum):
    START_TASK = "start_task"
    DISPATCH_ATTEMPT = "dispatch_attempt"
    MINT_WORKER_TOKEN = "mint_worker_token"
    READ_TASK_STATE = "read_task_state"
    CANCEL_TASK = "cancel_task"
    QUERY_SENIOR = "query_senior"
    MARK_PASS = "mark_pass"
    MARK_BLOCKED = "mark_blocked"
    ATTACH_SESSION = "attach_session"
    DETACH_SESSION = "detach_session"
    HEARTBEAT = "heartbeat"
    POLL_TASK = "poll_task"
    FETCH_PROMPT = "fetch_prompt"
    FETCH_DATA = "fetch_data"
    POST_RESULT = "post_result"
    VERIFY_TOKEN = "verify_token"
    EMIT_OUTPUT = "emit_output"
    SUBSCRIBE_EVENTS = "subscribe_events"
    READ_TRACE = "read_trace"
    ANSWER_QUERY = "answer_query"
    OVERRIDE_VERDICT = "override_verdict"
    PAUSE_LOOP = "pause_loop"
    RESUME_LOOP = "resume_loop"
    INJECT_DIRECTIVE = "inject_directive"


V = Verb
# fmt: off
GATE: dict[Role, frozenset[Verb]] = {
    Role.OPERATOR: frozenset(
        {
            V.START_TASK, V.DISPATCH_ATTEMPT, V.MINT_WORKER_TOKEN, V.READ_TASK_STATE, V.CANCEL_TASK,
            V.QUERY_SENIOR, V.MARK_PASS, V.MARK_BLOCKED, V.ATTACH_SESSION, V.DETACH_SESSION,
            V.HEARTBEAT, V.POLL_TASK,
        }
    ),
    Role.WORKER: frozenset(
        {
            V.FETCH_PROMPT, V.FETCH_DATA, V.POST_RESULT, V.VERIFY_TOKEN, V.EMIT_OUTPUT,
            V.START_TASK, V.DISPATCH_ATTEMPT, V.READ_TASK_STATE, V.POLL_TASK, V.CANCEL_TASK,
        }
    ),
    Role.OBSERVER: frozenset({V.SUBSCRIBE_EVENTS, V.READ_TRACE, V.READ_TASK_STATE}),
    Role.SENIOR: frozenset(
        {V.ANSWER_QUERY, V.OVERRIDE_VERDICT, V.PAUSE_LOOP, V.RESUME_LOOP, V.INJECT_DIRECTIVE}
    ),
}
# fmt: on


def role_allows(role: Role, verb: Verb) -> bool:
    return verb in GATE[role]


class TokenDecodeError(ValueError):
    """The transport form is not base64 of a token's JSON."""


class CapToken:
    """A signed grant. Treat it as immutable: the engine trusts the signature of objects it minted."""

    __slots__ = ("agent_id", "expire_at", "fingerprint", "issued_at", "max_uses", "nonce", "role", "scopes", "sig_hex")

    def __init__(
        self,
        agent_id: str,
        role: Role,
        scopes: tuple[str, ...],
        issued_at: int,
        expire_at: int,
        max_uses: int | None,
        nonce: str,
        sig_hex: str,
    ) -> None:
        self.agent_id = agent_id
        self.role = role
        self.scopes = scopes
        self.issued_at = issued_at
        self.expire_at = expire_at
        self.max_uses = max_uses
        self.nonce = nonce
        self.sig_hex = sig_hex
        self.fingerprint = hashlib.sha256(nonce.encode()).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CapToken) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"CapToken(role={self.role.value}, agent_id={self.agent_id!r}, fingerprint={self.fingerprint[:12]}…)"

    def signing_input(self) -> bytes:
        return _signing_input(
            self.agent_id, self.role, self.scopes, self.issued_at, self.expire_at, self.max_uses, self.nonce
        )

    def is_expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expire_at

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "role": self.role.value,
            "scopes": list(self.scopes),
            "issued_at": self.issued_at,
            "expire_at": self.expire_at,
            "max_uses": self.max_uses,
            "nonce": self.nonce,
            "sig_hex": self.sig_hex,
        }

    def encode(self) -> str:
        raw = json.dumps(self.to_json(), separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: str) -> CapToken:
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TokenDecodeError(f"token is not URL-safe base64: {exc}") from None
        try:
            obj = json.loads(raw)
            return cls(
                agent_id=str(obj["agent_id"]),
                role=Role(obj["role"]),
                scopes=tuple(str(s) for s in obj["scopes"]),
                issued_at=int(obj["issued_at"]),
                expire_at=int(obj["expire_at"]),
                max_uses=None if obj.get("max_uses") is None else int(obj["max_uses"]),
                nonce=str(obj["nonce"]),
                sig_hex=str(obj["sig_hex"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenDecodeError(f"token JSON has the wrong shape: {exc}") from None


def _signing_input(
    agent_id: str,
    role: Role,
    scopes: tuple[str, ...],
    issued_at: int,
    expire_at: int,
    max_uses: int | None,
    nonce: str,
) -> bytes:
    uses = "None" if max_uses is None else f"Some({max_uses})"
    return f"{agent_id}|{role.debug_name}|{','.join(scopes)}|{issued_at}|{expire_at}|{uses}|{nonce}".encode()


class TokenRecord:
    """Server-side state of a minted token: remaining uses, revocation and the step it is bound to."""

    __slots__ = ("handle", "revoked", "step_id", "token", "uses_left")

    def __init__(self, token: CapToken, step_id: StepId | None) -> None:
        self.token = token
        self.uses_left = token.max_uses
        self.revoked = False
        self.step_id = step_id
        self.handle: WorkerHandle | None = None

    def consume(self) -> bool:
        if self.revoked:
            return False
        if self.uses_left is None:
            return True
        if self.uses_left <= 0:
            return False
        self.uses_left -= 1
        return True


class TokenBook:
    """Mints, verifies and forgets tokens and their `wh-` handles."""

    __slots__ = ("_handles", "_records", "_secret")

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._records: dict[str, TokenRecord] = {}
        self._handles: dict[str, str] = {}

    def sign(self, message: bytes) -> str:
        return hmac.digest(self._secret, message, "sha256").hex()

    def mint(
        self,
        agent_id: str,
        role: Role,
        ttl_secs: int,
        *,
        scopes: tuple[str, ...] = ("*",),
        max_uses: int | None = None,
        step_id: StepId | None = None,
        with_handle: bool = False,
    ) -> CapToken:
        now = int(time.time())
        nonce = secure_hex(16)
        expire = now + ttl_secs
        sig = self.sign(_signing_input(agent_id, role, scopes, now, expire, max_uses, nonce))
        token = CapToken(agent_id, role, scopes, now, expire, max_uses, nonce, sig)
        record = TokenRecord(token, step_id)
        self._records[token.fingerprint] = record
        if with_handle:
            handle = WorkerHandle.new()
            record.handle = handle
            self._handles[handle] = token.fingerprint
        return token

    def verify(self, token: CapToken, verb: Verb, step_id: StepId | None = None) -> TokenRecord:
        """Signature, expiry (not for operators), gate, record, uses, and the step binding for workers."""
        fp = token.fingerprint
        record = self._records.get(fp)
        # An object we minted ourselves is immutable: its signature was right when we made it.
        if record is None or record.token is not token:
            expected = self.sign(token.signing_input())
            if not hmac.compare_digest(expected, token.sig_hex):
                raise BadSignature(fp)
        if token.role is not Role.OPERATOR and time.time() >= token.expire_at:
            raise TokenExpired(fp)
        if verb not in GATE[token.role]:
            raise RoleViolation(token.role.value, verb.value)
        if record is None:
            raise TokenNotFound(fp)
        if not record.consume():
            raise TokenUsesExhausted(fp)
        if step_id is not None and token.role is Role.WORKER:
            if record.step_id is None:
                raise TokenNotFound(fp)
            if record.step_id != step_id:
                raise TokenTaskMismatch(record.step_id, step_id)
        return record

    def resolve_handle(self, handle: str) -> TokenRecord:
        """The live record behind a `wh-` handle; it expires with its token."""
        fp = self._handles.get(handle)
        record = None if fp is None else self._records.get(fp)
        if record is None:
            raise TokenNotFound(f"handle={handle}")
        if record.token.is_expired():
            raise TokenExpired(record.token.fingerprint)
        return record

    def remint(self, token: CapToken, ttl_secs: int, *, with_handle: bool = False) -> CapToken:
        """A fresh worker token for the same step (late delivery); the old one stays valid."""
        fp = token.fingerprint
        if not hmac.compare_digest(self.sign(token.signing_input()), token.sig_hex):
            raise BadSignature(fp)
        if token.role is not Role.WORKER:
            raise RoleViolation(token.role.value, Verb.MINT_WORKER_TOKEN.value)
        record = self._records.get(fp)
        if record is None or record.revoked or record.step_id is None:
            raise TokenNotFound(fp)
        return self.mint(
            token.agent_id,
            Role.WORKER,
            ttl_secs,
            scopes=token.scopes,
            max_uses=record.uses_left,
            step_id=record.step_id,
            with_handle=with_handle,
        )

    def handle_of(self, token: CapToken) -> WorkerHandle | None:
        record = self._records.get(token.fingerprint)
        return None if record is None else record.handle

    def forget(self, token: CapToken) -> None:
        """Drop a token's record and handle: any later use is refused."""
        record = self._records.pop(token.fingerprint, None)
        if record is not None and record.handle is not None:
            self._handles.pop(record.handle, None)

    def __len__(self) -> int:
        return len(self._records)


__all__ = [
    "GATE",
    "CapToken",
    "Role",
    "TokenBook",
    "TokenDecodeError",
    "TokenRecord",
    "Verb",
    "role_allows",
]
