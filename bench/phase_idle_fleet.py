"""A fleet of idle nodes over sockets (10,000 by default), on the floor (daphne echo) and on the
full path: time to register them, server memory per connection, Redis memory per node, and the
server's CPU per heartbeat.

CPU per heartbeat is measured on a paced burst of one heartbeat per node (twice), less what the
server uses meanwhile without the burst (daphne's sweep over its sockets).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from bench import loadgen
from bench.markdown import fmt, ratio
from bench.phases import Bench, Phase, Report

IDLE_WATCH_S = 3.0
BURSTS = 2  # heartbeats per idle node


@dataclass
class SocketFleet:
    nodes: int = 0
    register_s: float = math.nan
    rss_per_node: float = math.nan
    redis_memory_per_node: float = math.nan
    heartbeat_cpu_ms: float = math.nan
    heartbeats: int = 0


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


async def measure_fleet(bench: Bench, base: str, server: Any, *, full: bool) -> SocketFleet:
    params, client = bench.params, bench.client
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
    for _ in range(BURSTS):
        figures.heartbeats += await loadgen.fleet_heartbeats(fleet, rate=params.heartbeat_rate)
    await settle_cpu(server)
    cpu1, t1 = server.cpu(), time.monotonic()
    after = await idle_rate()
    used = cpu1 - cpu0 - (before + after) / 2 * (t1 - t0)
    figures.heartbeat_cpu_ms = max(0.0, used) / figures.heartbeats * 1e3
    await loadgen.fleet_close(fleet)
    await settle_cpu(server)
    return figures


def fleets(report: Report) -> tuple[SocketFleet, SocketFleet]:
    """The floor's fleet, then the full path's."""
    result: tuple[SocketFleet, SocketFleet] = report.results.get(PHASE.name, (SocketFleet(), SocketFleet()))
    return result


async def measure(bench: Bench) -> None:
    floor, stack = bench.floors["memory"], bench.stacks["full"]
    bench.report.results[PHASE.name] = (
        await measure_fleet(bench, floor.ws, floor.process, full=False),
        await measure_fleet(bench, stack.ws, stack.server.process, full=True),
    )


def section(report: Report) -> list[str]:
    params = report.params
    ff, fl = fleets(report)
    lines = [
        f"## A fleet of {params.fleet_nodes:,} idle nodes over sockets",
        "",
        "| | floor: daphne echo | full path | full path ÷ floor |",
        "|---|---|---|---|",
        f"| time to register {params.fleet_nodes:,} nodes, {params.fleet_concurrency} at a time (s) "
        f"| {fmt(ff.register_s)} | {fmt(fl.register_s)} | {ratio(fl.register_s, ff.register_s)} |",
        f"| per node (ms of wall time) | {fmt(ff.register_s / max(1, ff.nodes) * 1e3, 3)} "
        f"| {fmt(fl.register_s / max(1, fl.nodes) * 1e3, 3)} | |",
        f"| server CPU per heartbeat (ms) | {fmt(ff.heartbeat_cpu_ms, 3)} | {fmt(fl.heartbeat_cpu_ms, 3)} "
        f"| {ratio(fl.heartbeat_cpu_ms, ff.heartbeat_cpu_ms)} |",
        f"| server memory per idle node connection (KiB of RSS) | {fmt(ff.rss_per_node / 1024, 1)} "
        f"| {fmt(fl.rss_per_node / 1024, 1)} | {ratio(fl.rss_per_node, ff.rss_per_node)} |",
        f"| Redis memory per node (KiB) | — | {fmt(fl.redis_memory_per_node / 1024, 1)} | |",
        "",
        "The floor's nodes connect to the echo app and have their `node_register` frame echoed; its heartbeats "
        "are swallowed. The full path's nodes register with 14 languages (273 automatic pools each) and send a "
        "real node's heartbeat (load plus capability fields).",
        "",
    ]
    return lines


PHASE = Phase(
    name="idle-fleet",
    title=lambda bench: f"a fleet of {bench.params.fleet_nodes} idle nodes over sockets: register, memory, heartbeats",
    needs="servers",  # the pairs closed: only the fleet's sockets are open
    measure=measure,
    section=section,
    place=20,
)
