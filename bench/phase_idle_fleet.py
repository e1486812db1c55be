"""A fleet of idle nodes over sockets (10,000 by default), on the floor (daphne echo) and on the
full path: time to register them, server memory per connection, Redis memory per node, and the
server's CPU per heartbeat.

The nodes heartbeat as real ones do, right after their ack and every interval; CPU per heartbeat is
measured on a paced burst of one more heartbeat per node (twice), less what the server uses
meanwhile without the burst (daphne's sweep over its sockets, the nodes' own heartbeats).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from bench.fleet import fleet_close, fleet_connect, fleet_heartbeats
from bench.markdown import fmt, ratio
from bench.phases import Bench, Phase, Report, log

IDLE_WATCH_S = 3.0
BURSTS = 2  # heartbeats per idle node in the measured burst


@dataclass
class SocketFleet:
    nodes: int = 0
    register_s: float = math.nan
    rss_per_node: float = math.nan
    redis_memory_per_node: float = math.nan
    heartbeat_cpu_ms: float = math.nan
    heartbeats: int = 0
    closed: int = 0  # sockets the server closed during the phase


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
    fleet = await fleet_connect(base, params.fleet_nodes, concurrency=params.fleet_concurrency, full=full)
    figures.register_s = fleet.seconds
    await settle_cpu(server)
    await asyncio.sleep(1)
    figures.rss_per_node = (server.rss() - rss0) / params.fleet_nodes
    figures.redis_memory_per_node = (int(client.info("memory")["used_memory"]) - mem0) / params.fleet_nodes

    # The server's CPU over the burst and its backlog, less what it uses without the burst. That
    # is daphne's once-a-second sweep over its sockets (with many open, not nothing: watched a
    # while) and the nodes' own heartbeats, counted: both solved for from the watches before and
    # after, however the nodes' heartbeats bunch up in time.
    async def watch(seconds: float) -> tuple[float, float, int]:
        cpu0, t0, sent0 = server.cpu(), time.monotonic(), fleet.sent
        await asyncio.sleep(seconds)
        return server.cpu() - cpu0, time.monotonic() - t0, fleet.sent - sent0

    before = await watch(IDLE_WATCH_S)
    cpu0, t0, sent0 = server.cpu(), time.monotonic(), fleet.sent
    for _ in range(BURSTS):
        figures.heartbeats += await fleet_heartbeats(fleet, rate=params.heartbeat_rate)
    await settle_cpu(server)
    used, seconds, sent = server.cpu() - cpu0, time.monotonic() - t0, fleet.sent - sent0
    after = await watch(IDLE_WATCH_S)
    idle_cpu, idle_s, idle_sent = (before[i] + after[i] for i in range(3))
    # used = sweep × seconds + c × sent and idle_cpu = sweep × idle_s + c × idle_sent: solve for c.
    beats = sent - idle_sent * seconds / idle_s
    if beats > 0:
        figures.heartbeat_cpu_ms = max(0.0, used - idle_cpu * seconds / idle_s) / beats * 1e3
    figures.closed = fleet.closed
    if fleet.closed:
        log(f"  the server closed {fleet.closed} of the fleet's sockets")
    await fleet_close(fleet)
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
    ]
    if ff.closed or fl.closed:
        lines.append(f"| sockets the server closed during the phase | {ff.closed} | {fl.closed} | |")
    lines += [
        "",
        "The floor's nodes connect to the echo app and have their `node_register` frame echoed; its heartbeats "
        "are swallowed. The full path's nodes register with 14 languages (273 automatic pools each) and send a "
        "real node's heartbeat (load plus capability fields). Both heartbeat as real nodes do, right after "
        "registering and every interval; CPU per heartbeat is measured on a paced burst of two more per node.",
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
