"""Capability tokens: HMAC-SHA256 signed grants checked against a Role x Verb gate.

Wire form (upstream-compatible): URL-safe unpadded base64 of the token's JSON. The signature covers
`agent_id|Role|scopes|issued_at|expire_at|max_uses|nonce` exactly as upstream formats it, so tokens
minted by either side verify on the other given the same secret. The book keys its records by nonce;
errors name the token's fingerprint (the SHA-256 hex of its nonce), never the nonce.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable
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
_OPERATOR, _WORKER = Role.OPERATOR, Role.WORKER  # read on every check: a global is cheaper than an Enum member


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


MAX_TOKEN_TEXT = 16_384
"""The longest transport form `CapToken.decode` reads; real tokens are a few hundred characters."""


class CapToken:
    """A signed grant; immutable, and verified against its signature on every use.

    A token the book mints is signed when its signature is first read (`sig_hex`, `encode`): an
    in-process worker that never hands its token on never pays for the HMAC. The signature always
    covers the fields as minted. The signed fields live in one tuple behind read-only properties,
    so not even `object.__setattr__` can change one of them in place; a token whose private tuple or
    signature was swapped behind them fails its signature check.
    """

    __slots__ = ("_fields", "_fp", "_sig", "_signer")

    _fields: tuple[str, Role, tuple[str, ...], int, int, int | None, str]
    _fp: str | None
    _sig: str | None
    _signer: Callable[[], str] | None

    def __init__(
        self,
        agent_id: str,
        role: Role,
        scopes: tuple[str, ...],
        issued_at: int,
        expire_at: int,
        max_uses: int | None,
        nonce: str,
        sig_hex: str | None,
        *,
        signer: Callable[[], str] | None = None,
    ) -> None:
        if sig_hex is None and signer is None:
            raise ValueError("a token needs its signature or a signer")
        self._fields = (agent_id, role, scopes, issued_at, expire_at, max_uses, nonce)
        self._fp = None
        self._sig = sig_hex
        self._signer = signer

    @property
    def agent_id(self) -> str:
        return self._fields[0]

    @property
    def role(self) -> Role:
        return self._fields[1]

    @property
    def scopes(self) -> tuple[str, ...]:
        return self._fields[2]

    @property
    def issued_at(self) -> int:
        return self._fields[3]

    @property
    def expire_at(self) -> int:
        return self._fields[4]

    @property
    def max_uses(self) -> int | None:
        return self._fields[5]

    @property
    def nonce(self) -> str:
        return self._fields[6]

    @property
    def fingerprint(self) -> str:
        """The SHA-256 hex of the nonce: names the token in errors and ledgers without its nonce."""
        fp = self._fp
        if fp is None:
            fp = self._fp = hashlib.sha256(self._fields[6].encode()).hexdigest()
        return fp

    @property
    def sig_hex(self) -> str:
        """The HMAC-SHA256 hex signature (computed on first read for a freshly minted token)."""
        sig = self._sig
        if sig is None:
            assert self._signer is not None
            sig = self._sig = self._signer()
        return sig

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CapToken) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"CapToken(role={self.role.value}, agent_id={self.agent_id!r}, fingerprint={self.fingerprint[:12]}…)"

    def signing_input(self) -> bytes:
        return _signing_input(*self._fields)

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
        """Parse the transport form; anything but a well-typed token raises `TokenDecodeError` only."""
        if not isinstance(text, str):
            raise TokenDecodeError(f"token must be text, got {type(text).__name__}")
        if len(text) > MAX_TOKEN_TEXT:
            raise TokenDecodeError(f"token text is too long ({len(text)} > {MAX_TOKEN_TEXT} characters)")
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TokenDecodeError(f"token is not URL-safe base64: {exc}") from None
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise TokenDecodeError(f"token is not JSON: {type(exc).__name__}") from None
        if not isinstance(obj, dict):
            raise TokenDecodeError("token JSON has the wrong shape: not an object")
        try:
            scopes = obj["scopes"]
            if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                raise TypeError("scopes must be a list of strings")
            max_uses = obj.get("max_uses")
            return cls(
                agent_id=_field(obj, "agent_id", str),
                role=Role(_field(obj, "role", str)),
                scopes=tuple(scopes),
                issued_at=_field(obj, "issued_at", int),
                expire_at=_field(obj, "expire_at", int),
                max_uses=None if max_uses is None else _field(obj, "max_uses", int),
                nonce=_field(obj, "nonce", str),
                sig_hex=_field(obj, "sig_hex", str),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenDecodeError(f"token JSON has the wrong shape: {exc}") from None


def _field(obj: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = obj[key]
    if type(value) is not kind:
        raise TypeError(f"{key} must be {kind.__name__}, got {type(value).__name__}")
    return value


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

    __slots__ = ("_sign", "attempt_bound", "handle", "minted", "revoked", "sig", "step_id", "token", "uses_left")

    token: CapToken

    def __init__(
        self,
        minted: tuple[Any, ...],
        step_id: StepId | None,
        sign: Callable[[bytes], str],
        *,
        attempt_bound: bool = False,
    ) -> None:
        self.minted = minted
        """The token's fields as minted: the same object presented unchanged needs no new HMAC."""
        self.sig: str | None = None
        """The signature of `minted` once computed (by `signature`), the very string the token holds."""
        self._sign = sign
        # Valid while its attempt runs, whatever the clock says; the engine forgets it when the attempt ends.
        self.attempt_bound = attempt_bound
        self.uses_left: int | None = minted[5]
        self.revoked = False
        self.step_id = step_id
        self.handle: WorkerHandle | None = None

    def signature(self) -> str:
        """Sign the fields as minted (a token edited in place does not get a signature of its edits)."""
        if self.sig is None:
            self.sig = self._sign(_signing_input(*self.minted))
        return self.sig

    def consume(self) -> bool:
        if self.revoked:
            return False
        if self.uses_left is None:
            return True
        if self.uses_left <= 0:
            return False
        self.uses_left -= 1
        return True


def _signer(secret: bytes) -> Callable[[bytes], str]:
    def sign(message: bytes) -> str:
        return hmac.digest(secret, message, "sha256").hex()

    return sign


class TokenBook:
    """Mints, verifies and forgets tokens and their `wh-` handles."""

    __slots__ = ("_handles", "_records", "sign")

    def __init__(self, secret: bytes) -> None:
        self._records: dict[str, TokenRecord] = {}
        self._handles: dict[str, str] = {}
        self.sign = _signer(secret)
        """The HMAC-SHA256 hex of a message under the book's secret. Every record signs through it;
        it holds the secret, not the book, so a book and its records do not hold each other (a
        finished run's book goes by reference counting, not by the cyclic garbage collector)."""

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
        attempt_bound: bool = False,
    ) -> CapToken:
        return self.issue(
            agent_id,
            role,
            ttl_secs,
            scopes=scopes,
            max_uses=max_uses,
            step_id=step_id,
            with_handle=with_handle,
            attempt_bound=attempt_bound,
        ).token

    def issue(
        self,
        agent_id: str,
        role: Role,
        ttl_secs: int,
        *,
        scopes: tuple[str, ...] = ("*",),
        max_uses: int | None = None,
        step_id: StepId | None = None,
        with_handle: bool = False,
        attempt_bound: bool = False,
    ) -> TokenRecord:
        """`mint`, handing back the new token's record (`.token`, `.handle`) instead of the token."""
        now = int(time.time())
        if with_handle:
            # One draw from the OS pool for both secrets: the nonce's 16 bytes, then the handle's 4.
            drawn = secure_hex(20)
            nonce = drawn[:32]
        else:
            nonce = secure_hex(16)
        # tuple(scopes): a caller's list cannot change the token later
        minted = (agent_id, role, tuple(scopes), now, now + ttl_secs, max_uses, nonce)
        record = TokenRecord(minted, step_id, self.sign, attempt_bound=attempt_bound)
        token = record.token = object.__new__(CapToken)  # the book's own token over `minted`, signed on first read
        token._fields = minted
        token._fp = token._sig = None
        token._signer = record.signature
        self._records[nonce] = record
        if with_handle:
            handle = record.handle = WorkerHandle.of_hex(drawn[32:])
            self._handles[handle] = nonce
        return record

    def verify(self, token: CapToken, verb: Verb, step_id: StepId | None = None) -> TokenRecord:
        """Signature, expiry (not for operators), gate, record, uses, and the step binding for workers."""
        fields = token._fields
        record = self._records.get(fields[6])
        # The very object the book minted, its fields and signature as minted, needs no HMAC.
        if (
            record is None or record.token is not token or fields is not record.minted or token._sig is not record.sig
        ) and not hmac.compare_digest(self.sign(_signing_input(*fields)), token.sig_hex):
            raise BadSignature(token.fingerprint)
        role = fields[1]
        # A live attempt's own token outlives the clock: the engine forgets it when the attempt ends.
        if (
            role is not _OPERATOR
            and (record is None or not record.attempt_bound or record.revoked)
            and time.time() >= fields[4]
        ):
            raise TokenExpired(token.fingerprint)
        if verb not in GATE[role]:
            raise RoleViolation(role.value, verb.value)
        if record is None:
            raise TokenNotFound(token.fingerprint)
        if record.revoked or (record.uses_left is not None and not record.consume()):
            raise TokenUsesExhausted(token.fingerprint)
        if step_id is not None and role is _WORKER:
            if record.step_id is None:
                raise TokenNotFound(token.fingerprint)
            if record.step_id != step_id:
                raise TokenTaskMismatch(record.step_id, step_id)
        return record

    def resolve_handle(self, handle: str) -> TokenRecord:
        """The live record behind a `wh-` handle; it expires with its token."""
        nonce = self._handles.get(handle)
        record = None if nonce is None else self._records.get(nonce)
        if record is None:
            raise TokenNotFound(f"handle={handle}")
        if not record.attempt_bound and record.token.is_expired():
            raise TokenExpired(record.token.fingerprint)
        return record

    def remint(self, token: CapToken, ttl_secs: int, *, with_handle: bool = False) -> CapToken:
        """A fresh worker token for the same step (late delivery); the old one stays valid."""
        fp = token.fingerprint
        if not hmac.compare_digest(self.sign(token.signing_input()), token.sig_hex):
            raise BadSignature(fp)
        if token.role is not Role.WORKER:
            raise RoleViolation(token.role.value, Verb.MINT_WORKER_TOKEN.value)
        record = self._records.get(token.nonce)
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
        record = self._records.get(token.nonce)
        return None if record is None else record.handle

    def forget(self, token: CapToken) -> None:
        """Drop a token's record and handle: any later use is refused.

        The record lets go of its token (the token's signer still reads the record), so the two do not
        hold each other: a reference cycle per step would leave every step's objects to the cyclic GC."""
        record = self._records.pop(token._fields[6], None)
        if record is not None:
            if record.handle is not None:
                self._handles.pop(record.handle, None)
            del record.token

    def __len__(self) -> int:
        return len(self._records)


__all__ = [
    "GATE",
    "MAX_TOKEN_TEXT",
    "CapToken",
    "Role",
    "TokenBook",
    "TokenDecodeError",
    "TokenRecord",
    "Verb",
    "role_allows",
]
