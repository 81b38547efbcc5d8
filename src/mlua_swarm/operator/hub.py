"""The operator hub: joined sessions, their sockets, parked requests and the seats of runs.

One hub per server. A session is created by a join (`POST /v1/operators`) and lives until it is
deleted or expires (24 h without access, while no socket is attached); sockets come and go in
between. Every request for an operator (`spawn`, `ask`, `hook_before`) is a `PendingRequest` held
by the session it is addressed to until the reply arrives: while the session has no socket the
request simply waits there, with no deadline, and it is sent when a socket attaches (a `spawn`
then carries a freshly minted worker token). A reconnect re-sends every request still unanswered,
so an operator that lost its state loses nothing; replies are matched by `req_id` and a duplicate
reply is ignored. Tearing a session down fails its requests loudly and vacates its seats.

Seats: a run's operator seats (`operators[]` of its Blueprint) each have a holder and a
generation. `acquire` hands a seat to another session (generation + 1) and moves the requests
waiting on it to the new holder; a worker token issued under an older generation is refused at
submit (`SeatMoved`, HTTP 409). State is touched only from the event loop, never across an await
that could interleave a partial update, so it needs no lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..core.engine import Engine
from ..ids import RunId, SessionId, secure_hex, uid_hex
from ..jsontext import compact, wire_text
from ..store import LaunchSnapshot, RunNotFound, RunRecord, Store, TaskRecordNotFound
from ..store.operators import OperatorSessionRecord, SeatRecord
from ..tokens import CapToken
from .frames import CancelFrame, ClientFrame, HookAfterFrame, parse_client_frame
from .kinds import RunOperatorSettings, operator_request

log = logging.getLogger(__name__)

RequestKind = Literal["ask", "hook_before", "spawn"]
REQ_INFIX: dict[str, str] = {"ask": "ask", "hook_before": "hb", "spawn": "spawn", "hook_after": "ha"}
OBSERVED_RING = 32
OBSERVED_TEXT_CAP = 1024
OBSERVED_METADATA_CAP = 4096
PARKED_TOKEN_MIN_REMAINING_SECS = 60
SETTINGS_KEPT = 4096
"""Runs whose operator settings stay in memory; older ones are read from their launch snapshot again."""


@dataclass(frozen=True, slots=True)
class OperatorHubConfig:
    """Session horizon, keepalive and sweep periods (seconds); tests shrink them."""

    session_ttl_secs: float = 24 * 3600
    ping_secs: float = 30.0
    dead_after_secs: float = 150.0
    sweep_secs: float = 300.0
    """0 disables the periodic sweep (expiry is still checked on every read)."""
    access_write_secs: float = 60.0
    """The stored `last_access` is refreshed at most this often."""
    max_sessions: int = 1024
    """Sessions held at once; a join past it is refused (joins need no credential, so without a
    bound anyone reaching the server could fill its memory and its store)."""


class OperatorError(Exception):
    """Base of the hub's refusals; `status` is the HTTP status a route answers with."""

    status = 400


class SessionNotFound(OperatorError):
    status = 404


class BadBearer(OperatorError):
    status = 401


class SessionGone(OperatorError):
    """The session a request waited on was torn down (deleted or expired)."""

    status = 410


class SeatVacant(OperatorError):
    status = 503


class SeatMoved(OperatorError):
    status = 409


class UnknownSeat(OperatorError):
    status = 400


class TooManySessions(OperatorError):
    status = 503


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(slots=True)
class Assignee:
    op: str
    desc: str
    gen: int

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "desc": self.desc, "gen": self.gen}


@dataclass(frozen=True, slots=True)
class RunBrief:
    """A run as an operator's `observed` entries describe it: its task's goal and the launch's
    `project_root`, `work_dir` and `task_metadata` (None where the launch gave none), already bounded
    (`bounded`), so what a server keeps per run stays small whatever a launch sent."""

    goal: str | None = None
    project_root: str | None = None
    work_dir: str | None = None
    task_metadata: Any = None
    text_truncated: bool = False
    task_metadata_omitted: bool = False

    @classmethod
    def bounded(cls, goal: str | None, project_root: str | None, work_dir: str | None, task_metadata: Any) -> RunBrief:
        """Cut a goal or path over `OBSERVED_TEXT_CAP` bytes at a character boundary, ending it in `…`
        (`text_truncated`); drop `task_metadata` over `OBSERVED_METADATA_CAP` bytes of JSON
        (`task_metadata_omitted`)."""
        cut: list[bool] = []

        def fit(text: str | None) -> str | None:
            data = None if text is None else text.encode()
            if data is None or len(data) <= OBSERVED_TEXT_CAP:
                return text
            cut.append(True)
            return data[:OBSERVED_TEXT_CAP].decode(errors="ignore") + "…"

        omitted = task_metadata is not None and len(compact(task_metadata).encode()) > OBSERVED_METADATA_CAP
        return cls(fit(goal), fit(project_root), fit(work_dir), None if omitted else task_metadata, bool(cut), omitted)


@dataclass(slots=True)
class RunSeats:
    """The declared seats of one run and who holds each (None: vacant)."""

    run_id: str
    holders: dict[str, Assignee | None] = field(default_factory=dict)
    brief: RunBrief | None = None
    """What a seat's holder is told about the run in its `observed` entries (read from the store when
    the launch did not give it: seats restored after a restart)."""

    @property
    def generation(self) -> int:
        return max((a.gen for a in self.holders.values() if a is not None), default=0)


@dataclass(slots=True, eq=False)
class PendingRequest:
    """One request waiting for its reply; `frame` is its wire JSON (re-sent on reconnect)."""

    req_id: str
    kind: RequestKind
    frame: dict[str, Any]
    future: asyncio.Future[ClientFrame]
    session: OperatorSession
    step_id: str
    attempt: int | None = None
    run_id: str | None = None
    slot: str | None = None
    gen: int | None = None
    token: CapToken | None = None
    """The spawn's current worker token (re-minted when the frame is delivered late)."""
    minted: list[CapToken] = field(default_factory=list)
    delivered: bool = False
    parked: bool = False
    """It waited for a socket (or moved to another holder): its delivery re-mints the worker token."""

    def to_json(self) -> dict[str, Any]:
        return {
            "req_id": self.req_id,
            "kind": self.kind,
            "step_id": self.step_id,
            "attempt": self.attempt,
            "slot": self.slot,
            "op": self.session.sid,
            "generation": self.gen,
            "delivered": self.delivered,
        }


class Connection:
    """One attached socket: frames queued here are written by the socket's own writer task."""

    def __init__(self, session: OperatorSession) -> None:
        self.session = session
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.close_reason: tuple[int, str] | None = None
        self.last_inbound = time.monotonic()

    def send(self, frame: Mapping[str, Any]) -> None:
        self.outbox.put_nowait(wire_text(frame))

    def close(self, code: int, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = (code, reason)
            self.outbox.put_nowait(None)


class OperatorSession:
    """A joined operator: identity, signed-in record, current socket and the requests addressed to it."""

    def __init__(self, record: OperatorSessionRecord) -> None:
        self.sid = record.sid
        self.token_digest = record.token_digest
        self.desc = record.desc
        self.capability_manifest = record.capability_manifest
        self.joined_at = record.joined_at
        self.last_access = record.last_access
        self.observed: deque[dict[str, Any]] = deque(record.observed, maxlen=OBSERVED_RING)
        self.observed_total = record.observed_total
        self.conn: Connection | None = None
        self.pending: dict[str, PendingRequest] = {}
        self.torn_down = False
        self._stored_access = record.last_access

    @property
    def connected(self) -> bool:
        return self.conn is not None

    def record(self) -> OperatorSessionRecord:
        return OperatorSessionRecord(
            self.sid,
            self.token_digest,
            self.desc,
            self.capability_manifest,
            self.joined_at,
            self.last_access,
            list(self.observed),
            self.observed_total,
        )

    def observe(self, entry: dict[str, Any]) -> None:
        """Log a seat given to this session: an earlier entry for the same run and seat is replaced
        (the newest position is this one), the ring keeps the newest `OBSERVED_RING`, and
        `observed_total` counts every call, so a reader can tell entries were folded or dropped."""
        for kept in self.observed:
            if kept["run_id"] == entry["run_id"] and kept["slot"] == entry["slot"]:
                self.observed.remove(kept)
                break
        self.observed.append(entry)
        self.observed_total += 1

    def summary(self) -> dict[str, Any]:
        """The signed-in record (`GET /v1/operators` entries)."""
        return {
            "sid": self.sid,
            "joined_at_secs": int(self.joined_at),
            "connected": self.connected,
            "desc": self.desc,
            "observed": list(self.observed),
            "observed_total": self.observed_total,
            "last_activity_secs": int(self.last_access),
            "pending": len(self.pending),
        }


class OperatorHub:
    """Sessions, parking and seats for one server (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        store: Store | None = None,
        *,
        base_url: str | None = None,
        config: OperatorHubConfig | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.base_url = base_url
        self.config = config or OperatorHubConfig()
        self.sessions: dict[str, OperatorSession] = {}
        self.seats: dict[str, RunSeats] = {}
        self._ledger: dict[str, tuple[str, str, int]] = {}
        """Worker-token fingerprint → (run_id, slot, generation) it was issued under."""
        self._sweeper: asyncio.Task[None] | None = None
        self.sweeps = 0
        self._settings: OrderedDict[str, RunOperatorSettings] = OrderedDict()

    # -- lifetime -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore stored sessions (disconnected), drop expired sessions, start the sweep. Seats stay
        in the store until a run needs them again (`restore`)."""
        if self.store is not None:
            for record in await self.store.list_operator_sessions():
                self.sessions[record.sid] = OperatorSession(record)
        await self.sweep()
        if self.config.sweep_secs > 0:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="operator-session-expiry")

    async def aclose(self) -> None:
        """Stop the sweep and close every socket (sessions stay stored; their requests end with the runs)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for session in self.sessions.values():
            if session.conn is not None:
                session.conn.close(1001, "server shutting down")
            await self._store_access(session, force=True)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_secs)
            try:
                await self.sweep()
            except Exception:
                log.exception("operator session sweep failed")

    async def sweep(self) -> list[str]:
        """Tear down every session past the horizon; the sids released."""
        self.sweeps += 1
        now = time.time()
        expired = [s for s in self.sessions.values() if self._expired(s, now)]
        for session in expired:
            await self.teardown(session.sid, "expired after 24 h without access")
        return [s.sid for s in expired]

    def _expired(self, session: OperatorSession, now: float) -> bool:
        return session.conn is None and now - session.last_access > self.config.session_ttl_secs

    # -- sessions -------------------------------------------------------------------------------

    async def join(self, desc: str | None = None, capability_manifest: Any = None) -> tuple[OperatorSession, str]:
        """A new session, disconnected but registered (usable as a launch pin at once), and its bearer.

        Past `max_sessions` live sessions (expired ones are released first) it raises `TooManySessions`.
        """
        if len(self.sessions) >= self.config.max_sessions:
            await self.sweep()
            if len(self.sessions) >= self.config.max_sessions:
                raise TooManySessions(f"this server already holds {len(self.sessions)} operator sessions")
        token = secure_hex(16)
        now = time.time()
        record = OperatorSessionRecord(str(SessionId.new()), token_digest(token), desc, capability_manifest, now, now)
        if self.store is not None:
            await self.store.put_operator_session(record)
        session = OperatorSession(record)
        self.sessions[session.sid] = session
        return session, token

    async def session(self, sid: str, bearer: str | None = None) -> OperatorSession:
        """The live session `sid`; with `bearer`, that bearer must be its own (401 otherwise).

        A session past the horizon is torn down here and reported unknown (404).
        """
        session = self.sessions.get(sid)
        if session is None:
            raise SessionNotFound(f"operator session {sid} not found")
        if self._expired(session, time.time()):
            await self.teardown(sid, "expired after 24 h without access")
            raise SessionNotFound(f"operator session {sid} expired")
        if bearer is not None and not hmac.compare_digest(token_digest(bearer), session.token_digest):
            raise BadBearer(f"bearer does not match operator session {sid}")
        await self.touch(session)
        return session

    async def authenticate(self, bearer: str | None) -> OperatorSession:
        """The live session whose bearer this is (any session), or `BadBearer`."""
        if bearer:
            digest = token_digest(bearer)
            for session in list(self.sessions.values()):
                if hmac.compare_digest(digest, session.token_digest):
                    return await self.session(session.sid)
        raise BadBearer(
            "an operator session bearer is required (Authorization: Bearer <token from POST /v1/operators>)"
        )

    async def touch(self, session: OperatorSession) -> None:
        session.last_access = time.time()
        await self._store_access(session)

    async def _store_access(self, session: OperatorSession, *, force: bool = False) -> None:
        if self.store is None or session.torn_down:
            return
        if force or session.last_access - session._stored_access >= self.config.access_write_secs:
            session._stored_access = session.last_access
            await self.store.put_operator_session(session.record())

    def list_sessions(self, limit: int = 50) -> list[OperatorSession]:
        now = time.time()
        live = [s for s in self.sessions.values() if not self._expired(s, now)]
        live.sort(key=lambda s: s.last_access, reverse=True)
        return live[:limit]

    def attached_count(self) -> int:
        return sum(1 for s in self.sessions.values() if s.connected)

    async def teardown(self, sid: str, reason: str) -> None:
        """Delete the session: store row first, then fail its requests, close its socket, vacate its seats."""
        session = self.sessions.get(sid)
        if session is None:
            raise SessionNotFound(f"operator session {sid} not found")
        if self.store is not None:
            await self.store.delete_operator_session(sid)
        session.torn_down = True
        del self.sessions[sid]
        for pending in list(session.pending.values()):
            self._fail(pending, SessionGone(f"operator session {sid} was torn down ({reason}) before it replied"))
        if session.conn is not None:
            session.conn.close(1000, "operator session torn down")
            session.conn = None
        for seats in self.seats.values():
            for slot, holder in list(seats.holders.items()):
                if holder is not None and holder.op == sid:
                    seats.holders[slot] = None
                    await self._store_seat(seats.run_id, slot, None)

    # -- sockets --------------------------------------------------------------------------------

    def attach(self, session: OperatorSession) -> Connection:
        """Swap in a new socket (a reconnect is the same call) and send every unanswered request."""
        if session.conn is not None:
            session.conn.close(1000, "replaced by a newer connection")
        conn = Connection(session)
        session.conn = conn
        session.last_access = time.time()
        for pending in list(session.pending.values()):
            self._send(pending)
        return conn

    def detach(self, conn: Connection) -> None:
        session = conn.session
        if session.conn is conn:
            session.conn = None

    def receive(self, conn: Connection, text: str | bytes) -> None:
        """One inbound frame: resolve the request it answers; anything else is ignored."""
        conn.last_inbound = time.monotonic()
        frame = parse_client_frame(text)
        if frame is None:
            log.debug("operator %s sent a frame that does not parse; ignored", conn.session.sid)
            return
        pending = conn.session.pending.pop(frame.req_id, None)
        if pending is None:
            log.info("operator %s replied to unknown or settled request %s", conn.session.sid, frame.req_id)
            return
        if not pending.future.done():
            pending.future.set_result(frame)

    async def keepalive(self, conn: Connection) -> None:
        """While `conn` is attached: refresh the session's access time every ping period."""
        while conn.session.conn is conn:
            await asyncio.sleep(self.config.ping_secs)
            if conn.session.conn is conn:
                await self.touch(conn.session)

    # -- requests -------------------------------------------------------------------------------

    def request(
        self,
        session: OperatorSession,
        kind: RequestKind,
        frame: dict[str, Any],
        *,
        step_id: str,
        attempt: int | None = None,
        run_id: str | None = None,
        slot: str | None = None,
        gen: int | None = None,
        token: CapToken | None = None,
    ) -> PendingRequest:
        """Address a request to `session`: sent now if it is connected, otherwise parked on it."""
        if session.torn_down:
            raise SessionGone(f"operator session {session.sid} was torn down")
        req_id = f"{session.sid}-{REQ_INFIX[kind]}-{uid_hex()}"
        frame["req_id"] = req_id
        future: asyncio.Future[ClientFrame] = asyncio.get_running_loop().create_future()
        pending = PendingRequest(req_id, kind, frame, future, session, step_id, attempt, run_id, slot, gen, token)
        session.pending[req_id] = pending
        if token is not None and run_id is not None and slot is not None and gen is not None:
            self._ledger[token.fingerprint] = (run_id, slot, gen)
        if session.conn is not None:
            self._send(pending)
        else:
            pending.parked = True
        return pending

    def notify(self, session: OperatorSession, frame: HookAfterFrame | CancelFrame) -> bool:
        """A fire-and-forget frame; dropped (False) while the session has no socket."""
        if session.conn is None:
            log.warning("operator %s is disconnected: %s for %s dropped", session.sid, frame.type, frame.task_id)
            return False
        session.conn.send(frame.to_json())
        return True

    def hook_after_frame(self, session: OperatorSession, **fields: Any) -> HookAfterFrame:
        return HookAfterFrame(req_id=f"{session.sid}-ha-{uid_hex()}", **fields)

    def _send(self, pending: PendingRequest) -> None:
        conn = pending.session.conn
        if conn is None:
            return
        if pending.kind == "spawn" and pending.token is not None:
            self._refresh_token(pending)
        conn.send(pending.frame)
        pending.delivered = True
        pending.parked = False

    def _refresh_token(self, pending: PendingRequest) -> None:
        """A spawn that waited (or is re-sent near expiry) goes out with a freshly minted token and handle."""
        token = pending.token
        assert token is not None
        expiring = token.expire_at - time.time() < PARKED_TOKEN_MIN_REMAINING_SECS
        if not (pending.parked or expiring):
            return
        try:
            fresh = self.engine.remint_worker_token(token, with_handle=True)
        except Exception as exc:
            log.warning("spawn %s: could not re-mint its worker token (%s); sending it as built", pending.req_id, exc)
            return
        pending.minted.append(fresh)
        pending.token = fresh
        pending.frame["capability_token"] = fresh.encode()
        handle = self.engine.handle_of(fresh)
        if handle is not None:
            pending.frame["worker_handle"] = str(handle)
        if pending.run_id is not None and pending.slot is not None and pending.gen is not None:
            self._ledger[fresh.fingerprint] = (pending.run_id, pending.slot, pending.gen)

    async def reply(self, pending: PendingRequest) -> ClientFrame:
        """Wait for the reply to `pending` (no deadline); a cancelled wait withdraws the request."""
        try:
            return await asyncio.shield(pending.future)
        except asyncio.CancelledError:
            self.withdraw(pending, "step cancelled")
            raise
        finally:
            self.finish(pending)

    def withdraw(self, pending: PendingRequest, reason: str) -> None:
        """The request's step ended without its reply (cancelled): tell the holder and forget it."""
        session = pending.session
        if session.pending.pop(pending.req_id, None) is not None and pending.delivered:
            self.notify(session, CancelFrame(req_id=pending.req_id, task_id=pending.step_id, reason=reason))
        self.finish(pending)

    def finish(self, pending: PendingRequest) -> None:
        """Forget the tokens minted for a request and its ledger entries."""
        pending.session.pending.pop(pending.req_id, None)
        for token in pending.minted:
            self.engine.forget_worker_token(token)
            self._ledger.pop(token.fingerprint, None)
        if pending.token is not None:
            self._ledger.pop(pending.token.fingerprint, None)
        pending.minted.clear()

    def _fail(self, pending: PendingRequest, error: Exception) -> None:
        pending.session.pending.pop(pending.req_id, None)
        if not pending.future.done():
            pending.future.set_exception(error)

    def pending_for_run(self, run_id: str) -> list[PendingRequest]:
        return [p for s in self.sessions.values() for p in s.pending.values() if p.run_id == run_id]

    # -- seats ----------------------------------------------------------------------------------
    # Memory holds the seats of the runs live in this process; the store holds every run's. A run
    # that ends here is forgotten, so a long-lived server does not keep every run it ever ran.

    async def seats_of(self, run_id: str) -> RunSeats | None:
        """The run's seats: from memory while it runs here, else as the store has them (not kept)."""
        seats = self.seats.get(run_id)
        if seats is not None or self.store is None:
            return seats
        rows = await self.store.list_seats(RunId.parse(run_id))
        if not rows:
            return None
        seats = RunSeats(run_id)
        for row in rows:
            # A holder whose session was deleted while these seats were not in memory is vacant, as
            # `teardown` would have made it.
            op = row.op if row.op in self.sessions else None
            seats.holders[row.slot] = None if op is None else Assignee(op, row.desc or "", row.gen)
        return seats

    async def restore(self, run_id: str) -> RunSeats | None:
        """Bring the run's stored seats into memory: it is about to run again, or a seat is taken."""
        seats = await self.seats_of(run_id)
        if seats is not None:
            self.seats[run_id] = seats
        return seats

    def forget_run(self, run_id: str) -> None:
        """The run ended in this process: its seats stay in the store only."""
        self.seats.pop(run_id, None)

    async def declare(self, run_id: str, slots: Iterable[str], brief: RunBrief | None = None) -> RunSeats:
        """Make sure the run's declared seats exist (vacant when new); `brief` describes the run to
        the sessions its seats go to."""
        seats = self.seats.setdefault(run_id, RunSeats(run_id))
        if brief is not None:
            seats.brief = brief
        for slot in slots:
            if slot not in seats.holders:
                seats.holders[slot] = None
                await self._store_seat(run_id, slot, None)
        return seats

    async def pin(
        self, run_id: str, sid: str, desc: str, slot: str | None, declared: list[str], brief: RunBrief | None = None
    ) -> RunSeats:
        """A launch's pin: `slot` (or the only seat) to `sid` first, then every other declared seat too."""
        session = await self.session(sid)
        seats = await self.declare(run_id, declared, brief)
        if not declared:
            return seats
        first = self._slot(seats, slot)
        order = [first, *(s for s in declared if s != first)]
        for index, name in enumerate(order):
            text = desc if index == 0 else f"auto-seated at launch with seat '{first}' ({desc})"
            await self._assign(seats, name, session, text)
        return seats

    def _slot(self, seats: RunSeats, slot: str | None) -> str:
        declared = list(seats.holders)
        if slot is None:
            if len(declared) != 1:
                raise UnknownSeat(
                    f"run {seats.run_id} declares {len(declared)} operator seats ({', '.join(declared) or 'none'}); "
                    "name one with slot"
                )
            return declared[0]
        if slot not in seats.holders:
            raise UnknownSeat(f"run {seats.run_id} has no operator seat '{slot}' (declared: {', '.join(declared)})")
        return slot

    async def _assign(self, seats: RunSeats, slot: str, session: OperatorSession, desc: str) -> Assignee | None:
        previous = seats.holders.get(slot)
        assignee = Assignee(session.sid, desc, seats.generation + 1)
        seats.holders[slot] = assignee
        await self._store_seat(seats.run_id, slot, assignee)
        if seats.brief is None:
            seats.brief = await self._read_brief(seats.run_id)
        session.observe(observed_entry(seats.run_id, slot, seats.brief, int(time.time())))
        await self.touch(session)
        return previous

    async def acquire(self, run_id: str, sid: str, desc: str, slot: str | None = None) -> dict[str, Any]:
        """Hand a seat to `sid` (never refused; generation + 1) and move the requests waiting on it there."""
        seats = self.seats.get(run_id) or await self.restore(run_id)
        if seats is None:
            raise SessionNotFound(f"run {run_id} has no operator seats")
        session = await self.session(sid)
        name = self._slot(seats, slot)
        previous = await self._assign(seats, name, session, desc)
        holder = seats.holders[name]
        assert holder is not None
        moved = 0
        if previous is not None and previous.op != sid:
            old = self.sessions.get(previous.op)
            for pending in list(old.pending.values()) if old is not None else []:
                if pending.run_id == run_id and pending.slot == name:
                    self._move(pending, session, holder.gen)
                    moved += 1
        return {
            "run_id": run_id,
            "slot": name,
            "gen": holder.gen,
            "previous": None if previous is None else previous.to_json(),
            "moved": moved,
        }

    def _move(self, pending: PendingRequest, session: OperatorSession, gen: int) -> None:
        """Re-address a waiting request to the new holder; the old one is told to stop."""
        old = pending.session
        old.pending.pop(pending.req_id, None)
        if pending.delivered:
            self.notify(old, CancelFrame(req_id=pending.req_id, task_id=pending.step_id, reason="seat moved"))
        req_id = f"{session.sid}-{REQ_INFIX[pending.kind]}-{uid_hex()}"
        pending.req_id = req_id
        pending.frame["req_id"] = req_id
        pending.session = session
        pending.gen = gen
        pending.delivered = False
        pending.parked = True
        session.pending[req_id] = pending
        if session.conn is not None:
            self._send(pending)

    def holder(self, run_id: str, slot: str) -> tuple[OperatorSession, Assignee]:
        """The session holding seat `slot` of the run now, or `SeatVacant`/`UnknownSeat` naming it."""
        seats = self.seats.get(run_id)
        if seats is None or slot not in seats.holders:
            raise SeatVacant(
                f"operator seat '{slot}' of run {run_id} is vacant: the run was launched without an operator "
                "(launch with operator_sid, or POST /v1/runs/{id}/acquire)"
            )
        assignee = seats.holders[slot]
        session = None if assignee is None else self.sessions.get(assignee.op)
        if assignee is None or session is None:
            raise SeatVacant(
                f"operator seat '{slot}' of run {run_id} is vacant (launched without an operator, or its holder left); "
                f"take it with POST /v1/runs/{run_id}/acquire"
            )
        return session, assignee

    def run_session(self, run_id: str) -> OperatorSession | None:
        """The session a run's hooks and questions go to: the holder of its lowest-generation seat."""
        seats = self.seats.get(run_id)
        if seats is None:
            return None
        held = sorted((a for a in seats.holders.values() if a is not None), key=lambda a: a.gen)
        for assignee in held:
            session = self.sessions.get(assignee.op)
            if session is not None:
                return session
        return None

    def configure(self, run_id: str, settings: RunOperatorSettings) -> None:
        """The operator kinds and id of a run (see `operator.kinds`), set when it is launched."""
        self._settings[run_id] = settings
        self._settings.move_to_end(run_id)
        while len(self._settings) > SETTINGS_KEPT:
            self._settings.popitem(last=False)

    async def run_settings(self, run_id: str) -> RunOperatorSettings:
        """The run's operator settings; a run not launched by this process has them read from its snapshot."""
        settings = self._settings.get(run_id)
        if settings is None:
            settings = await self._stored_settings(run_id)
            self.configure(run_id, settings)
        return settings

    async def _stored_settings(self, run_id: str) -> RunOperatorSettings:
        run = await self._stored_run(run_id)
        if run is None or run.input_json is None:
            return RunOperatorSettings()
        snapshot = LaunchSnapshot.from_json(run.input_json)
        blueprint = snapshot.blueprint if isinstance(snapshot.blueprint, Mapping) else {}
        return RunOperatorSettings.of(blueprint, operator_request(snapshot.options.get("operator")))

    async def _read_brief(self, run_id: str) -> RunBrief:
        """The run's brief from the store (its task's goal, its launch's options); what cannot be read
        stays None rather than being guessed."""
        run = await self._stored_run(run_id)
        if run is None or self.store is None:
            return RunBrief()
        try:
            goal: str | None = (await self.store.get_task(run.task_id)).goal
        except TaskRecordNotFound:
            goal = None
        options = LaunchSnapshot.from_json(run.input_json).options if run.input_json is not None else {}
        get = options.get
        return RunBrief.bounded(goal, get("project_root"), get("work_dir"), get("task_metadata"))

    async def _stored_run(self, run_id: str) -> RunRecord | None:
        try:
            return None if self.store is None else await self.store.get_run(RunId.parse(run_id), with_result=False)
        except (RunNotFound, ValueError):
            return None

    def check_submit(self, token: CapToken) -> None:
        """Refuse a worker submit whose seat changed hands (409) or was vacated (503) since the token was issued."""
        entry = self._ledger.get(token.fingerprint)
        if entry is None:
            return
        run_id, slot, gen = entry
        seats = self.seats.get(run_id)
        if seats is None:
            return  # the run has ended here: the engine refuses the submit of an attempt that is over
        holder = seats.holders.get(slot)
        if holder is None:
            raise SeatVacant(f"operator seat '{slot}' of run {run_id} is vacant; this submit is refused")
        if holder.gen != gen:
            raise SeatMoved(
                f"operator seat '{slot}' of run {run_id} moved to another operator (generation {holder.gen}, "
                f"this worker was issued under {gen}); this submit is refused"
            )

    def assignees(self, run_id: str, seats: RunSeats | None = None) -> dict[str, Any]:
        """The seats' wire form: `seats` as `seats_of` gives them, else those in memory."""
        if seats is None:
            seats = self.seats.get(run_id)
        rows = [] if seats is None else [_seat_json(slot, a) for slot, a in seats.holders.items()]
        return {
            "run_id": run_id,
            "generation": 0 if seats is None else seats.generation,
            "seats": rows,
            "seats_source": "blueprint",
            "note": "vacant seats are listed; acquire one with POST /v1/runs/{id}/acquire",
        }

    async def _store_seat(self, run_id: str, slot: str, assignee: Assignee | None) -> None:
        if self.store is None:
            return
        op, desc, gen = (None, None, 0) if assignee is None else (assignee.op, assignee.desc, assignee.gen)
        await self.store.put_seat(SeatRecord(run_id, slot, op, desc, gen))

    def spawned_step(self, step_id: str) -> tuple[str, str] | None:
        """(run id, agent) of a step an operator holds right now, or None.

        Steps the flow did not dispatch itself (an operator auditor, say) are known to the server
        only through their spawn; this is how its worker routes find their run.
        """
        for session in self.sessions.values():
            for pending in session.pending.values():
                if pending.kind == "spawn" and pending.step_id == step_id and pending.run_id is not None:
                    return pending.run_id, str(pending.frame.get("agent", ""))
        return None

    def find(self, predicate: Callable[[PendingRequest], bool]) -> list[PendingRequest]:
        return [p for s in self.sessions.values() for p in s.pending.values() if predicate(p)]


def _seat_json(slot: str, assignee: Assignee | None) -> dict[str, Any]:
    return {
        "slot": slot,
        "vacant": assignee is None,
        "holder": None if assignee is None else assignee.to_json(),
        "declared": True,
    }


def observed_entry(run_id: str, slot: str, brief: RunBrief, at_secs: int) -> dict[str, Any]:
    """One `observed` entry: a seat of the run `brief` describes, given at `at_secs`."""
    return {
        "run_id": run_id,
        "slot": slot,
        "goal": brief.goal,
        "project_root": brief.project_root,
        "work_dir": brief.work_dir,
        "task_metadata": brief.task_metadata,
        "task_metadata_omitted": brief.task_metadata_omitted,
        "text_truncated": brief.text_truncated,
        "at_secs": at_secs,
    }


__all__ = [
    "Assignee",
    "BadBearer",
    "Connection",
    "OperatorError",
    "OperatorHub",
    "OperatorHubConfig",
    "OperatorSession",
    "PendingRequest",
    "RunBrief",
    "RunSeats",
    "SeatMoved",
    "SeatVacant",
    "SessionGone",
    "SessionNotFound",
    "TooManySessions",
    "UnknownSeat",
    "observed_entry",
    "token_digest",
]
