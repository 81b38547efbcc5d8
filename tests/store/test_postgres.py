"""What the PostgreSQL store adds to the contract: several stores (hosts) on one database, its schema
version, and the diagnostics of a bad URL or an unreachable server."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from mlua_swarm.store import (
    BadStoreUrl,
    Durability,
    ReplayRow,
    RunJournal,
    RunStatus,
    SchemaTooNew,
    StoreUnusable,
    open_store,
    store_from_url,
)
from mlua_swarm.store.postgres import PostgresStore, redact

from ..pgcluster import _free_port
from .conftest import LAUNCH, entry, new_run

S = RunStatus


async def test_two_stores_opening_a_fresh_database_at_once_both_get_the_schema(pg_url: str) -> None:
    first, second = PostgresStore(pg_url), PostgresStore(pg_url)
    try:
        await asyncio.gather(first.open(), second.open())
        run = await new_run(first)
        assert (await second.get_run(run.run_id)).status is S.RUNNING
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("durability", [Durability.BATCH, Durability.SYNC])
async def test_a_recorded_step_is_committed_for_every_other_host_when_record_step_returns(
    pg_url: str, durability: Durability
) -> None:
    writer, reader = PostgresStore(pg_url, durability=durability), PostgresStore(pg_url)
    try:
        run = await new_run(writer)
        journal = RunJournal(writer, run.run_id, durability)
        for i in range(3):
            await journal.record_step(entry(f"s{i}"), ReplayRow(f"s{i}", "h", {"i": i}))
            # The reader is another connection: it sees only what was committed.
            assert [r.value for r in await reader.list_replay(run.run_id)] == [{"i": j} for j in range(i + 1)]
    finally:
        await writer.close()
        await reader.close()


async def test_of_two_hosts_resuming_one_run_exactly_one_takes_it(pg_url: str) -> None:
    hosts = [PostgresStore(pg_url) for _ in range(4)]
    try:
        run = await new_run(hosts[0])
        assert await hosts[0].try_transition(run.run_id, S.RUNNING, S.INTERRUPTED)
        taken = await asyncio.gather(*(h.try_transition(run.run_id, S.INTERRUPTED, S.RUNNING) for h in hosts))
        assert sorted(taken) == [False, False, False, True]
    finally:
        for host in hosts:
            await host.close()


async def test_trace_events_two_hosts_append_to_one_run_are_all_kept_in_order(pg_url: str) -> None:
    one, other = PostgresStore(pg_url), PostgresStore(pg_url)
    try:
        run = await new_run(one)
        await other.get_run(run.run_id)  # both count the run's trace from the same top
        for i in range(3):
            one.append_trace(run.run_id, "one", payload={"i": i})
            other.append_trace(run.run_id, "other", payload={"i": i})
        await asyncio.gather(one.flush(), other.flush())
        events = await one.list_trace(run.run_id)
        seqs = [e.seq for e in events]
        assert seqs == sorted(set(seqs)) and len(events) == 7
        assert [e.payload["i"] for e in events if e.kind == "one"] == [0, 1, 2]
        assert [e.payload["i"] for e in events if e.kind == "other"] == [0, 1, 2]
    finally:
        await one.close()
        await other.close()


async def test_a_replay_key_another_host_stored_is_refused_at_the_commit(pg_url: str) -> None:
    one, other = PostgresStore(pg_url), PostgresStore(pg_url)
    try:
        run = await new_run(one)
        one.append_replay(run.run_id, ReplayRow("a", "h", 1, occurrence=0))
        await one.flush()
        other.append_replay(run.run_id, ReplayRow("a", "h", 2, occurrence=0))  # other never read the log
        with pytest.raises(Exception, match="replay row") as caught:
            await other.flush()
        assert type(caught.value).__name__ == "Duplicate"
        assert [r.value for r in await one.list_replay(run.run_id)] == [1]
    finally:
        await one.close()
        await other.close()


async def test_a_database_of_a_newer_schema_is_refused(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    await store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE mse_schema SET version = 999")
    with pytest.raises(SchemaTooNew, match="schema version 999") as caught:
        await open_store(pg_url)
    assert "upgrade mlua-swarm" in caught.value.hint


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://localhost:notaport/db", "libpq can read"),
        ("postgresql://localhost:5432", "names no database"),
        ("postgres://[broken/db", "libpq can read"),
    ],
)
def test_a_bad_postgresql_url_is_a_diagnostic(url: str, says: str) -> None:
    with pytest.raises(BadStoreUrl, match=says) as caught:
        store_from_url(url)
    assert "postgresql://USER" in caught.value.hint


async def test_an_unreachable_server_is_a_diagnostic_without_the_password() -> None:
    url = f"postgresql://mse:s3cret@127.0.0.1:{_free_port()}/mse"
    with pytest.raises(StoreUnusable, match="cannot connect to the PostgreSQL store") as caught:
        await open_store(url)
    assert "s3cret" not in str(caught.value) and "mse:***@127.0.0.1" in str(caught.value)
    assert "check the server is running" in caught.value.hint
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"


async def test_launch_and_result_survive_a_new_connection(pg_url: str) -> None:
    store = await open_store(pg_url)
    run = await new_run(store)
    assert await store.settle_run(run.run_id, {"out": "x\x00y"}, S.DONE)
    await store.close()
    again = await open_store(pg_url)
    try:
        got = await again.get_run(run.run_id)
        assert got.result == {"out": "x\x00y"} and got.input_json == LAUNCH.to_json()
    finally:
        await again.close()


def test_redact_hides_a_password_given_as_a_parameter() -> None:
    shown = redact("postgresql://u@h/db?sslmode=disable&password=s3cret&sslpassword=k3y#x")
    assert "s3cret" not in shown and "k3y" not in shown
    assert shown == "postgresql://u@h/db?sslmode=disable&password=***&sslpassword=***#x"
