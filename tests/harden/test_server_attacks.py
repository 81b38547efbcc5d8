"""Slice F: the HTTP server against a hostile client and a hostile web page, on a real uvicorn."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from mlua_swarm.store import LaunchSnapshot, create_run
from tests.serverkit import LiveServer, start_server

BP = {
    "id": "t",
    "flow": {"kind": "step", "ref": "a", "in": {"op": "path", "at": "$"}, "out": {"op": "path", "at": "$.y"}},
    "agents": [{"name": "a", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
}
LAUNCH = json.dumps({"blueprint": {"kind": "inline", "value": BP}, "init": {"x": 1}})


@pytest.fixture
def served(tmp_path: Path) -> Iterator[LiveServer]:
    live = start_server(tmp_path, max_event_streams=2, allowed_hosts=("proxy.example",))
    try:
        yield live
    finally:
        live.stop()


def host_of(live: LiveServer) -> str:
    return live.base_url.removeprefix("http://")


def test_a_web_page_cannot_launch_a_run(served: LiveServer) -> None:
    http = served.client()
    forged = http.post(
        "/v1/tasks", content=LAUNCH, headers={"content-type": "text/plain", "origin": "http://attacker.example"}
    )
    assert forged.status_code == 403 and "cross-origin" in forged.json()["error"]
    assert http.get("/v1/runs").json()["runs"] == []
    same = http.post("/v1/tasks", content=LAUNCH, headers={"origin": served.base_url})
    assert same.status_code in (200, 201), same.text


def test_a_rebound_host_name_is_refused_while_loopback_names_and_allowed_hosts_pass(served: LiveServer) -> None:
    http = served.client()
    port = host_of(served).rpartition(":")[2]
    assert http.get("/v1/runs", headers={"host": f"attacker.example:{port}"}).status_code == 403
    for name in (f"localhost:{port}", f"127.0.0.1:{port}", "proxy.example"):
        assert http.get("/v1/runs", headers={"host": name}).status_code == 200


async def test_an_operator_socket_from_another_origin_is_refused(served: LiveServer) -> None:
    joined = served.client().post("/v1/operators", json={}).json()
    url = served.base_url.replace("http", "ws") + f"/v1/operators/{joined['sid']}/ws"
    auth = {"Authorization": f"Bearer {joined['token']}"}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=auth, origin="http://attacker.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    async with connect(url, additional_headers=auth):
        pass


@pytest.mark.parametrize(
    "body",
    ["[" * 100_000, '{"init": {"x": NaN}}', '{"init": {"x": 1e999}}', '{"init": ' + "9" * 5000 + "}", "\xff"],
)
def test_a_hostile_json_body_is_a_400(served: LiveServer, body: str) -> None:
    answer = served.client().post("/v1/tasks", content=body.encode("latin-1"))
    assert answer.status_code == 400 and "not valid JSON" in answer.json()["error"]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/runs?limit=99999999999999999999999", {}),
        ("/v1/tasks?limit=9223372036854775808", {}),
        ("/v1/runs/{run}/trace?after=99999999999999999999", {}),
        ("/v1/runs/{run}/events?after=99999999999999999999", {}),
        ("/v1/runs/{run}/events", {"last-event-id": "99999999999999999999"}),
    ],
)
def test_an_absurd_number_in_a_query_is_a_400(served: LiveServer, path: str, headers: dict[str, str]) -> None:
    run = served.client().post("/v1/tasks", content=LAUNCH).json()["run_id"]
    answer = served.client().get(path.format(run=run), headers=headers)
    assert answer.status_code == 400, answer.text


def test_event_streams_are_capped(served: LiveServer) -> None:
    async def stuck_run() -> str:
        record = await create_run(served.state.store, LaunchSnapshot(BP, {}, {}), goal="g")
        served.state.store.append_trace(record.run_id, "core.run_started")
        await served.state.store.flush()
        return str(record.run_id)

    run = served.call(stuck_run)
    url = f"{served.base_url}/v1/runs/{run}/events"
    with (
        httpx.Client(timeout=30) as first,
        httpx.Client(timeout=30) as second,
        first.stream("GET", url) as one,
        second.stream("GET", url) as two,
    ):
        # Each stream has sent its first event, so both are open (the iterators stay referenced:
        # dropping one closes its response).
        readers = [stream.iter_bytes() for stream in (one, two)]
        assert [stream.status_code for stream in (one, two)] == [200, 200]
        assert all(next(reader).startswith(b"id: 1") for reader in readers)
        third = served.client().get(url)
        assert third.status_code == 503 and third.headers["retry-after"] == "5"
