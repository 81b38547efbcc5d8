"""The catalogue: each workload of the issue, the probes on both sides, the floor beside them, the targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .big_input import KEY_BYTES
from .document import ORDER
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
    """How much work each mode does; quick mode keeps the whole suite to a minute or two.

    `reps` is per round: the full mode runs three interleaved rounds, so each figure is a median of 9.
    """

    reps: int
    seq_steps: int
    lanes: tuple[int, ...]
    spawns: dict[str, int]
    lua_steps: int
    resume_steps: int
    in_flight: int
    process_steps: tuple[int, int]
    """The two sizes of the whole-process `mse run` rows (start-up cancels out between them; the larger
    one runs long enough that the jitter of two process start-ups is a few percent of its steps)."""
    startup_reps: int
    result_mb: int
    item_lanes: int
    big_keys: int
    big_steps: tuple[int, int]
    """The two loop lengths of the large-input rows (a step's cost is the difference over the difference)."""
    flat_steps: tuple[int, int]
    """Run lengths of the memory-flatness rows with trivial values."""
    flat_mib_steps: tuple[int, int]
    """Run lengths of the memory-flatness rows with 1 MiB values."""

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        if quick:
            return cls(
                reps=3,
                seq_steps=200,
                lanes=(10, 100, 1000),
                spawns={"cat": 30, "python": 5},
                lua_steps=200,
                resume_steps=200,
                in_flight=2_000,
                process_steps=(200, 2_000),
                startup_reps=2,
                result_mb=10,
                item_lanes=2_000,
                big_keys=6_800,
                big_steps=(5, 15),
                flat_steps=(1_000, 10_000),
                flat_mib_steps=(10, 50),
            )
        return cls(
            reps=3,
            seq_steps=1000,
            lanes=(10, 100, 1000, 10_000),
            spawns={"cat": 60, "python": 12},
            lua_steps=1000,
            resume_steps=1000,
            in_flight=10_000,
            process_steps=(1_000, 20_000),
            startup_reps=5,
            result_mb=100,
            item_lanes=10_000,
            big_keys=6_800,
            big_steps=(20, 60),
            flat_steps=(10_000, 100_000),
            flat_mib_steps=(100, 500),
        )


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
    engine_only = Measure(OURS, Probe.of("bench.ours_engine:seq_memory", n=s.seq_steps, reps=s.reps), "us_per_step")
    recorded = Measure(
        OURS,
        Probe.of("bench.ours_run:seq_durable", n=s.seq_steps, reps=s.reps, durability="batch", store="memory"),
        "us_per_step",
    )
    return [
        Comparison(
            "in process, Blueprint run (run_blueprint) vs LangGraph invoke",
            "us/step",
            _ours_memory(s),
            _langgraph(s),
            _task_floor(s),
            (at_most(20, "us"),),
        ),
        Comparison(
            "in process, recorded in the memory store vs LangGraph invoke",
            "us/step",
            recorded,
            _langgraph(s),
            _task_floor(s),
        ),
        Comparison(
            "engine only (no flow, no run layer) vs LangGraph invoke",
            "us/step",
            engine_only,
            _langgraph(s),
            _task_floor(s),
        ),
    ]


def _langgraph(s: Sizes) -> Measure:
    return Measure(
        f"{LANGGRAPH} invoke", Probe.of("bench.peers_langgraph:seq", n=s.seq_steps, reps=s.reps), "us_per_step"
    )


def plain_def_rows(quick: bool) -> list[Comparison]:
    """A plain `def` agent against the same agent as `async def`, in one process each."""
    s = Sizes.for_mode(quick)
    async_def = Measure(f"{OURS}, async def agent", _ours_memory(s).probe, "us_per_step")

    def plain(inline: bool | None) -> Measure:
        probe = Probe.of("bench.ours_run:seq_memory", n=s.seq_steps, reps=s.reps, fn="inc_def", inline=inline)
        return Measure(OURS, probe, "us_per_step")

    return [
        Comparison(
            "plain def agent, the default (worker threads until it proved quick, then the event loop) "
            "vs async def agent",
            "us/step",
            plain(None),
            _langgraph(s),
            async_def,
            (within_floor(1.5),),
        ),
        Comparison(
            "plain def agent, spec.inline: true (always the event loop) vs async def agent",
            "us/step",
            plain(True),
            _langgraph(s),
            async_def,
            (within_floor(1.5),),
        ),
        Comparison(
            "plain def agent, spec.inline: false (always a worker thread) vs async def agent",
            "us/step",
            plain(False),
            _langgraph(s),
            async_def,
        ),
    ]


def process_rows(quick: bool) -> list[Comparison]:
    """`mse run --ephemeral` as users run it beside LangGraph `invoke` in a whole process, per step."""
    s = Sizes.for_mode(quick)
    small, large = s.process_steps
    reps = 1 if quick else s.reps

    def ours(tty: bool) -> Probe:
        return Probe.of("bench.cli:run_per_step", small=small, large=large, reps=reps, tty=tty)

    langgraph = Probe.of("bench.cli:langgraph_per_step", small=small, large=large, reps=reps)
    peer = Measure(f"{LANGGRAPH} invoke, whole process", langgraph, "us_per_step")
    return [
        Comparison(
            "mse run --ephemeral, plain progress (stderr not a terminal) vs LangGraph invoke, whole processes",
            "us/step",
            Measure(OURS, ours(False), "us_per_step"),
            peer,
            Measure("run_blueprint in process", _ours_memory(s).probe, "us_per_step"),
            (at_most(30, "us"), cheaper_than_peer(8)),
        ),
        Comparison(
            "mse run --ephemeral, terminal live view (stderr on a pty) vs plain progress",
            "us/step",
            Measure(OURS, ours(True), "us_per_step"),
            peer,
            Measure("mse run, plain progress", ours(False), "us_per_step"),
            (within_floor(1.1),),
        ),
        Comparison(
            "start-up of the run process (intercept of the two sizes) vs LangGraph's",
            "ms",
            Measure(OURS, ours(False), "startup_ms"),
            Measure(f"{LANGGRAPH}, whole process", langgraph, "startup_ms"),
        ),
    ]


def startup_rows(quick: bool) -> list[Comparison]:
    s = Sizes.for_mode(quick)
    floor = Measure("python -c pass", Probe.of("bench.cli:python_startup_ms", reps=s.startup_reps), "ms")

    def command(*words: str, **store: int) -> Probe:
        return Probe.of("bench.cli:startup_ms", words=list(words), reps=s.startup_reps, **store)

    huge = command("runs", "list", "--limit", "20", result_mb=s.result_mb)
    return [
        Comparison(
            "mse --help, whole process",
            "ms",
            Measure(OURS, command("--help"), "ms"),
            None,
            floor,
            (at_most(100, "ms"),),
        ),
        Comparison(
            "mse runs list, 30 stored runs, whole process",
            "ms",
            Measure(OURS, command("runs", "list", stored_runs=30), "ms"),
            None,
            floor,
            (at_most(200, "ms"),),
        ),
        Comparison(
            f"mse runs list --limit 20 beside one {s.result_mb} MB stored result, whole process",
            "ms",
            Measure(OURS, huge, "ms"),
            None,
            floor,
            (at_most(200, "ms"),),
        ),
        Comparison(
            f"mse runs list --limit 20 beside one {s.result_mb} MB stored result: peak RSS",
            "MB",
            Measure(OURS, huge, "rss_mb"),
        ),
    ]


def fanout_items_rows(quick: bool) -> list[Comparison]:
    s = Sizes.for_mode(quick)
    lanes = s.item_lanes
    full = lanes == 10_000
    rows = []
    for durable in (False, True):
        probe = Probe.of("bench.fanout_items:measure", lanes=lanes, collect=True, durable=durable, reps=1)
        where = "durable (default SQLite store)" if durable else "in memory (--ephemeral)"
        case = f"mse run, fanout of {lanes:,} lanes over $.items with collect, {where}"
        rows.append(Comparison(case, "s", Measure(OURS, probe, "secs"), targets=(at_most(3, "s"),) if full else ()))
        rows.append(
            Comparison(
                f"{case}: peak RSS", "MB", Measure(OURS, probe, "rss_mb"), targets=(at_most(200, "MB"),) if full else ()
            )
        )
    return rows


def big_input_rows(quick: bool) -> list[Comparison]:
    s = Sizes.for_mode(quick)
    size = s.big_keys * KEY_BYTES / 1e6
    short = s.big_steps[0]
    floor = Measure(
        "orjson encode + decode of the input", Probe.of("bench.big_input:copy_ms", keys=s.big_keys, reps=s.reps), "ms"
    )
    rows = []
    for echoed in (False, True):
        for durable in (False, True):
            probe = Probe.of(
                "bench.big_input:per_step_ms",
                keys=s.big_keys,
                steps=s.big_steps,
                reps=s.reps,
                durable=durable,
                echoed=echoed,
            )
            where = "durable (SQLite, batch)" if durable else "in memory"
            what = "returning its" if echoed else "with a"
            case = f"step {what} {size:.1f} MB object input, {where}, in process"
            rows.append(
                Comparison(
                    case,
                    "ms/step",
                    Measure(OURS, probe, "ms_per_step", with_min=False),
                    None,
                    floor,
                    (at_most(5, "ms"),) if durable and not echoed else (),
                )
            )
            rows.append(
                Comparison(
                    f"{case}: a {short}-step run's whole time over its steps",
                    "ms/step",
                    Measure(OURS, probe, "ms_per_step_whole"),
                    None,
                    floor,
                )
            )
    return rows


def rss_flat_rows(quick: bool) -> list[Comparison]:
    """Peak RSS of whole `mse run` processes at two lengths: the longer one beside the shorter one."""
    s = Sizes.for_mode(quick)
    full = not quick
    rows = []
    cases = (
        ("trivial steps", 16, s.flat_steps, True),
        ("steps of 1 MiB values", 1 << 20, s.flat_mib_steps, False),
        ("steps of 1 MiB values", 1 << 20, s.flat_mib_steps, True),
    )
    for what, size, (short, long), durable in cases:
        where = "durable (SQLite, batch)" if durable else "ephemeral"

        def probe(steps: int, size: int = size, durable: bool = durable) -> Probe:
            return Probe.of("bench.memory:peak_rss", steps=steps, value_bytes=size, durable=durable)

        limit = (at_most(60, "MB"),) if full and size == 16 else ()
        rows.append(
            Comparison(
                f"mse run, {long:,} {what}, {where} vs the same at {short:,}",
                "MB RSS",
                Measure(OURS, probe(long), "rss_mb"),
                None,
                Measure(f"same, {short:,} steps", probe(short), "rss_mb"),
                (*limit, within_floor(1.2)),
                rounds=1,
            )
        )
    return rows


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
                f"ours {ours} vs {LANGGRAPH_SQLITE} durability={theirs}, both SQLite synchronous={synchronous}",
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
            "ours sync vs DBOS, both SQLite synchronous=FULL",
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
    rows.append(
        Comparison(
            "1,000 lanes, join all, durable `batch` (SQLite)",
            "us/lane",
            Measure(OURS, Probe.of("bench.ours_run:fanout_durable", lanes=1000, reps=s.reps), "us_per_lane"),
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
            f"ours batch vs {LANGGRAPH_SQLITE} durability=async, both SQLite synchronous=NORMAL",
            "bytes/step",
            Measure(OURS, _ours_durable(s, "batch"), "bytes_per_step"),
            Measure(f"{LANGGRAPH_SQLITE} (async, NORMAL)", _lg_durable(s, "async", "NORMAL"), "bytes_per_step"),
        ),
        Comparison(
            "ours batch vs DBOS (SQLite)",
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


SEQ_OURS = "a Blueprint `loop` whose body is one `python` step (`async def`) adding 1 to `$.i`"
LANGGRAPH_LOOP = "a `StateGraph` loop of one node adding 1, no checkpointer, `invoke` (its fastest path)"

WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "seq",
        "Sequential flow of N trivial Python steps, in one process (run layer and engine only)",
        f"Ours: {SEQ_OURS}, run with `run_blueprint` and no store (what `mse run --ephemeral` runs, without "
        "the command's start-up and progress view: see the whole-process rows); the same run recorded in the "
        "in-memory store (`--store memory://`); and the same N steps driven straight through the engine "
        "(`start_task` + `dispatch_attempt`, async Python function; *engine only*: no flow evaluator, no run "
        f"layer). LangGraph: {LANGGRAPH_LOOP}. Floor: `await asyncio.create_task(noop())`.",
        seq_rows,
    ),
    Workload(
        "process",
        "`mse run` per step, whole processes as users run them",
        f"Ours: `mse run BLUEPRINT --ephemeral` in a fresh process ({SEQ_OURS}), progress on as a user gets "
        "it: stderr to a file (plain progress lines) or on a pseudo-terminal (the terminal live view). "
        f"LangGraph: a fresh `python` process that imports LangGraph, builds {LANGGRAPH_LOOP}, and runs it. "
        "Each repetition runs both sides at two sizes back to back; per step is the difference of the two "
        "wall times over the difference of the sizes, so interpreter start-up and imports cancel out "
        "(the start-up row is the intercept; both sides start from cached bytecode). Floor: the same "
        "Blueprint through `run_blueprint` in one "
        "process (the first row's ours / floor is what the command and its progress view add), and for the "
        "live view the plain-progress figure (the target is the live view's overhead: at most 10%).",
        process_rows,
    ),
    Workload(
        "startup",
        "Start-up: `mse` commands, whole processes",
        "Wall time of a fresh `mse` process until it exits, on a store (SQLite under a fresh MSE_HOME) holding "
        "30 small finished runs, and beside one run whose stored result is a huge JSON document; the last "
        "row is that listing's peak RSS. Floor: `python -c pass`, the interpreter's own start-up. Every "
        "process starts from cached bytecode, as an installed package does (PYTHONDONTWRITEBYTECODE is "
        "cleared; a warm-up run writes the caches).",
        startup_rows,
    ),
    Workload(
        "plain_def",
        "Plain `def` agents against `async def`, in one process",
        f"Ours: {SEQ_OURS.replace('(`async def`)', 'written as a plain `def`')}, through `run_blueprint`: by "
        "default (worker threads for its first calls, then, once 8 in a row returned within 50 us, called on "
        "the event loop), with `spec.inline: true` (always on the loop) and with `spec.inline: false` "
        "(always in a worker thread: safe to block; no target). Floor: the same agent as `async def`. "
        "LangGraph, which calls plain nodes inline: "
        f"{LANGGRAPH_LOOP}.",
        plain_def_rows,
    ),
    Workload(
        "durable",
        "Sequential flow of N trivial steps, durable on SQLite, in one process",
        "Ours: the same Blueprint through the run layer on a fresh SQLite store per repetition under each "
        "`--durability` mode. LangGraph: the same loop with `SqliteSaver` on a fresh WAL file, paired with the "
        "durability mode that makes the same promise (ours `batch` and LangGraph `async` are each side's "
        "default) and run at the same SQLite synchronous setting: FULL (an fsync per commit) beside our "
        "`sync`, NORMAL beside `batch` and `exit`, which commit without fsync. DBOS: a `@DBOS.workflow` "
        "calling N `@DBOS.step`s on a SQLite system database; it always runs FULL, so it sits beside `sync` "
        "only. Floor: one INSERT per transaction on a WAL database at the row's synchronous setting.",
        durable_rows,
    ),
    Workload(
        "fanout",
        "Fanout with join all, in one process",
        "Ours: a Blueprint `fanout` over N literal items with join `all`, one trivial `python` step per lane, "
        "`run_blueprint`. LangGraph: `Send` to N copies of a trivial node, results joined into one list, "
        "`invoke`. Floor: create N tasks and `gather` them. The durable row records the same fanout in a fresh "
        "SQLite store (`batch`: every lane's step committed before the lane moves on, the lanes of a round "
        "sharing one commit), ours only. Figures are per lane.",
        fanout_rows,
    ),
    Workload(
        "fanout_items",
        "Fanout over items held in the ctx, whole `mse run` processes",
        "Ours: `mse run BLUEPRINT --json` of a fanout over `$.items` (N integers in the initial ctx), one "
        "`identity` step per lane, each lane joined as what it produced (`collect: $.r`; upstream's join, "
        "the whole lane ctx with the items in it, grows with the square of N), in memory and recorded in the "
        "default SQLite store. Wall time of the whole process (start-up included) and its peak RSS.",
        fanout_items_rows,
    ),
    Workload(
        "big_input",
        "A step with a large input, in one process",
        "Ours: a Blueprint `loop` whose `rust_fn` step takes `$.big`, a JSON object of small objects (about "
        f"{KEY_BYTES} bytes per key), as its input and reads all of it, run through `Run` without a store and "
        "on a fresh SQLite store (`batch`); then a step that returns its input. Per step is a step's marginal "
        "cost: two loop lengths run in each repetition, the difference of their times over the difference of "
        "their steps, so what a run pays once (a durable run writes its 1 MB init ctx and final ctx) cancels "
        "out; the row after it is the shorter run's whole time over its steps, those writes included. Floor: "
        "one orjson encode and decode of the same object (the cost of one copy of it).",
        big_input_rows,
    ),
    Workload(
        "subprocess",
        "Cold subprocess step, engine only",
        "Ours: sequential steps of a `subprocess` agent through the engine (plain mode: prompt on stdin, JSON "
        "on stdout, own process group, stderr drained, MSE_* environment). Floor: "
        "`asyncio.create_subprocess_exec` of the same argv, prompt on stdin, `communicate`, no engine. "
        "Children: `cat` (echoes the JSON prompt; the harshest case) and a one-line Python script.",
        subprocess_rows,
    ),
    Workload(
        "lua",
        "Lua step, engine only",
        "Ours: sequential steps of a `lua` agent whose chunk is `return _CTX + 1` (a fresh Lua VM per "
        "attempt, as upstream), through the engine. Floor: a new `lupa.LuaRuntime`, load one function, call it.",
        lua_rows,
    ),
    Workload(
        "resume",
        "Crash and resume, whole processes",
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
        "Bytes stored per step",
        "Database size after one run of N steps (WAL checkpointed into the file), divided by N; the same "
        "runs as the durable rows. DBOS: growth of its system database over one workflow.",
        bytes_rows,
    ),
    Workload(
        "middleware",
        "Empty middleware stack, engine only",
        "The in-memory engine-only sequence, through the stack `middleware.link` builds for a Blueprint "
        "that configures nothing (the always-on agent-context layer) and through the bare "
        "`InProcSpawner`, alternately in one process; the figure is the difference per step, beside "
        "the bare step it is added to.",
        middleware_rows,
    ),
    Workload(
        "memory",
        "Memory with many in-flight steps",
        "Peak RSS of a fresh process (interpreter and imports included) while N steps are in flight at "
        "once. Ours: a Blueprint `fanout` of N lanes whose `python` step sleeps 0.5 s; and N steps "
        "dispatched straight through the engine (*engine only*), each parked on an event. LangGraph: `Send` "
        "to N lanes of an async node sleeping 0.5 s, `ainvoke`. Floor: N bare asyncio tasks parked on one "
        "event.",
        memory_rows,
    ),
    Workload(
        "rss_flat",
        "Memory by run length, whole `mse run` processes",
        "Peak RSS of a fresh `mse run --json` of a Blueprint `loop` whose `python` step returns a fresh "
        "string each time (16 bytes, or 1 MiB; the ctx holds only the latest), ephemeral or recorded in "
        "SQLite (`batch`), at two run lengths: the longer run beside the shorter one. Flat (the longer "
        "within 1.2x of the shorter) means the process holds what the ctx holds, not every finished step.",
        rss_flat_rows,
    ),
)


@dataclass(frozen=True)
class Component:
    """A benchmark with its own command (`python -m MODULE ARGS --write PATH`) that writes one section."""

    name: str
    title: str
    module: str
    quick_args: tuple[str, ...]
    full_args: tuple[str, ...]

    def args(self, quick: bool) -> list[str]:
        return list(self.quick_args if quick else self.full_args)


COMPONENTS: tuple[Component, ...] = (
    Component(
        "server",
        "Server: launch load and live events",
        "bench.server",
        ("--quick", "--rounds", "1", "--no-prefect"),
        ("--prefect-runs", "200", "--prefect-limit", "240"),
    ),
    Component("operators", "Operators over WebSocket", "bench.operators", ("--quick",), ()),
    Component("dashboard", "Dashboard: the run page of a big run", "bench.dashboard", ("--quick", "--loads", "2"), ()),
    Component("ray", "Ray agents: a step over a bare Ray round trip", "bench.ray_steps", ("--quick",), ()),
)


NAMES: tuple[str, ...] = tuple(w.name for w in WORKLOADS) + tuple(c.name for c in COMPONENTS)
"""Every section `python -m bench` can run (`--only` / `--skip` take these)."""


def _names(items: Sequence[str]) -> list[str]:
    return [name.strip() for item in items for name in item.split(",") if name.strip()]


def select(only: Sequence[str], skip: Sequence[str] = ()) -> list[str]:
    """The section names to run, in file order: those in `--only` (all when none), minus `--skip`."""
    wanted, unwanted = _names(only), _names(skip)
    unknown = [name for name in wanted + unwanted if name not in NAMES]
    if unknown:
        raise SystemExit(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
    chosen = set(wanted or NAMES) - set(unwanted)
    ordered = [n for n in ORDER if n in chosen]
    return ordered + [n for n in NAMES if n in chosen and n not in ordered]
