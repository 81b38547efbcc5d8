"""The catalogue: each workload of the issue, the probes on both sides, the floor beside them, the targets."""

from __future__ import annotations

from dataclasses import dataclass

from .harness import (
    Comparison,
    Measure,
    Probe,
    Workload,
    at_most,
    cheaper_than_peer,
    exactly,
    within_floor,
)


@dataclass(frozen=True)
class Sizes:
    """How much work each mode does; quick mode keeps the whole suite under a minute.

    `reps` is per round: the full mode runs three interleaved rounds, so each figure is a median of 9.
    """

    reps: int
    seq_steps: int
    lanes: tuple[int, ...]
    spawns: dict[str, int]
    lua_steps: int
    resume_steps: int
    in_flight: int

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        if quick:
            return cls(3, 200, (10, 100, 1000), {"cat": 30, "python": 5}, 200, 200, 2_000)
        return cls(3, 1000, (10, 100, 1000, 10_000), {"cat": 60, "python": 12}, 1000, 1000, 10_000)


FLOOR_TASK = "create_task + await"
FLOOR_COMMIT = "SQLite WAL commit"
LANGGRAPH = "LangGraph"
LANGGRAPH_SQLITE = "LangGraph + SqliteSaver"
DBOS = "DBOS (SQLite)"
OURS = "mlua-swarm"

# Our durability modes beside the LangGraph mode with the same promise (each side's default in the middle).
DURABILITY_PAIRS = (("sync", "sync"), ("batch", "async"), ("exit", "exit"))


def _task_floor(s: Sizes) -> Measure:
    return Measure(FLOOR_TASK, Probe.of("bench.floor:create_task_await", n=10_000, reps=s.reps), "us_per_op")


def _commit_floor(s: Sizes, durability: str) -> Measure:
    """One WAL commit, fsynced (synchronous=FULL) for our `sync` mode, NORMAL for the others."""
    synchronous = "FULL" if durability == "sync" else "NORMAL"
    probe = Probe.of("bench.floor:sqlite_commit", n=2000, reps=s.reps, synchronous=synchronous)
    return Measure(f"{FLOOR_COMMIT} ({synchronous})", probe, "us_per_op")


def _ours_memory(s: Sizes) -> Measure:
    return Measure(OURS, Probe.of("bench.ours_run:seq_memory", n=s.seq_steps, reps=s.reps), "us_per_step")


def _ours_durable(s: Sizes, mode: str) -> Probe:
    return Probe.of("bench.ours_run:seq_durable", n=s.seq_steps, reps=s.reps, durability=mode)


def _lg_durable(s: Sizes, mode: str, synchronous: str = "FULL") -> Probe:
    return Probe.of(
        "bench.peers_langgraph:seq",
        n=s.seq_steps,
        reps=s.reps,
        checkpointer="sqlite",
        durability=mode,
        synchronous=synchronous,
    )


def _dbos(s: Sizes) -> Probe:
    return Probe.of("bench.peers_dbos:seq", n=s.seq_steps, reps=s.reps)


def seq_rows(quick: bool) -> list[Comparison]:
    s = Sizes.for_mode(quick)
    engine_only = Measure(
        f"{OURS} (engine only)", Probe.of("bench.ours_engine:seq_memory", n=s.seq_steps, reps=s.reps), "us_per_step"
    )
    langgraph = Measure(LANGGRAPH, Probe.of("bench.peers_langgraph:seq", n=s.seq_steps, reps=s.reps), "us_per_step")
    ephemeral = Measure(
        OURS,
        Probe.of("bench.ours_run:seq_durable", n=s.seq_steps, reps=s.reps, durability="batch", store="memory"),
        "us_per_step",
    )
    targets = (at_most(30, "us"), cheaper_than_peer(4))
    async_def = Measure(f"{OURS} async def agent", _ours_memory(s).probe, "us_per_step")

    def plain(inline: bool) -> Measure:
        probe = Probe.of("bench.ours_run:seq_memory", n=s.seq_steps, reps=s.reps, fn="inc_def", inline=inline)
        return Measure(OURS, probe, "us_per_step")

    return [
        Comparison("in memory, Blueprint run", "us/step", _ours_memory(s), langgraph, _task_floor(s), targets),
        Comparison("recorded in the memory store", "us/step", ephemeral, langgraph, _task_floor(s), targets),
        Comparison("in memory, engine only", "us/step", engine_only, langgraph, _task_floor(s), targets),
        Comparison("plain def agent, worker thread", "us/step", plain(False), langgraph, async_def, ()),
        Comparison("plain def agent, spec.inline", "us/step", plain(True), langgraph, async_def, (within_floor(1.5),)),
    ]


def durable_rows(quick: bool) -> list[Comparison]:
    """Each of our modes beside LangGraph's matching one at the same SQLite synchronous setting, then
    DBOS beside our fsync mode.

    Like for like: our `sync` fsyncs every commit (synchronous=FULL), as LangGraph's SqliteSaver does
    at SQLite's default and DBOS always does; our `batch` and `exit` commit at synchronous=NORMAL, so
    LangGraph runs at NORMAL beside them. The 50 us target is for a durable step as users get it by
    default (`batch`, and `exit`); `sync` fsyncs every commit, whose floor alone is above that here.
    """
    s = Sizes.for_mode(quick)
    rows = []
    for ours, theirs in DURABILITY_PAIRS:
        synchronous = "FULL" if ours == "sync" else "NORMAL"
        absolute = () if ours == "sync" else (at_most(50, "us"),)
        rows.append(
            Comparison(
                f"SQLite {synchronous}, ours {ours} vs durability={theirs}",
                "us/step",
                Measure(OURS, _ours_durable(s, ours), "us_per_step"),
                Measure(
                    f"{LANGGRAPH_SQLITE} ({theirs}, {synchronous})", _lg_durable(s, theirs, synchronous), "us_per_step"
                ),
                _commit_floor(s, ours),
                (*absolute, cheaper_than_peer(10)),
            )
        )
    rows.append(
        Comparison(
            "SQLite FULL, ours sync vs DBOS",
            "us/step",
            Measure(OURS, _ours_durable(s, "sync"), "us_per_step"),
            Measure(DBOS, _dbos(s), "us_per_step"),
            _commit_floor(s, "sync"),
            (cheaper_than_peer(25),),
        )
    )
    return rows


def fanout_rows(quick: bool) -> list[Comparison]:
    s = Sizes.for_mode(quick)
    rows = []
    for lanes in s.lanes:
        targets = (at_most(50, "us"),) if lanes == 1000 else ()
        rows.append(
            Comparison(
                f"{lanes:,} lanes, join all",
                "us/lane",
                Measure(OURS, Probe.of("bench.ours_run:fanout", lanes=lanes, reps=s.reps), "us_per_lane"),
                Measure(
                    f"{LANGGRAPH} Send",
                    Probe.of("bench.peers_langgraph:fanout", lanes=lanes, reps=s.reps),
                    "us_per_lane",
                ),
                Measure(
                    "create + gather tasks",
                    Probe.of("bench.floor:gather_lanes", lanes=lanes, reps=s.reps),
                    "us_per_lane",
                ),
                targets,
            )
        )
    return rows


def subprocess_rows(quick: bool) -> list[Comparison]:
    s = Sizes.for_mode(quick)
    return [
        Comparison(
            f"cold child: {child}",
            "ms/step",
            Measure(OURS, Probe.of("bench.ours_engine:subprocess_seq", child=child, n=n, reps=s.reps), "ms_per_step"),
            None,
            Measure(
                "bare create_subprocess_exec",
                Probe.of("bench.floor:bare_spawn", child=child, n=n, reps=s.reps),
                "ms_per_op",
            ),
            (within_floor(1.2),),
        )
        for child, n in s.spawns.items()
    ]


def lua_rows(quick: bool) -> list[Comparison]:
    s = Sizes.for_mode(quick)
    probe = Probe.of(
        "bench.ours_engine:kind_seq",
        kind="lua",
        spec={"source": "return _CTX + 1"},
        first=0,
        n=s.lua_steps,
        reps=s.reps,
    )
    return [
        Comparison(
            "Lua step (fresh VM per attempt)",
            "us/step",
            Measure(OURS, probe, "us_per_step"),
            None,
            Measure(
                "new LuaRuntime + call",
                Probe.of("bench.floor:lua_fresh_call", n=s.lua_steps, reps=s.reps),
                "us_per_op",
            ),
        )
    ]


def resume_rows(quick: bool) -> list[Comparison]:
    s = Sizes.for_mode(quick)
    n, kill = s.resume_steps, s.resume_steps // 2
    ours = Probe.of("bench.ours_run:crash_resume", n=n, kill_after=kill)
    peers = (
        (f"{LANGGRAPH_SQLITE} (sync)", Probe.of("bench.peers_langgraph:crash_resume", n=n, kill_after=kill)),
        (DBOS, Probe.of("bench.peers_dbos:crash_resume", n=n, kill_after=kill)),
    )
    rows = []
    for label, peer in peers:
        rows.append(
            Comparison(
                f"{n:,}-step run killed in step {kill}: finished steps re-executed",
                "steps",
                Measure(OURS, ours, "reexecuted"),
                Measure(label, peer, "reexecuted"),
                targets=(exactly(0, "steps"),),
            )
        )
        rows.append(
            Comparison(
                f"{n:,}-step run killed in step {kill}: resume to the end",
                "ms",
                Measure(OURS, ours, "resume_ms"),
                Measure(label, peer, "resume_ms"),
            )
        )
    return rows


def bytes_rows(quick: bool) -> list[Comparison]:
    s = Sizes.for_mode(quick)
    return [
        Comparison(
            f"SQLite, ours batch vs {LANGGRAPH_SQLITE} (async)",
            "bytes/step",
            Measure(OURS, _ours_durable(s, "batch"), "bytes_per_step"),
            Measure(f"{LANGGRAPH_SQLITE} (async)", _lg_durable(s, "async"), "bytes_per_step"),
        ),
        Comparison(
            "SQLite, ours batch vs DBOS",
            "bytes/step",
            Measure(OURS, _ours_durable(s, "batch"), "bytes_per_step"),
            Measure(DBOS, _dbos(s), "bytes_per_step"),
        ),
    ]


def middleware_rows(quick: bool) -> list[Comparison]:
    s = Sizes.for_mode(quick)
    probe = Probe.of("bench.ours_engine:stack_overhead", n=s.seq_steps, reps=s.reps)
    return [
        Comparison(
            "empty middleware stack: added cost per step",
            "us/step",
            Measure(OURS, probe, "overhead_us", with_min=False),
            None,
            Measure(f"{OURS} step, bare spawner", probe, "bare_us"),
        )
    ]


def memory_rows(quick: bool) -> list[Comparison]:
    s = Sizes.for_mode(quick)
    target = (at_most(300, "MB"),) if s.in_flight == 10_000 else ()
    langgraph = Measure(
        f"{LANGGRAPH} Send (async nodes)",
        Probe.of("bench.peers_langgraph:sleeping_rss", lanes=s.in_flight, sleep_secs=0.5),
        "rss_mb",
    )
    floor = Measure("parked asyncio tasks", Probe.of("bench.floor:sleeping_tasks_rss", n=s.in_flight), "rss_mb")
    return [
        Comparison(
            f"{s.in_flight:,} sleeping fanout lanes, Blueprint run",
            "MB RSS",
            Measure(OURS, Probe.of("bench.ours_run:sleeping_rss", lanes=s.in_flight, sleep_secs=0.5), "rss_mb"),
            langgraph,
            floor,
            target,
        ),
        Comparison(
            f"{s.in_flight:,} parked steps, engine only",
            "MB RSS",
            Measure(OURS, Probe.of("bench.ours_engine:sleeping_rss", steps=s.in_flight), "rss_mb"),
            langgraph,
            floor,
            target,
        ),
    ]


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "seq",
        "1. Sequential flow of N trivial Python steps, in memory",
        "Ours: a Blueprint `loop` whose body is one `python` step adding 1 to `$.i`, run with "
        "`run_blueprint` and no store (what `mse run --ephemeral` does); the same run recorded in the "
        "in-memory store (`--store memory://`); and the same N steps driven straight through the engine "
        "(`start_task` + `dispatch_attempt`, async Python function). LangGraph: a `StateGraph` loop of one "
        "node adding 1, no checkpointer, `invoke` (its fastest path). Floor: `await asyncio.create_task(noop())`.",
        seq_rows,
    ),
    Workload(
        "durable",
        "1b. Sequential flow of N trivial steps, durable on SQLite",
        "Ours: the same Blueprint on a fresh SQLite store per repetition under each `--durability` mode. "
        "LangGraph: the same loop with `SqliteSaver` on a fresh WAL file, paired with the durability mode "
        "that makes the same promise (ours `batch` and LangGraph `async` are each side's default) and "
        "run at the same SQLite synchronous setting: FULL (an fsync per commit) beside our `sync`, NORMAL "
        "beside `batch` and `exit`, which commit without fsync. DBOS: a `@DBOS.workflow` calling N "
        "`@DBOS.step`s on a SQLite system database; it always runs FULL, so it sits beside `sync` only. "
        "Floor: one INSERT per transaction on a WAL database at the row's synchronous setting.",
        durable_rows,
    ),
    Workload(
        "fanout",
        "2. Fanout with join all",
        "Ours: a Blueprint `fanout` over N literal items with join `all`, one trivial `python` step per lane. "
        "LangGraph: `Send` to N copies of a trivial node, results joined into one list, `invoke`. "
        "Floor: create N tasks and `gather` them. Figures are per lane.",
        fanout_rows,
    ),
    Workload(
        "subprocess",
        "3. Cold subprocess step",
        "Ours: sequential steps of a `subprocess` agent (plain mode: prompt on stdin, JSON on stdout, own "
        "process group, stderr drained, MSE_* environment). Floor: `asyncio.create_subprocess_exec` of the "
        "same argv, prompt on stdin, `communicate`, no engine. Children: `cat` (echoes the JSON prompt; the "
        "harshest case) and a one-line Python script.",
        subprocess_rows,
    ),
    Workload(
        "lua",
        "4. Lua step",
        "Ours: sequential steps of a `lua` agent whose chunk is `return _CTX + 1` (a fresh Lua VM per "
        "attempt, as upstream). Floor: a new `lupa.LuaRuntime`, load one function, call it.",
        lua_rows,
    ),
    Workload(
        "resume",
        "5. Crash and resume",
        "Each side runs a sequence of N trivial steps on SQLite in a fresh process whose step function "
        "kills the process with SIGKILL halfway through (inside step N/2); a second fresh process then "
        "finishes the run. Ours: `mse run` (default durability), then `mse runs resume`. LangGraph: the "
        "loop graph on SqliteSaver with durability `sync`, then `invoke(None)` on the same thread. DBOS: "
        "the workflow, then a relaunch, which recovers it. Re-executed = steps that had finished before "
        "the kill and ran again. Resume time is the second process's wall time, interpreter start included.",
        resume_rows,
    ),
    Workload(
        "bytes",
        "6. Bytes stored per step",
        "Database size after one run of N steps (WAL checkpointed into the file), divided by N; the same "
        "runs as workload 1b. DBOS: growth of its system database over one workflow.",
        bytes_rows,
    ),
    Workload(
        "middleware",
        "7. Empty middleware stack",
        "The in-memory engine-only sequence, through the stack `middleware.link` builds for a Blueprint "
        "that configures nothing (the always-on agent-context layer) and through the bare "
        "`InProcSpawner`, alternately in one process; the figure is the difference per step, beside "
        "the bare step it is added to.",
        middleware_rows,
    ),
    Workload(
        "memory",
        "8. Memory with 10,000 in-flight steps",
        "Peak RSS of a fresh process (interpreter and imports included) while N steps are in flight at "
        "once. Ours: a Blueprint `fanout` of N lanes whose `python` step sleeps 0.5 s; and N steps "
        "dispatched straight through the engine, each parked on an event. LangGraph: `Send` to N lanes "
        "of an async node sleeping 0.5 s, `ainvoke`. Floor: N bare asyncio tasks parked on one event.",
        memory_rows,
    ),
)
