"""Pick-and-reserve at 10 and at 10,000 live nodes, in-process against real Redis.

Nodes register through ``dispatch.nodes.node_register`` (the socket consumer's own call: pools
computed in Python, one ``node_register.lua`` call each), 14 languages each with automatic pools
on, so each node sits in 273 pools. Then jobs go through ``job_submit`` (a 1 s utterance
as the job body), each followed by ``job_finish`` so slots stay free, and the
``job_submit.lua`` call inside is timed from Python. The two fleets live under their own key
prefixes and are measured in alternating rounds. Heartbeats go through
``node_heartbeat`` with a real node's heartbeat (capability fields included).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from bench.markdown import fmt, ratio
from bench.phases import Bench, Phase, Report, log
from bench.procs import RedisSnapshot, delete_matching, redis_client
from fleetsim import frames
from fleetsim.stats import percentile


@dataclass
class FleetFigures:
    nodes: int
    prefix: str
    node_ids: list[str] = field(default_factory=list)
    register_s: float = 0.0
    register_cpu_s: float = 0.0  # this process (Python side of registration)
    register_redis_cpu_s: float = 0.0
    redis_memory: int = 0
    submit: list[float] = field(default_factory=list)  # seconds per job_submit.lua call
    finish: list[float] = field(default_factory=list)
    pick_redis_usec: float = 0.0  # EVALSHA µs inside Redis per submit + finish
    pick_script_calls: float = 0.0  # EVALSHA calls per job
    pick_commands: float = 0.0  # commandstats calls per job (scripts' internals included)
    empty_call: list[float] = field(default_factory=list)  # seconds per empty script call (same args' size)
    heartbeat: list[float] = field(default_factory=list)
    heartbeat_cpu_s: float = 0.0  # this process, per heartbeat
    heartbeat_redis_usec: float = 0.0  # per heartbeat
    heartbeat_commands: float = 0.0


def use_prefix(prefix: str) -> None:
    settings.SCHEDULER_REDIS_PREFIX = prefix


async def register_fleet(fleet: FleetFigures, concurrency: int = 8) -> None:
    from dispatch import config, nodes, protocol

    use_prefix(fleet.prefix)
    await asyncio.to_thread(config.pools_publish)
    frame = protocol.decode_node_frame(frames.encode(frames.register_frame()))
    queue = iter(range(fleet.nodes))
    client = redis_client()
    before = RedisSnapshot.take(client)
    cpu0, started = time.process_time(), time.perf_counter()

    async def one() -> None:
        for index in queue:
            registered = await nodes.node_register(
                frame=frame, token="open", channel=f"bench.pick!{index}", current_id=None  # type: ignore[arg-type]
            )
            if registered.status != "ready":
                raise RuntimeError(f"node registered {registered.status}, not ready")
            fleet.node_ids.append(registered.node_id)

    await asyncio.gather(*(one() for _ in range(concurrency)))
    fleet.register_s = time.perf_counter() - started
    fleet.register_cpu_s = time.process_time() - cpu0
    delta = RedisSnapshot.take(client).minus(before)
    fleet.register_redis_cpu_s = delta.cpu
    fleet.redis_memory = delta.memory


class ScriptTimer:
    """Times each script call the services make, by script name: ``dispatch.store.run`` is
    wrapped in this process only, so the services build their arguments as they always do."""

    def __init__(self) -> None:
        self.durations: dict[str, list[float]] = {}
        self.original: Any = None

    def __enter__(self) -> ScriptTimer:
        from dispatch import store

        self.original = original = store.run

        async def timed(name: str, *args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await original(name, *args)
            finally:
                self.durations.setdefault(name, []).append(time.perf_counter() - t0)

        store.run = timed  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        from dispatch import store

        store.run = self.original  # type: ignore[assignment]


def _session() -> Any:
    from dispatch import sessions

    return sessions.SessionSpec(
        session_id="s-bench0001", trace_id="bench-trace", channel="bench.session!1", need="zh>en",
        auto_pool="auto:zh-en", src_lang="zh", tgt_lang="en", dialect=None, features={}, mode="one_way",
        lang_a=None, lang_b=None, auto_langs=None, enable_streaming_asr=False,
    )


def _cut(index: int) -> Any:
    from dispatch import jobs, outbox

    return jobs.Cut(
        utterance_index=index, audio_b64=frames.AUDIO_B64, audio_format="opus", sample_rate=16000,
        pipeline={"use_asr": True, "use_nmt": True, "use_tts": True, "use_semantic": False, "use_tone": False},
        turn_id="bench-turn", manual=True, timeout=False, max_duration=False, cut_ms=outbox.now_ms(),
    )


async def pick_round(fleet: FleetFigures, jobs: int) -> None:
    """``jobs`` × (``job_submit``, then ``job_finish`` of that job); the
    ``job_submit.lua`` and ``job_finish.lua`` calls inside are timed one by one."""
    from dispatch import protocol
    from dispatch.jobs import job_finish, job_submit

    use_prefix(fleet.prefix)
    client = redis_client()
    spec = _session()

    async def dispatched(_job: Any) -> None:
        return None

    before = RedisSnapshot.take(client)
    with ScriptTimer() as timer:
        for index in range(jobs):
            job = await job_submit(spec=spec, cut=_cut(index), on_dispatched=dispatched)
            assign = {"job_id": job.job_id, "attempt_id": 1, "session_id": spec.session_id,
                      "utterance_index": index, "trace_id": spec.trace_id}
            result = protocol.decode_node_frame(frames.result_frame(assign, job.node_id))
            if not await job_finish(node_id=job.node_id, result=result):  # type: ignore[arg-type]
                raise RuntimeError("job_finish dropped the result")
    delta = RedisSnapshot.take(client).minus(before)
    # The floor of a script call: the same client, an empty script, the job's body as argument.
    from bench.floor_asgi import FLOOR_SCRIPT, FLOOR_SHA
    from dispatch.store import async_client

    await async_client().script_load(FLOOR_SCRIPT)
    for _ in range(jobs):
        t0 = time.perf_counter()
        await async_client().evalsha(FLOOR_SHA, 0, frames.AUDIO_B64)
        fleet.empty_call.append(time.perf_counter() - t0)
    submits, finishes = timer.durations.get("job_submit", []), timer.durations.get("job_finish", [])
    if len(submits) != jobs or len(finishes) != jobs:
        raise RuntimeError(f"{len(submits)} job_submit and {len(finishes)} job_finish calls for {jobs} jobs")
    fleet.submit += submits
    fleet.finish += finishes
    fleet.pick_redis_usec += delta.usec.get("evalsha", 0)
    fleet.pick_script_calls += delta.calls.get("evalsha", 0)
    fleet.pick_commands += delta.total_calls


async def heartbeat_round(fleet: FleetFigures, count: int) -> None:
    from dispatch import nodes, protocol

    use_prefix(fleet.prefix)
    client = redis_client()
    chosen = random.sample(fleet.node_ids, min(len(fleet.node_ids), count))
    parsed = {node_id: protocol.decode_node_frame(frames.heartbeat_frame(node_id)) for node_id in chosen}
    channels = {node_id: client.hget(f"{fleet.prefix}:node:{node_id}", "channel") or "" for node_id in chosen}
    targets = [random.choice(chosen) for _ in range(count)]
    before = RedisSnapshot.take(client)
    cpu0 = time.process_time()
    for node_id in targets:
        t0 = time.perf_counter()
        outcome = await nodes.node_heartbeat(node_id=node_id, channel=channels[node_id], frame=parsed[node_id])  # type: ignore[arg-type]
        fleet.heartbeat.append(time.perf_counter() - t0)
        if outcome != "ok":
            raise RuntimeError(f"heartbeat answered {outcome}")
    fleet.heartbeat_cpu_s += time.process_time() - cpu0
    delta = RedisSnapshot.take(client).minus(before)
    fleet.heartbeat_redis_usec += delta.usec.get("evalsha", 0)
    fleet.heartbeat_commands += delta.total_calls


async def measure_fleets(prefix: str, sizes: tuple[int, ...], *, rounds: int, jobs_per_round: int,
                         heartbeats: int) -> list[FleetFigures]:
    fleets = [FleetFigures(nodes=n, prefix=f"{prefix}-pick{n}") for n in sizes]
    for fleet in fleets:
        delete_matching(redis_client(), f"{fleet.prefix}:*")
        await register_fleet(fleet)
        log(f"  registered {fleet.nodes} nodes in {fleet.register_s:.1f} s")
    for fleet in fleets:  # warm: scripts loaded, connections open
        await pick_round(fleet, 50)
        fleet.submit.clear()
        fleet.finish.clear()
        fleet.empty_call.clear()
        fleet.pick_redis_usec = fleet.pick_script_calls = fleet.pick_commands = 0
    for _ in range(rounds):
        for fleet in fleets:
            await pick_round(fleet, jobs_per_round)
    for fleet in fleets:
        per = max(1, len(fleet.submit))
        fleet.pick_redis_usec /= per
        fleet.pick_script_calls /= per
        fleet.pick_commands /= per
    for _ in range(rounds):
        for fleet in fleets:
            await heartbeat_round(fleet, heartbeats // rounds)
    for fleet in fleets:
        per = max(1, len(fleet.heartbeat))
        fleet.heartbeat_cpu_s /= per
        fleet.heartbeat_redis_usec /= per
        fleet.heartbeat_commands /= per
    return fleets


# --- The phase -------------------------------------------------------------------------------


def fleets(report: Report) -> list[FleetFigures]:
    """The small fleet, then the large one."""
    result: list[FleetFigures] = report.results[PHASE.name]
    return result


async def measure(bench: Bench) -> None:
    params = bench.params
    measured = await measure_fleets(
        bench.prefix, (10, params.pick_nodes), rounds=params.pick_rounds,
        jobs_per_round=max(1, params.pick_jobs // params.pick_rounds), heartbeats=params.pick_heartbeats,
    )
    for fleet in measured:
        delete_matching(bench.client, f"{fleet.prefix}:*")
    bench.report.results[PHASE.name] = measured


def section(report: Report) -> list[str]:
    small, large = fleets(report)[0], fleets(report)[-1]
    lines = [
        f"## Pick-and-reserve at {small.nodes} and {large.nodes:,} live nodes",
        "",
        "In-process against the same Redis: nodes registered through `nodes.node_register` with 14 languages "
        "and automatic pools on (273 pools per node); jobs through `jobs.job_submit` (a 1 s utterance as body), "
        "each followed by `jobs.job_finish` so slots stay free; the script calls inside timed from Python; the "
        "two fleets measured in alternating rounds.",
        "",
        f"| | {small.nodes} nodes | {large.nodes:,} nodes | ratio |",
        "|---|---|---|---|",
    ]

    def row(label: str, a: float, b: float, digits: int = 3) -> None:
        lines.append(f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {ratio(b, a)} |")

    for q, name in ((0.5, "p50"), (0.99, "p99")):
        row(f"job_submit.lua {name} (ms)", percentile(small.submit, q) * 1e3, percentile(large.submit, q) * 1e3)
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        row(f"job_finish.lua {name} (ms)", percentile(small.finish, q) * 1e3, percentile(large.finish, q) * 1e3)
    row("Redis time per job, both scripts (µs, commandstats)", small.pick_redis_usec, large.pick_redis_usec, 0)
    row("script calls per job (EVALSHA)", small.pick_script_calls, large.pick_script_calls, 2)
    row("Redis commands per job, all (incl. script internals and the two sends)", small.pick_commands,
        large.pick_commands, 1)
    row("node_heartbeat.lua p50 (ms)", percentile(small.heartbeat, 0.5) * 1e3, percentile(large.heartbeat, 0.5) * 1e3)
    row("CPU per heartbeat, Python side (ms)", small.heartbeat_cpu_s * 1e3, large.heartbeat_cpu_s * 1e3)
    row("CPU per heartbeat, Redis side (µs, commandstats)", small.heartbeat_redis_usec, large.heartbeat_redis_usec, 0)
    row("Redis commands per heartbeat, all", small.heartbeat_commands, large.heartbeat_commands, 1)
    row("time to register all nodes in-process, 8 at a time (s)", small.register_s, large.register_s, 2)
    row("per node (ms)", small.register_s / small.nodes * 1e3, large.register_s / large.nodes * 1e3)
    row("Redis memory per registered node (KiB)", small.redis_memory / small.nodes / 1024,
        large.redis_memory / large.nodes / 1024, 1)
    lines += [f"\nSamples: {len(large.submit):,} jobs and {len(large.heartbeat):,} heartbeats per fleet.", ""]
    return lines


PHASE = Phase(
    name="pick",
    title=lambda bench: f"pick-and-reserve at 10 and {bench.params.pick_nodes} nodes (in-process, real Redis)",
    needs="redis",  # before any server runs, so nothing else uses the cores
    measure=measure,
    section=section,
    place=30,
)
