"""Reading a run's SSE stream in tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Each event's data (with its `id:` as `_id`); comments (keepalives) skipped."""
    event_id: str | None = None
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            body = json.loads("\n".join(data))
            body["_id"] = event_id
            yield body
            event_id, data = None, []


def read_all(client: httpx.Client, run_id: str, **headers: str) -> list[dict[str, Any]]:
    with client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        return list(sse_events(response))
