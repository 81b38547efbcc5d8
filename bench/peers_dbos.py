"""DBOS doing the same work: a workflow of `n` trivial `@DBOS.step`s on a SQLite system database."""

from __future__ import annotations

import os
import tempfile

from .harness import Metrics, needs
from .sqlite_size import db_bytes
from .timing import per_unit_us, stopwatch


def seq(n: int, reps: int) -> Metrics:
    """Time one workflow of `n` sequential steps per repetition; bytes are the database growth per step."""
    dbos_mod = needs("dbos", ours=False)
    DBOS = dbos_mod.DBOS
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dbos.sqlite")
        DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{path}"})

        def add_one(i: int) -> int:
            return i + 1

        step = DBOS.step()(add_one)

        def sequence(count: int) -> int:
            value = 0
            for _ in range(count):
                value = step(value)
            return value

        flow = DBOS.workflow()(sequence)

        DBOS.launch()
        sizes: list[float] = []
        try:

            def once() -> float:
                before = db_bytes(path)
                elapsed = stopwatch()
                result = flow(n)
                spent = elapsed()
                assert result == n
                sizes.append((db_bytes(path) - before) / n)
                return spent

            samples = per_unit_us(once, n, reps)
        finally:
            DBOS.destroy()
    return {"us_per_step": samples, "bytes_per_step": sizes[-reps:]}
