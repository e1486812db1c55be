"""``make bench``: the stack's own floors and our full path, measured in one run, on one machine
and one Redis; prints a table and writes ``BENCHMARKS.md``.

Floors (``bench/floor_*.py``, under the same daphne entry conditions as ours): a daphne echo, and
the bare relay of one job (browser socket → consumer → ``channel_layer.send`` → node consumer →
node, and back) built the naive Channels way, through the default Redis layer, the layer we ship
(pub/sub) and the in-memory layer. Full path: real ``schedulerproj.server`` and
``scheduler_worker`` processes; an ``utterance`` in, ``job_assign`` at the node, ``job_result``
back, ``translation_result`` at the browser. See ``bench/README.md`` for the knobs.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
CHILD_ENV = dict(os.environ)  # what the servers get: this process changes its own below
LAYERS = ("default", "pubsub", "memory")
NOHOP_LABEL = "relay: shipped layer, no thread hop"
CALLS_LABEL = "relay: no thread hop + 2 script calls"
LAYER_LABELS = {
    "default": "relay: default layer",
    "pubsub": "relay: shipped layer",
    "memory": "relay: in-memory layer",
}
PLAIN_PUBSUB = "channels_redis.pubsub.RedisPubSubChannelLayer"
# The "before" of what was done for the throughput target, measured beside the shipped stack in
# every run (override or switch off with BENCH_VARIANTS): the plain pub/sub layer, where every
# frame goes through Redis even between two sockets of one process. Settings only.
DEFAULT_VARIANTS = f"plain-pubsub:CHANNEL_LAYER_BACKEND={PLAIN_PUBSUB}"
VARIANT_NOTES = {
    f"CHANNEL_LAYER_BACKEND={PLAIN_PUBSUB}": "every frame is PUBLISHed and pushed back, even to a consumer in the "
    "same process (the shipped `dispatch.layers.LocalFirstPubSubChannelLayer` hands those straight to its queue)",
}
IDLE_WATCH_S = 3.0
HEARTBEAT_ROUNDS = 2  # heartbeats per idle node in the fleet phase
BACKGROUND_S = 6.0  # MONITOR with no load: what every stack's worker and idle layers send


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw else default


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw else default


@dataclass(frozen=True)
class Params:
    pairs: int
    rounds: int
    sat_s: float
    sat_warmup_s: float
    lat_s: float
    lat_warmup_s: float
    count_jobs: int
    seq_jobs: int
    fleet_nodes: int
    fleet_concurrency: int
    heartbeat_rate: float
    pick_nodes: int
    pick_jobs: int
    pick_heartbeats: int
    pick_rounds: int
    profile: str  # auto (when a target is missed) | always | never
    profile_s: float
    out: Path
    variants: tuple[tuple[str, dict[str, str]], ...]

    @classmethod
    def from_env(cls) -> Params:
        quick = os.environ.get("BENCH_QUICK") == "1"
        return cls(
            pairs=env_int("BENCH_PAIRS", 50),
            rounds=env_int("BENCH_ROUNDS", 1 if quick else 5),
            sat_s=env_float("BENCH_SAT_S", 3 if quick else 5),
            sat_warmup_s=env_float("BENCH_SAT_WARMUP_S", 1),
            lat_s=env_float("BENCH_LAT_S", 3 if quick else 6),
            lat_warmup_s=env_float("BENCH_LAT_WARMUP_S", 1),
            count_jobs=env_int("BENCH_COUNT_JOBS", 200 if quick else 500),
            seq_jobs=env_int("BENCH_SEQ_JOBS", 300 if quick else 1500),
            fleet_nodes=env_int("BENCH_FLEET_NODES", 200 if quick else 10000),
            fleet_concurrency=env_int("BENCH_FLEET_CONCURRENCY", 50),
            heartbeat_rate=env_float("BENCH_HEARTBEAT_RATE", 2000),
            pick_nodes=env_int("BENCH_PICK_NODES", 1000 if quick else 10000),
            pick_jobs=env_int("BENCH_PICK_JOBS", 500 if quick else 2500),
            pick_heartbeats=env_int("BENCH_PICK_HEARTBEATS", 500 if quick else 2500),
            pick_rounds=env_int("BENCH_PICK_ROUNDS", 10),
            profile=os.environ.get("BENCH_PROFILE", "auto"),
            profile_s=env_float("BENCH_PROFILE_S", 8),
            out=Path(os.environ.get("BENCH_OUT", BASE_DIR / "BENCHMARKS.md")),
            variants=parse_variants(os.environ.get("BENCH_VARIANTS", DEFAULT_VARIANTS)),
        )


def parse_variants(raw: str) -> tuple[tuple[str, dict[str, str]], ...]:
    """``name:VAR=value,VAR=value;name2:...``: more full-path stacks measured beside the shipped one."""
    variants = []
    for item in filter(None, (part.strip() for part in raw.split(";"))):
        name, _, assignments = item.partition(":")
        env = dict(pair.split("=", 1) for pair in assignments.split(",") if "=" in pair)
        variants.append((name.strip(), env))
    return tuple(variants)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def med(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


# --- Configurations under test ---------------------------------------------------------------


@dataclass
class Config:
    key: str
    label: str
    kind: Any  # a loadgen Pair class
    base: str
    processes: list[Any]  # server first (and the worker for the full path)
    floor: bool
    pairs: list[Any] = field(default_factory=list)
    sat: list[dict[str, float]] = field(default_factory=list)
    lat: list[dict[str, float]] = field(default_factory=list)
    seq: list[dict[str, float]] = field(default_factory=list)
    monitor: Any = None
    counted: float = 0.0
    profile: Any = None

    def figure(self, phase: str, name: str) -> float:
        return med([window[name] for window in getattr(self, phase)])


def make_probe(config: Config, client: Any) -> Callable[[], dict[str, Any]]:
    from bench.procs import RedisSnapshot

    def probe() -> dict[str, Any]:
        return {
            "cpu": [process.cpu() for process in config.processes],
            "redis": RedisSnapshot.take(client),
            "loadgen": time.process_time(),
        }

    return probe


@dataclass
class JobCommands:
    """A MONITOR capture seen as the round trips' own commands: script calls other than the
    job's (``job_*``; the default layer's own ``eval``) are background (heartbeats of the fake
    nodes, worker ticks) and set apart with what they ran; other top-level commands are
    counted less what a no-load capture saw in as long (health-check pings, idle polls)."""

    top: Counter[str]
    internal: Counter[str]
    by_script: Counter[str]
    set_apart: Counter[str]
    seconds: float


ROOT_FRAMES = (
    "_run_module_as_main ", "_run_code ", "<module> (schedulerproj/server.py)", "main (schedulerproj/server.py)",
    "Server.run (daphne/server.py)", "AsyncioSelectorReactor.run ",
)


def background_script(name: str) -> bool:
    return name != "eval" and not name.startswith("job_")


def job_commands(count: Any, background: Any) -> JobCommands:
    scale = count.seconds / background.seconds if background.seconds else 0.0
    top: Counter[str] = Counter()
    set_apart: Counter[str] = Counter()
    for name, n in count.top.items():
        if name.startswith("evalsha ") and background_script(name[8:]):
            set_apart[name] += n
        elif name.startswith("evalsha ") or name == "eval":
            top[name] += n
        else:
            left = n - background.top.get(name, 0) * scale
            if left > 0.5:
                top[name] = round(left)
    internal: Counter[str] = Counter()
    by_script: Counter[str] = Counter()
    for (script, command), n in count.internal.items():
        if background_script(script):
            continue
        internal[command] += n
        by_script[script] += n
    return JobCommands(top, internal, by_script, set_apart, count.seconds)


def window_figures(window: Any, config: Config) -> dict[str, float]:
    before, after = window.probes["before"], window.probes["after"]
    n = len(window.samples)
    per = max(1, n)
    cpu = [a - b for a, b in zip(after["cpu"], before["cpu"], strict=True)]
    redis = after["redis"].minus(before["redis"])
    return {
        "rate": n / window.seconds,
        "p50": window.percentile(0.50) * 1e3,
        "p99": window.percentile(0.99) * 1e3,
        "server_cpu_ms": cpu[0] / per * 1e3,
        "server_cores": cpu[0] / window.seconds,
        "worker_cpu_ms": cpu[1] / per * 1e3 if len(cpu) > 1 else math.nan,
        "redis_cpu_ms": redis.cpu / per * 1e3,
        "redis_cores": redis.cpu / window.seconds,
        "redis_calls": redis.total_calls / per,
        "redis_usec": redis.total_usec / per,
        "loadgen_cores": (after["loadgen"] - before["loadgen"]) / window.seconds,
        "failed": float(window.failed),
        "samples": float(n),
    }


SEQ_CONFIGS = ("relay-pubsub-nohop", "relay-calls", "full")


def seq_figures(samples: list[Any], lost: int) -> dict[str, float]:
    """Medians of a one-at-a-time run: the browser's frame to the node (forward), the node's
    answer to the browser (back), and the whole round trip, in ms."""
    from bench.loadgen import percentile

    ok = [s for s in samples if s.ok and not math.isnan(s.assigned)]
    return {
        "forward": percentile([s.assigned - s.started for s in ok], 0.5) * 1e3,
        "back": percentile([s.ended - s.answered for s in ok], 0.5) * 1e3,
        "node": percentile([s.answered - s.assigned for s in ok], 0.5) * 1e3,
        "p50": percentile([s.latency for s in ok], 0.5) * 1e3,
        "lost": float(lost),
    }


def script_shas() -> dict[str, str]:
    from bench.floor_asgi import FLOOR_SHA
    from dispatch.store import SCRIPTS_DIR, script_sha

    return {
        script_sha(path.stem): path.stem for path in SCRIPTS_DIR.glob("*.lua") if not path.stem.startswith("_")
    } | {FLOOR_SHA: "job_floor_call"}


@dataclass
class SocketFleet:
    nodes: int = 0
    register_s: float = math.nan
    rss_per_node: float = math.nan
    redis_memory_per_node: float = math.nan
    heartbeat_cpu_ms: float = math.nan
    heartbeats: int = 0


@dataclass
class Report:
    params: Params
    started: datetime.datetime
    load_before: str
    configs: list[Config] = field(default_factory=list)
    rate: float = math.nan
    pick: list[Any] = field(default_factory=list)
    fleet_floor: SocketFleet = field(default_factory=SocketFleet)
    fleet_full: SocketFleet = field(default_factory=SocketFleet)
    load_after: str = ""
    seconds: float = 0.0
    redis_version: str = ""
    profile_reason: str = ""

    def config(self, key: str) -> Config:
        return next(c for c in self.configs if c.key == key)


# --- Phases ----------------------------------------------------------------------------------


async def settle_cpu(process: Any, quiet_s: float = 0.5, limit_s: float = 15) -> None:
    """Wait until the process has used no CPU for ``quiet_s`` (its backlog is done)."""
    deadline = time.monotonic() + limit_s
    last = process.cpu()
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = process.cpu()
        if now > last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return


async def fleet_phase(base: str, server: Any, params: Params, *, full: bool, client: Any) -> SocketFleet:
    from bench import loadgen

    figures = SocketFleet(nodes=params.fleet_nodes)
    await settle_cpu(server)
    rss0, mem0 = server.rss(), int(client.info("memory")["used_memory"])
    fleet = await loadgen.fleet_connect(base, params.fleet_nodes, concurrency=params.fleet_concurrency, full=full)
    figures.register_s = fleet.seconds
    await settle_cpu(server)
    await asyncio.sleep(1)
    figures.rss_per_node = (server.rss() - rss0) / params.fleet_nodes
    figures.redis_memory_per_node = (int(client.info("memory")["used_memory"]) - mem0) / params.fleet_nodes
    # CPU per heartbeat: the server's CPU over the burst and its backlog, less its idle use (with
    # many sockets open, daphne's once-a-second sweep over them is not nothing: watch it a while).
    async def idle_rate() -> float:
        idle0, t0 = server.cpu(), time.monotonic()
        await asyncio.sleep(IDLE_WATCH_S)
        return (server.cpu() - idle0) / (time.monotonic() - t0)

    before = await idle_rate()
    cpu0, t0 = server.cpu(), time.monotonic()
    for _ in range(HEARTBEAT_ROUNDS):
        figures.heartbeats += await loadgen.fleet_heartbeats(fleet, rate=params.heartbeat_rate)
    await settle_cpu(server)
    cpu1, t1 = server.cpu(), time.monotonic()
    after = await idle_rate()
    used = cpu1 - cpu0 - (before + after) / 2 * (t1 - t0)
    figures.heartbeat_cpu_ms = max(0.0, used) / figures.heartbeats * 1e3
    await loadgen.fleet_close(fleet)
    await settle_cpu(server)
    return figures


async def profile_phase(config: Config, params: Params, client: Any) -> Any:
    from bench import loadgen, profile
    from bench.procs import LOG_DIR

    output = LOG_DIR / f"profile-{config.key.replace(':', '-')}.txt"
    output.unlink(missing_ok=True)
    probe = make_probe(config, client)
    recorder = profile.record(config.processes[0].pid, params.profile_s, output)
    if recorder is None:
        result = profile.Profile(error="py-spy is not installed (pip install -r requirements-test.txt)")
        return result, {}
    window = await loadgen.closed_loop(config.pairs, warmup=0.2, seconds=params.profile_s, probe=probe)
    _, stderr = await asyncio.to_thread(recorder.communicate)
    result = profile.summarise(output)
    if not result.samples:
        result.error = stderr.decode(errors="replace")[-500:]
    return result, window_figures(window, config)


async def measure(params: Params, prefix: str, report: Report) -> None:
    from bench import loadgen, pick, procs

    client = procs.redis_client()
    report.redis_version = str(client.info("server").get("redis_version", "?"))

    log(f"[1/7] pick-and-reserve at 10 and {params.pick_nodes} nodes (in-process, real Redis)")
    report.pick = await pick.measure(
        prefix, (10, params.pick_nodes), rounds=params.pick_rounds,
        jobs_per_round=max(1, params.pick_jobs // params.pick_rounds), heartbeats=params.pick_heartbeats, log=log,
    )
    for fleet in report.pick:
        procs.delete_matching(client, f"{fleet.prefix}:*")

    log("[2/7] starting servers: three floor servers, the scheduler (+ worker)")
    floors: dict[str, procs.Server] = {}
    stacks: dict[str, procs.FullStack] = {}
    try:
        for layer in LAYERS:
            floors[layer] = procs.floor_server(layer, CHILD_ENV, f"{prefix}-floor-{layer}")
        stacks["full"] = procs.FullStack.start(full_env(f"{prefix}-full", {}), "scheduler")
        for name, extra in params.variants:
            stacks[f"full:{name}"] = procs.FullStack.start(full_env(f"{prefix}-{name}", extra), f"scheduler-{name}")
        configs = [
            Config("echo", "daphne echo", loadgen.EchoPair, floors["memory"].ws, [floors["memory"].process], True),
            *(
                Config(f"relay-{layer}", LAYER_LABELS[layer], loadgen.RelayPair, floors[layer].ws,
                       [floors[layer].process], True)
                for layer in LAYERS
            ),
            Config("relay-pubsub-nohop", NOHOP_LABEL, loadgen.NoHopRelayPair, floors["pubsub"].ws,
                   [floors["pubsub"].process], True),
            Config("relay-calls", CALLS_LABEL, loadgen.CallingRelayPair, floors["pubsub"].ws,
                   [floors["pubsub"].process], True),
            *(
                Config(key, "full path (shipped)" if key == "full" else f"full path: {key[5:]}", loadgen.FullPair,
                       stack.ws, stack.processes, False)
                for key, stack in stacks.items()
            ),
        ]
        report.configs = configs
        for config in configs:
            config.pairs = await loadgen.open_pairs(config.kind, config.base, params.pairs)

        log(f"[3/7] saturation: {params.pairs} pairs in closed loop, {params.rounds} round(s)")
        for round_index in range(params.rounds):
            for config in configs:
                window = await loadgen.closed_loop(
                    config.pairs, warmup=params.sat_warmup_s, seconds=params.sat_s, probe=make_probe(config, client)
                )
                config.sat.append(window_figures(window, config))
                figures = config.sat[-1]
                log(f"  round {round_index + 1} {config.key:<16} {figures['rate']:8.0f}/s "
                    f"server {figures['server_cpu_ms']:.3f} ms CPU per round trip, failed {figures['failed']:.0f}")

        report.rate = report.config("relay-default").figure("sat", "rate") / 2
        log(f"[4/7] latency at a fixed {report.rate:.0f} round trips/s (half the default-layer relay's saturation)")
        for round_index in range(params.rounds):
            for config in configs:
                window = await loadgen.open_loop(
                    config.pairs, rate=report.rate, warmup=params.lat_warmup_s, seconds=params.lat_s,
                    probe=make_probe(config, client),
                )
                config.lat.append(window_figures(window, config))
                figures = config.lat[-1]
                log(f"  round {round_index + 1} {config.key:<16} p50 {figures['p50']:.2f} ms  "
                    f"p99 {figures['p99']:.2f} ms, failed {figures['failed']:.0f}")

        log(f"[5/7] one round trip at a time, {params.seq_jobs} each per round: where the time goes")
        for round_index in range(params.rounds):
            for config in configs:
                if config.key not in SEQ_CONFIGS:
                    continue
                samples, lost = await loadgen.one_at_a_time(config.pairs, count=params.seq_jobs)
                config.seq.append(seq_figures(samples, lost))
                figures = config.seq[-1]
                log(f"  round {round_index + 1} {config.key:<16} to the node {figures['forward']:.3f} ms, "
                    f"back {figures['back']:.3f} ms, whole {figures['p50']:.3f} ms")

        log(f"[6/7] Redis commands per round trip: MONITOR over {params.count_jobs} round trips each")
        shas = script_shas()
        monitor = procs.Monitor(shas).start()
        await asyncio.sleep(BACKGROUND_S)
        background = monitor.stop()
        for config in configs:
            if config.key == "echo":
                continue
            monitor = procs.Monitor(shas).start()
            config.counted = await loadgen.counted(config.pairs, total=params.count_jobs)
            config.monitor = job_commands(monitor.stop(), background)

        missed = targets_missed(report)
        if params.profile == "always" or (params.profile == "auto" and missed):
            report.profile_reason = "always" if params.profile == "always" else "missed: " + "; ".join(missed)
            fulls = [config for config in configs if not config.floor]
            for config in {fulls[0].key: fulls[0], fulls[-1].key: fulls[-1]}.values():
                log(f"  profiling {config.key} at saturation with py-spy ({params.profile_s:.0f} s)")
                config.profile = await profile_phase(config, params, client)

        for config in configs:
            await loadgen.close_pairs(config.pairs)

        log(f"[7/7] a fleet of {params.fleet_nodes} idle nodes over sockets: register, memory, heartbeats")
        report.fleet_floor = await fleet_phase(
            floors["memory"].ws, floors["memory"].process, params, full=False, client=client
        )
        report.fleet_full = await fleet_phase(stacks["full"].ws, stacks["full"].server.process, params, full=True, client=client)
    finally:
        for floor in floors.values():
            floor.process.stop()
        for stack in stacks.values():
            stack.stop()
        procs.delete_matching(client, f"{prefix}-*")


def full_env(prefix: str, extra: dict[str, str]) -> dict[str, str]:
    return {
        **CHILD_ENV,
        "DJANGO_SETTINGS_MODULE": "schedulerproj.settings",
        "SCHEDULER_REDIS_PREFIX": prefix,
        "SCHEDULER_NODE_AUTH": "open",
        "DATABASE_URL": bench_database_url(),
        **extra,
    }


def bench_database_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{BASE_DIR / 'var' / 'bench' / 'db.sqlite3'}"


# --- Targets and the report ------------------------------------------------------------------

P50_RATIO, P99_RATIO = 1.2, 2.0


def per_job(config: Config, name: str) -> float:
    if config.monitor is None or not config.counted:
        return math.nan
    return config.monitor.top[name] / config.counted


def targets(report: Report) -> list[tuple[str, str, bool | None]]:
    """(target, what was measured, met) — met None when it is shown beside, not judged."""
    from bench.loadgen import percentile

    full, default = report.config("full"), report.config("relay-default")
    memory, shipped = report.config("relay-memory"), report.config("relay-pubsub")
    rows: list[tuple[str, str, bool | None]] = []
    f_rate, d_rate, m_rate = full.figure("sat", "rate"), default.figure("sat", "rate"), memory.figure("sat", "rate")
    rows.append((
        "full path jobs/s at saturation ≥ 3× the default-layer bare relay",
        f"{f_rate:.0f} / {d_rate:.0f} = {f_rate / d_rate:.2f}×", f_rate >= 3 * d_rate,
    ))
    rows.append((
        "stretch: full path jobs/s ≥ the in-memory layer's bare relay",
        f"{f_rate:.0f} / {m_rate:.0f} = {f_rate / m_rate:.2f}×", f_rate >= m_rate,
    ))
    f_p50, s_p50 = full.figure("lat", "p50"), shipped.figure("lat", "p50")
    rows.append((
        f"round-trip p50 ≤ 1.3× the shipped layer's bare relay p50 (at {report.rate:.0f}/s)",
        f"{f_p50:.2f} / {s_p50:.2f} ms = {f_p50 / s_p50:.2f}×", f_p50 <= 1.3 * s_p50,
    ))
    c_p50 = report.config("relay-calls").figure("lat", "p50")
    rows.append((
        "beside it: the same relay with the design's two script calls and nothing else, against the shipped relay; "
        "the full path against it",
        f"{c_p50:.2f} / {s_p50:.2f} ms = {c_p50 / s_p50:.2f}×; {f_p50:.2f} / {c_p50:.2f} ms = {f_p50 / c_p50:.2f}×",
        None,
    ))
    submit, finish = per_job(full, "evalsha job_submit"), per_job(full, "evalsha job_finish")
    rows.append((
        "one script call to pick and reserve, one to finish, per job (slots free)",
        f"{submit:.2f} job_submit.lua + {finish:.2f} job_finish.lua per job",
        abs(submit - 1) < 0.01 and abs(finish - 1) < 0.01,
    ))
    small, large = report.pick[0], report.pick[-1]
    for q, limit, label in ((0.5, P50_RATIO, "p50"), (0.99, P99_RATIO, "p99")):
        a, b = percentile(small.submit, q) * 1e3, percentile(large.submit, q) * 1e3
        rows.append((
            f"pick-and-reserve {label} at {large.nodes:,} nodes ≤ {limit}× at {small.nodes}",
            f"{b:.3f} / {a:.3f} ms = {b / a:.2f}×", b <= limit * a,
        ))
    rows.append((
        "CPU per heartbeat, beside it",
        f"{small.nodes} nodes: {small.heartbeat_cpu_s * 1e3:.3f} ms Python + {small.heartbeat_redis_usec:.0f} µs Redis; "
        f"{large.nodes:,}: {large.heartbeat_cpu_s * 1e3:.3f} ms + {large.heartbeat_redis_usec:.0f} µs; "
        f"over a socket: {report.fleet_full.heartbeat_cpu_ms:.3f} ms server CPU",
        None,
    ))
    return rows


def targets_missed(report: Report) -> list[str]:
    """Targets judged before the fleet phase (that one only reports)."""
    missed = []
    for name, measured, met in targets_partial(report):
        if met is False:
            missed.append(f"{name} ({measured})")
    return missed


def targets_partial(report: Report) -> list[tuple[str, str, bool | None]]:
    try:
        return [row for row in targets(report) if row[2] is not None]
    except (StopIteration, ZeroDivisionError, IndexError):
        return []


def fmt(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    if any(math.isnan(v) for v in (a, b)) or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def render(report: Report) -> str:
    from bench.loadgen import AUDIO, AUDIO_B64, percentile

    params = report.params
    configs = report.configs
    full, shipped, default = report.config("full"), report.config("relay-pubsub"), report.config("relay-default")
    commit = git("rev-parse", "--short", "HEAD") + ("+uncommitted changes" if git("status", "--porcelain") else "")
    lines: list[str] = []
    add = lines.append
    add("# Benchmarks")
    add("")
    add(f"Written by `make bench` (`python -m bench.run`) on {report.started:%Y-%m-%d %H:%M} UTC in {report.seconds / 60:.1f} min; "
        f"commit {commit}; {cpu_model()} × {os.cpu_count()} (shared), Python {platform.python_version()}, "
        f"Redis {report.redis_version} ({redis_where()}); load average {report.load_before} before, {report.load_after} after.")
    add("")
    add(f"Workload: {params.pairs} browser/node pairs; each round trip carries one utterance of 1 s of audio "
        f"({len(AUDIO):,} bytes, 50 Opus packets; {len(AUDIO_B64):,} base64 characters) in one `utterance` frame, and the "
        f"node answers at once with a `job_result`. Saturation: closed loop, {params.sat_s:g} s windows after "
        f"{params.sat_warmup_s:g} s of warm-up. Latency: a fixed offered load of **{report.rate:.0f} round trips/s** "
        f"(half the default-layer relay's saturation rate in this run), {params.lat_s:g} s windows, measured from each "
        f"round trip's scheduled start. Each figure is the median of {params.rounds} rounds, the configurations taking "
        f"turns within each round. CPU is `utime+stime` of the server process from `/proc`; Redis CPU is `INFO cpu`; "
        f"Redis commands are `INFO commandstats` deltas (every command, script internals included) and a MONITOR "
        f"capture for top-level calls.")
    add("")
    add("## Targets")
    add("")
    add("| target | measured in this run | met |")
    add("|---|---|---|")
    for name, measured, met in targets(report):
        add(f"| {name} | {measured} | {'—' if met is None else ('**yes**' if met else '**no**')} |")
    add("")

    add("## Floors and the full path")
    add("")
    header = "| | " + " | ".join(c.label for c in configs) + " | full path ÷ floor |"
    add(header)
    add("|---" * (len(configs) + 2) + "|")

    def row(label: str, phase: str, name: str, digits: int, ratios: str, skip: tuple[str, ...] = ()) -> None:
        cells = [fmt(c.figure(phase, name), digits) if c.key not in skip else "—" for c in configs]
        add(f"| {label} | " + " | ".join(cells) + f" | {ratios} |")

    f = full.figure
    short = {"echo": "echo", "relay-default": "default relay", "relay-pubsub": "shipped relay",
             "relay-pubsub-nohop": "no-hop relay", "relay-memory": "in-memory relay",
             "relay-calls": "no-hop relay + 2 calls"}

    def ratios(phase: str, name: str, keys: tuple[str, ...]) -> str:
        return "; ".join(f"{ratio(f(phase, name), report.config(k).figure(phase, name))} {short[k]}" for k in keys)

    relays = ("relay-default", "relay-pubsub", "relay-pubsub-nohop", "relay-calls", "relay-memory")
    row("round trips (jobs) per second at saturation", "sat", "rate", 0, ratios("sat", "rate", (*relays, "echo")))
    row(f"round-trip p50 at {report.rate:.0f}/s (ms)", "lat", "p50", 2,
        ratios("lat", "p50", ("relay-pubsub", "relay-pubsub-nohop", "relay-calls", "echo")))
    row(f"round-trip p99 at {report.rate:.0f}/s (ms)", "lat", "p99", 2,
        ratios("lat", "p99", ("relay-pubsub", "relay-pubsub-nohop", "relay-calls", "echo")))
    row("round-trip p50 at saturation (ms)", "sat", "p50", 1,
        ratios("sat", "p50", ("relay-pubsub", "relay-pubsub-nohop", "relay-calls")))
    row("server CPU per round trip at saturation (ms)", "sat", "server_cpu_ms", 3,
        ratios("sat", "server_cpu_ms", (*relays, "echo")))
    row(f"server CPU per round trip at {report.rate:.0f}/s (ms)", "lat", "server_cpu_ms", 3,
        ratios("lat", "server_cpu_ms", ("relay-pubsub", "relay-pubsub-nohop", "relay-calls")))
    row("server CPU used at saturation (cores)", "sat", "server_cores", 2, "")
    row("worker CPU per job at saturation (ms)", "sat", "worker_cpu_ms", 3, "")
    row("Redis CPU per round trip at saturation (ms)", "sat", "redis_cpu_ms", 3,
        ratios("sat", "redis_cpu_ms", ("relay-default", "relay-pubsub")))
    cells = [fmt(top_level(c), 2) for c in configs]
    add("| Redis commands per round trip, top-level calls (MONITOR) | " + " | ".join(cells) + " | "
        + f"{ratio(top_level(full), top_level(default))} default relay; {ratio(top_level(full), top_level(shipped))} shipped relay |")
    row("Redis commands per round trip, all (INFO commandstats, script internals included)", "sat", "redis_calls", 1,
        ratios("sat", "redis_calls", ("relay-default", "relay-pubsub")))
    row("Redis time per round trip (µs, commandstats)", "sat", "redis_usec", 0,
        ratios("sat", "redis_usec", ("relay-default", "relay-pubsub")))
    row("load generator CPU at saturation (cores)", "sat", "loadgen_cores", 2, "")
    failed = [sum(w["failed"] for w in c.sat + c.lat) for c in configs]
    add("| round trips failed or lost (all windows) | " + " | ".join(f"{x:.0f}" for x in failed) + " | |")
    add("")
    add("Ratios divide like by like: latency by latency, CPU by CPU, counts by counts. Redis commands are per "
        "round trip of the whole system, so the full path's include the worker's own ticks (a few per second).")
    add("")
    calls = report.config("relay-calls")
    s_p50, c_p50, f_p50 = shipped.figure("lat", "p50"), calls.figure("lat", "p50"), f("lat", "p50")
    n_p50 = report.config("relay-pubsub-nohop").figure("lat", "p50")
    add(f"Reading the latency: at {report.rate:.0f}/s the relay built like our consumers (no thread hop) answers in "
        f"{n_p50:.2f} ms p50; the same relay with one Redis script call before each of its two sends, the two round "
        f"trips our design makes per job (pick-and-reserve, finish) and no other work, answers in {c_p50:.2f} ms "
        f"({ratio(c_p50, s_p50)} the shipped layer's naive relay, the target's floor). The full path is "
        f"{ratio(f_p50, c_p50)} that relay with calls: what remains is the work inside the two scripts (Redis time per "
        f"job {fmt(f('sat', 'redis_usec'), 0)} µs against {fmt(calls.figure('sat', 'redis_usec'), 0)} µs for the two "
        "empty calls), the three frames the protocol adds per job (`ui_event` DISPATCHED, ASR_FINAL and NMT_DONE), "
        "and our consumers' own work (decoding, checking the audio is base64, building the frames).")
    add("")

    seq = [report.config(key) for key in SEQ_CONFIGS]
    if all(c.seq for c in seq):
        nohop, calls_c, full_c = seq
        add("## Where a round trip's time goes: one at a time")
        add("")
        add(f"{params.seq_jobs:,} round trips per configuration and round, one after another (the pairs taking turns), "
            "so each stage is timed on a quiet server without queueing: from the browser's frame to the node reading "
            "its job, and from the node's answer to the browser reading the result (the load generator's clock).")
        add("")
        add(f"| | {nohop.label} | {calls_c.label} | {full_c.label} | full path − relay with calls |")
        add("|---|---|---|---|---|")
        for name, label in (("forward", "browser's frame → the node has the job (ms)"),
                            ("back", "node's answer → the browser has the result (ms)"),
                            ("p50", "whole round trip (ms)")):
            a, b, c = (x.figure("seq", name) for x in seq)
            add(f"| {label} | {fmt(a, 3)} | {fmt(b, 3)} | {fmt(c, 3)} | {c - b:+.3f} |")
        small = report.pick[0]
        empty = percentile(small.empty_call, 0.5) * 1e3
        submit, finish = percentile(small.submit, 0.5) * 1e3, percentile(small.finish, 0.5) * 1e3
        add("")
        add(f"The two script calls, timed in-process in the pick-and-reserve phase ({small.nodes} nodes, p50): an empty "
            f"script with the job's audio as its argument {empty:.3f} ms; `job_submit.lua` {submit:.3f} ms "
            f"({submit - empty:+.3f}); `job_finish.lua` {finish:.3f} ms ({finish - empty:+.3f}). So of the full path's "
            f"{full_c.figure('seq', 'p50') - calls_c.figure('seq', 'p50'):+.3f} ms over the relay with calls, about "
            f"{submit + finish - 2 * empty:.3f} ms is the scripts' own work (routing, the job record and its story, "
            "the dispatch observations, the lookup index); the rest is the three frames the protocol adds per job "
            "(`ui_event` DISPATCHED before the node is sent its job, ASR_FINAL and NMT_DONE before the result), "
            "read by the browser too, and our consumers' checks and bookkeeping.")
        add("")

    add(f"## A fleet of {params.fleet_nodes:,} idle nodes over sockets")
    add("")
    add("| | floor: daphne echo | full path | full path ÷ floor |")
    add("|---|---|---|---|")
    ff, fl = report.fleet_floor, report.fleet_full
    add(f"| time to register {params.fleet_nodes:,} nodes, {params.fleet_concurrency} at a time (s) "
        f"| {fmt(ff.register_s)} | {fmt(fl.register_s)} | {ratio(fl.register_s, ff.register_s)} |")
    add(f"| per node (ms of wall time) | {fmt(ff.register_s / max(1, ff.nodes) * 1e3, 3)} "
        f"| {fmt(fl.register_s / max(1, fl.nodes) * 1e3, 3)} | |")
    add(f"| server CPU per heartbeat (ms) | {fmt(ff.heartbeat_cpu_ms, 3)} | {fmt(fl.heartbeat_cpu_ms, 3)} "
        f"| {ratio(fl.heartbeat_cpu_ms, ff.heartbeat_cpu_ms)} |")
    add(f"| server memory per idle node connection (KiB of RSS) | {fmt(ff.rss_per_node / 1024, 1)} "
        f"| {fmt(fl.rss_per_node / 1024, 1)} | {ratio(fl.rss_per_node, ff.rss_per_node)} |")
    add(f"| Redis memory per node (KiB) | — | {fmt(fl.redis_memory_per_node / 1024, 1)} | |")
    add("")
    add("The floor's nodes connect to the echo app and have their `node_register` frame echoed; its heartbeats "
        "are swallowed. The full path's nodes register with 14 languages (273 automatic pools each) and send a "
        "real node's heartbeat (load plus capability fields).")
    add("")

    small, large = report.pick[0], report.pick[-1]
    add(f"## Pick-and-reserve at {small.nodes} and {large.nodes:,} live nodes")
    add("")
    add("In-process against the same Redis: nodes registered through `services.node_register` with 14 languages "
        "and automatic pools on (273 pools per node); jobs through `services.job_submit` (a 1 s utterance as body), "
        "each followed by `services.job_finish` so slots stay free; the script calls inside timed from Python; the "
        "two fleets measured in alternating rounds.")
    add("")
    add(f"| | {small.nodes} nodes | {large.nodes:,} nodes | ratio |")
    add("|---|---|---|---|")

    def prow(label: str, a: float, b: float, digits: int = 3) -> None:
        add(f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {ratio(b, a)} |")

    for q, name in ((0.5, "p50"), (0.99, "p99")):
        prow(f"job_submit.lua {name} (ms)", percentile(small.submit, q) * 1e3, percentile(large.submit, q) * 1e3)
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        prow(f"job_finish.lua {name} (ms)", percentile(small.finish, q) * 1e3, percentile(large.finish, q) * 1e3)
    prow("Redis time per job, both scripts (µs, commandstats)", small.pick_redis_usec, large.pick_redis_usec, 0)
    prow("script calls per job (EVALSHA)", small.pick_script_calls, large.pick_script_calls, 2)
    prow("Redis commands per job, all (incl. script internals and the two sends)", small.pick_commands,
         large.pick_commands, 1)
    prow("node_heartbeat.lua p50 (ms)", percentile(small.heartbeat, 0.5) * 1e3, percentile(large.heartbeat, 0.5) * 1e3)
    prow("CPU per heartbeat, Python side (ms)", small.heartbeat_cpu_s * 1e3, large.heartbeat_cpu_s * 1e3)
    prow("CPU per heartbeat, Redis side (µs, commandstats)", small.heartbeat_redis_usec, large.heartbeat_redis_usec, 0)
    prow("Redis commands per heartbeat, all", small.heartbeat_commands, large.heartbeat_commands, 1)
    prow("time to register all nodes in-process, 8 at a time (s)", small.register_s, large.register_s, 2)
    prow("per node (ms)", small.register_s / small.nodes * 1e3, large.register_s / large.nodes * 1e3)
    prow("Redis memory per registered node (KiB)", small.redis_memory / small.nodes / 1024,
         large.redis_memory / large.nodes / 1024, 1)
    add(f"\nSamples: {len(large.submit):,} jobs and {len(large.heartbeat):,} heartbeats per fleet.")
    add("")

    add("## Redis commands per round trip, by command (MONITOR)")
    add("")
    for config in configs:
        if config.monitor is None:
            continue
        count = config.monitor
        per = max(1.0, config.counted)
        top = ", ".join(f"{name} {n / per:.2f}" for name, n in count.top.most_common() if n / per >= 0.005)
        inside = ", ".join(f"{name} {n / per:.2f}" for name, n in count.internal.most_common() if n / per >= 0.005)
        by_script = ", ".join(f"{name} {n / per:.1f}" for name, n in count.by_script.most_common() if n / per >= 0.05)
        add(f"- **{config.label}** ({config.counted:.0f} round trips in {count.seconds:.1f} s): "
            f"top-level: {top or 'none'}.")
        if inside:
            add(f"  Inside scripts: {inside} (by script: {by_script}).")
        if count.set_apart:
            add("  Set apart (not per round trip): " + ", ".join(
                f"{name} ×{n}" for name, n in count.set_apart.most_common()) + ".")
    add("")
    add("Set apart: script calls that are not a job's (the fake nodes' heartbeats every 15 s, every stack's "
        f"worker ticks). Other background (health-check pings, idle polls), captured for {BACKGROUND_S:g} s with "
        "no load, is subtracted pro rata.")
    add("")

    fulls = [c for c in configs if not c.floor]
    if len(fulls) > 1:
        add("## What was tried: variants of the full path, side by side in this run")
        add("")
        add("Each variant is another `schedulerproj.server` + worker with one setting changed; no code of ours "
            "differs. Medians of the same rounds as above.")
        add("")
        add("| full path | what differs | jobs/s at saturation | ÷ default relay | ÷ in-memory relay "
            f"| server CPU per job (ms) | p50 at {report.rate:.0f}/s (ms) | p50 ÷ shipped relay |")
        add("|---|---|---|---|---|---|---|---|")
        d_rate, m_rate = default.figure("sat", "rate"), report.config("relay-memory").figure("sat", "rate")
        s_p50 = shipped.figure("lat", "p50")
        variants = dict(report.params.variants)
        for c in fulls:
            env = variants.get(c.key[5:], {})
            what = "; ".join(VARIANT_NOTES.get(f"{k}={v}", f"`{k}={v}`") for k, v in env.items()) or "as shipped"
            rate, p50 = c.figure("sat", "rate"), c.figure("lat", "p50")
            add(f"| {c.label} | {what} | {rate:.0f} | {ratio(rate, d_rate)} | {ratio(rate, m_rate)} "
                f"| {fmt(c.figure('sat', 'server_cpu_ms'), 3)} | {fmt(p50)} | {ratio(p50, s_p50)} |")
        add("")
        cpu0 = full.figure("sat", "server_cpu_ms")
        nohop = report.config("relay-pubsub-nohop").figure("sat", "server_cpu_ms")
        add(f"Reading: at saturation the one server process is the bottleneck (about "
            f"{full.figure('sat', 'server_cores'):.2f} cores of 2 shared; Redis uses "
            f"{full.figure('sat', 'redis_cores'):.2f}), so jobs/s follows server CPU per job: "
            f"{cpu0:.3f} ms as shipped, against {nohop:.3f} ms for the bare relay through the same layer built "
            "like our consumers (no thread hop). "
            + " ".join(
                f"{c.label[len('full path: '):]}: {c.figure('sat', 'server_cpu_ms') - cpu0:+.3f} ms of server CPU per "
                f"job against the shipped stack ({(c.figure('sat', 'server_cpu_ms') - cpu0) / cpu0:+.0%}), "
                f"{ratio(c.figure('sat', 'rate'), full.figure('sat', 'rate'))} its jobs/s."
                for c in fulls[1:]
            ))
        add("")

    profiled = [c for c in configs if c.profile is not None]
    if profiled:
        add("## Profile of the scheduler server at saturation (py-spy)")
        add("")
        add(f"Taken because: {report.profile_reason}.")
        add("")
        for config in profiled:
            prof, figures = config.profile
            if not prof.samples:
                add(f"- {config.label}: no profile ({prof.error.strip()})")
                continue
            cpu_ms = figures.get("server_cpu_ms", math.nan)
            add(f"**{config.label}**: {prof.samples:,} samples over {params.profile_s:g} s at "
                f"{figures.get('rate', math.nan):.0f} jobs/s, {cpu_ms:.3f} ms server CPU per job. Where it goes "
                "(each sample charged to the innermost frame of a known part):")
            add("")
            add("| part | share of samples | ms of CPU per job |")
            add("|---|---|---|")
            for part, n in prof.parts.most_common():
                add(f"| {part} | {n / prof.samples:.1%} | {cpu_ms * n / prof.samples:.3f} |")
            add("")
            add("Functions by inclusive share (top 30; the process's root frames left out):")
            add("")
            add("| function | inclusive | ms per job |")
            add("|---|---|---|")
            shown = 0
            for name, n in prof.inclusive.most_common():
                if name.startswith(ROOT_FRAMES):
                    continue
                add(f"| `{name}` | {n / prof.samples:.1%} | {cpu_ms * n / prof.samples:.3f} |")
                shown += 1
                if shown >= 30:
                    break
            add("")
            add("Hottest leaves (self time, top 12): " + "; ".join(
                f"`{name}` {n / prof.samples:.1%}" for name, n in prof.leaf.most_common(12)) + ".")
            add("")

    add("## How to read and rerun")
    add("")
    add("`make bench` (about 11 minutes on 2 cores). Knobs (environment): `BENCH_ROUNDS`, `BENCH_SAT_S`, `BENCH_LAT_S`, "
        "`BENCH_PAIRS`, `BENCH_SEQ_JOBS`, `BENCH_FLEET_NODES`, `BENCH_PICK_NODES`, `BENCH_PROFILE=auto|always|never`, "
        "`BENCH_VARIANTS='name:VAR=value,...;...'` (more full-path stacks with other settings, measured side by side), "
        "`BENCH_QUICK=1` (a short smoke run). Servers' logs: `var/bench/*.log`. See `bench/README.md`.")
    add("")
    return "\n".join(lines)


def top_level(config: Config) -> float:
    if config.monitor is None or not config.counted:
        return 0.0 if config.key == "echo" else math.nan
    return sum(config.monitor.top.values()) / config.counted


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=BASE_DIR, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def redis_where() -> str:
    url = CHILD_ENV.get("REDIS_URL", "")
    return "unix socket" if url.startswith("unix:") else "TCP"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def console_table(report: Report) -> str:
    lines = ["", "target | measured | met", "---"]
    for name, measured, met in targets(report):
        lines.append(f"{name} | {measured} | {'-' if met is None else ('yes' if met else 'NO')}")
    lines += ["", f"{'configuration':<48} {'rt/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/rt':>10} {'Redis cmds/rt':>14}"]
    for c in report.configs:
        lines.append(f"{c.label:<48} {c.figure('sat', 'rate'):8.0f} {c.figure('lat', 'p50'):8.2f} "
                     f"{c.figure('lat', 'p99'):8.2f} {c.figure('sat', 'server_cpu_ms'):10.3f} "
                     f"{c.figure('sat', 'redis_calls'):14.1f}")
    return "\n".join(lines)


def main() -> None:
    if not os.environ.get("REDIS_URL"):
        sys.exit("REDIS_URL is unset: run `make bench` (it starts a private Redis) or set REDIS_URL.")
    params = Params.from_env()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    (BASE_DIR / "var" / "bench").mkdir(parents=True, exist_ok=True)
    migrate = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput", "-v", "0"],
        cwd=BASE_DIR, env=full_env(f"{prefix}-migrate", {}), capture_output=True, text=True,
    )
    if migrate.returncode != 0:
        sys.exit(f"migrate failed:\n{migrate.stderr[-2000:]}")
    # This process hosts the load generator and the in-process pick test: quiet logs, own prefix.
    os.environ.update(
        DJANGO_SETTINGS_MODULE="schedulerproj.settings", SCHEDULER_REDIS_PREFIX=f"{prefix}-pick",
        SCHEDULER_NODE_AUTH="open", DATABASE_URL=bench_database_url(), LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.conf import settings

    settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"{prefix}-pick:layer"
    import uvloop

    report = Report(params=params, started=datetime.datetime.now(datetime.UTC), load_before=load_average())
    started = time.monotonic()
    uvloop.run(measure(params, prefix, report))
    report.seconds = time.monotonic() - started
    report.load_after = load_average()
    params.out.write_text(render(report))
    print(console_table(report))
    print(f"\nwrote {params.out}")


if __name__ == "__main__":
    main()
