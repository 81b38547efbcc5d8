import base64
import json
import time

import pytest

from mlua_swarm.errors import (
    BadSignature,
    RoleViolation,
    TokenExpired,
    TokenNotFound,
    TokenTaskMismatch,
    TokenUsesExhausted,
)
from mlua_swarm.ids import StepId
from mlua_swarm.tokens import CapToken, Role, TokenBook, TokenDecodeError, Verb, role_allows


@pytest.fixture
def book() -> TokenBook:
    return TokenBook(b"k" * 32)


def test_encode_is_urlsafe_unpadded_base64_of_json_and_round_trips(book: TokenBook) -> None:
    token = book.mint("op", Role.OPERATOR, 60)
    text = token.encode()
    assert "=" not in text and "+" not in text and "/" not in text
    obj = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    assert obj["role"] == "operator" and obj["agent_id"] == "op"
    again = CapToken.decode(text)
    assert again == token
    assert book.verify(again, Verb.START_TASK).token is token


def test_decode_errors_are_specific() -> None:
    with pytest.raises(TokenDecodeError, match="base64"):
        CapToken.decode("!!!!")
    with pytest.raises(TokenDecodeError, match="shape"):
        CapToken.decode(base64.urlsafe_b64encode(b'{"a": 1}').decode())


def test_signature_matches_upstream_signing_input(book: TokenBook) -> None:
    token = book.mint("worker-of-ST-1", Role.WORKER, 60, max_uses=3)
    expected = f"worker-of-ST-1|Worker|*|{token.issued_at}|{token.expire_at}|Some(3)|{token.nonce}"
    assert token.signing_input().decode() == expected
    assert token.sig_hex == book.sign(expected.encode())


def test_forged_token_is_refused_with_fingerprint_not_nonce(book: TokenBook) -> None:
    token = book.mint("op", Role.OPERATOR, 60)
    forged = CapToken(
        "someone-else", token.role, token.scopes, token.issued_at, token.expire_at, None, token.nonce, token.sig_hex
    )
    with pytest.raises(BadSignature) as info:
        book.verify(forged, Verb.START_TASK)
    assert token.fingerprint in str(info.value)
    assert token.nonce not in str(info.value)


def test_unknown_token_names_fingerprint_not_nonce(book: TokenBook) -> None:
    other = TokenBook(b"k" * 32).mint("op", Role.OPERATOR, 60)
    with pytest.raises(TokenNotFound) as info:
        book.verify(other, Verb.START_TASK)
    assert other.fingerprint in str(info.value) and other.nonce not in str(info.value)


def test_expiry_applies_to_workers_not_operators(book: TokenBook) -> None:
    op = book.mint("op", Role.OPERATOR, -1)
    book.verify(op, Verb.START_TASK)
    step = StepId.new()
    worker = book.mint("w", Role.WORKER, -1, step_id=step)
    with pytest.raises(TokenExpired):
        book.verify(worker, Verb.FETCH_PROMPT, step)


def test_gate_and_step_binding(book: TokenBook) -> None:
    step, other = StepId.new(), StepId.new()
    worker = book.mint("w", Role.WORKER, 60, step_id=step)
    book.verify(worker, Verb.EMIT_OUTPUT, step)
    with pytest.raises(TokenTaskMismatch):
        book.verify(worker, Verb.EMIT_OUTPUT, other)
    with pytest.raises(RoleViolation, match="worker may not query_senior"):
        book.verify(worker, Verb.QUERY_SENIOR, step)
    op = book.mint("op", Role.OPERATOR, 60)
    with pytest.raises(RoleViolation):
        book.verify(op, Verb.FETCH_PROMPT)
    assert role_allows(Role.OBSERVER, Verb.SUBSCRIBE_EVENTS)
    assert not role_allows(Role.SENIOR, Verb.START_TASK)


def test_max_uses_are_consumed(book: TokenBook) -> None:
    token = book.mint("op", Role.OPERATOR, 60, max_uses=2)
    book.verify(token, Verb.START_TASK)
    book.verify(token, Verb.START_TASK)
    with pytest.raises(TokenUsesExhausted):
        book.verify(token, Verb.START_TASK)


def test_handles_expire_with_their_token_and_die_when_forgotten(book: TokenBook) -> None:
    step = StepId.new()
    live = book.mint("w", Role.WORKER, 60, step_id=step, with_handle=True)
    handle = book.handle_of(live)
    assert handle is not None and handle.startswith("wh-") and len(handle) == 11
    assert book.resolve_handle(handle).step_id == step
    dead = book.mint("w", Role.WORKER, -1, step_id=step, with_handle=True)
    with pytest.raises(TokenExpired):
        book.resolve_handle(str(book.handle_of(dead)))
    book.forget(live)
    with pytest.raises(TokenNotFound, match="handle="):
        book.resolve_handle(handle)


def test_remint_keeps_binding_and_original_stays_valid(book: TokenBook) -> None:
    step = StepId.new()
    original = book.mint("worker-of-x", Role.WORKER, 10, step_id=step)
    fresh = book.remint(original, 100)
    assert fresh.agent_id == original.agent_id and fresh.nonce != original.nonce
    assert fresh.expire_at >= original.expire_at
    book.verify(fresh, Verb.FETCH_PROMPT, step)
    book.verify(original, Verb.FETCH_PROMPT, step)
    with pytest.raises(RoleViolation):
        book.remint(book.mint("op", Role.OPERATOR, 10), 10)


def test_token_times_are_unix_seconds(book: TokenBook) -> None:
    token = book.mint("op", Role.OPERATOR, 30)
    assert abs(token.issued_at - time.time()) < 5
    assert token.expire_at - token.issued_at == 30


def test_the_minted_object_skips_the_hmac_only_while_it_is_unchanged(
    book: TokenBook, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = book.mint("op", Role.OPERATOR, 60)
    signed: list[bytes] = []
    real_sign = book.sign
    monkeypatch.setattr(book, "sign", lambda message: signed.append(message) or real_sign(message))
    book.verify(token, Verb.START_TASK)
    assert signed == [], "the very object the book minted needs no HMAC at all until it is sent"
    assert token._sig is None
    text = token.encode()
    assert token.sig_hex == real_sign(token.signing_input())
    book.verify(token, Verb.START_TASK)
    assert signed == [], "signed once, when first read; the object is still unchanged"
    book.verify(CapToken.decode(text), Verb.START_TASK)
    assert len(signed) == 1, "a token read from text is checked against its signature"
    object.__setattr__(token, "_sig", "0" * 64)
    with pytest.raises(BadSignature):
        book.verify(token, Verb.START_TASK)


def test_scopes_given_as_a_list_are_frozen_at_mint(book: TokenBook) -> None:
    scopes = ["read"]
    token = book.mint("op", Role.OPERATOR, 60, scopes=scopes)  # type: ignore[arg-type]
    scopes.append("*")
    assert token.scopes == ("read",)
    assert token.signing_input().decode().split("|")[2] == "read"
    assert book.verify(token, Verb.START_TASK).token is token
