"""docs/operators.md's two samples together: its Python operator (run as written, pointed at a real
server) answers a run of its `review` Blueprint, whose reviewer has a verdict contract."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

from tests.serverkit import SRC, LiveServer

from .helpers import run_result, server_launch

DOC = (SRC.parent / "docs" / "operators.md").read_text()


def block(lang: str, containing: str) -> str:
    return next(b for b in re.findall(rf"```{lang}\n(.*?)```", DOC, re.S) if containing in b)


async def test_the_python_operator_of_the_page_answers_its_review_blueprint(
    live_server: LiveServer, tmp_path: Path
) -> None:
    code = block("python", "OperatorClient(").replace("http://127.0.0.1:7777", live_server.base_url)
    script = tmp_path / "my_operator.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        sid = re.search(r"sid (S-[0-9a-f]+)", line)
        assert sid, line
        review = json.loads(block("json", '"operators"'))
        run_id = await server_launch(live_server, review, sid=sid.group(1), init_ctx={"change": "fix a typo"})
        ended = asyncio.ensure_future(run_result(live_server, run_id))
        exited = asyncio.ensure_future(proc.wait())
        await asyncio.wait([ended, exited], return_when=asyncio.FIRST_COMPLETED)
        if not ended.done():  # the operator died: its parked spawn would wait for it forever
            ended.cancel()
            assert proc.stderr is not None
            raise AssertionError((await proc.stderr.read()).decode())
        exited.cancel()
        record = ended.result()
        assert record["status"] == "done", record
        assert record["result"]["review"] == "PASS"
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def test_a_run_of_the_page_launched_without_a_pin_fails_naming_its_vacant_seat(live_server: LiveServer) -> None:
    review = json.loads(block("json", '"operators"'))
    run_id = await server_launch(live_server, review, init_ctx={"change": "fix a typo"})
    record = await run_result(live_server, run_id)
    assert record["status"] == "failed", record
    message = record["result"]["error"]["message"]
    assert "operator seat 'main-ai'" in message and "launched without an operator" in message, message
    assert f"/v1/runs/{run_id}/acquire" in message
