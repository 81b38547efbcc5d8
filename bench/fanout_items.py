"""`mse run` of a fanout over items held in the ctx, as users run it: whole process, wall time and peak RSS.

`python -m bench.fanout_items [--lanes N,...] [--durable]` runs, for each N, a fanout of N lanes over
`$.items` (one trivial `rust_fn` step per lane) with each lane joining as its whole ctx (upstream's
join) and with `collect` joining only the lane's output, and prints both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .cli import once
from .harness import REPO_ROOT
from .machine import load


def blueprint(lanes: int, collect: bool) -> dict[str, Any]:
    node: dict[str, Any] = {
        "kind": "fanout",
        "items": {"op": "path", "at": "$.items"},
        "bind": {"op": "path", "at": "$.item"},
        "body": {"kind": "step", "ref": "s", "in": {"op": "path", "at": "$.item"}, "out": {"op": "path", "at": "$.r"}},
        "join": "all",
        "out": {"op": "path", "at": "$.lanes"},
    }
    if collect:
        node["collect"] = {"op": "path", "at": "$.r"}
    return {
        "id": f"fanout-items-{lanes}",
        "flow": node,
        "agents": [{"name": "s", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
        "default_init_ctx": {"items": list(range(lanes))},
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_items", description=__doc__)
    parser.add_argument("--lanes", default="1000,2000")
    parser.add_argument("--durable", action="store_true", help="record in the default SQLite store")
    parser.add_argument("--collect-only", action="store_true", help="skip the whole-ctx join (quadratic)")
    args = parser.parse_args(argv)
    print(f"at start: {load()}")
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "MSE_HOME": home}
        for lanes in (int(n) for n in args.lanes.split(",")):
            for collect in (True,) if args.collect_only else (False, True):
                path = Path(home) / f"fan-{lanes}-{collect}.json"
                path.write_text(json.dumps(blueprint(lanes, collect)))
                argv_run = [sys.executable, "-m", "mlua_swarm", "run", str(path), "--json"]
                if not args.durable:
                    argv_run.append("--ephemeral")
                wall, rss = once(argv_run, env)
                how = "collect $.r" if collect else "whole lane ctx"
                print(f"{lanes} lanes over $.items, join {how}: {wall:.2f} s, {rss:.0f} MB")
    print(f"at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
