"""`mse run` of a fanout over items held in the ctx, as users run it: whole process, wall time and peak RSS.

A fanout of N lanes over `$.items` (one trivial `rust_fn` step per lane), each lane joining as its
whole ctx (upstream's join) or, with `collect`, as what it produced. `python -m bench` runs `measure`
(10,000 lanes with `collect`, in memory and durable); `python -m bench.fanout_items [--lanes N,...]
[--durable]` prints both joins for each N.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from .cli import Finished, mse, mse_env, once
from .harness import Metrics
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


def run_once(lanes: int, collect: bool, durable: bool) -> Finished:
    """One `mse run --json` of the fanout (in the default SQLite store when `durable`); fails unless done."""
    with tempfile.TemporaryDirectory() as home:
        path = Path(home) / "fanout.json"
        path.write_text(json.dumps(blueprint(lanes, collect)))
        words = ["run", str(path), "--json"] + ([] if durable else ["--ephemeral"])
        done = once(mse(*words), mse_env(home))
    doc = json.loads(done.stdout or "{}")
    if doc.get("status") != "done" or len(doc["final_ctx"]["lanes"]) != lanes:
        raise RuntimeError(f"the fanout did not finish: {done.stdout[-300:]}")
    return done


def measure(lanes: int, collect: bool, durable: bool, reps: int) -> Metrics:
    """The probe: wall seconds and peak RSS (MB) of `reps` whole runs."""
    done = [run_once(lanes, collect, durable) for _ in range(reps)]
    return {"secs": [d.seconds for d in done], "rss_mb": [d.rss_mb for d in done]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_items", description=__doc__)
    parser.add_argument("--lanes", default="1000,2000")
    parser.add_argument("--durable", action="store_true", help="record in the default SQLite store")
    parser.add_argument("--collect-only", action="store_true", help="skip the whole-ctx join (quadratic)")
    args = parser.parse_args(argv)
    print(f"at start: {load()}")
    for lanes in (int(n) for n in args.lanes.split(",")):
        for collect in (True,) if args.collect_only else (False, True):
            done = run_once(lanes, collect, args.durable)
            how = "collect $.r" if collect else "whole lane ctx"
            print(f"{lanes} lanes over $.items, join {how}: {done.seconds:.2f} s, {done.rss_mb:.0f} MB")
    print(f"at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
