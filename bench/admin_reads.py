"""What the pool admin's guidance costs on a big fleet, in-process against real Redis (not part
of ``make bench``'s phases: run it alone).

    .venv/bin/python -m schedulerproj.launch exec -- .venv/bin/python -m bench.admin_reads

- Fleet A (``--nodes``, 10,000 by default; 14 languages each, automatic pools off, one admin
  pool, ``--sessions`` open sessions): the impact preview of adding a pool (``dispatch.impact``),
  a token's connected nodes (``fleet_walk.token_nodes``), the language suggestions.
- Fleet B (``--auto-nodes``, 1,000 by default; 14 languages, automatic pools on, so 273 pools of
  1,000 members each): a page of the automatic pools, and what ``node_register.lua`` and a
  republish (``node_pools.lua`` per node) cost in Redis with the automatic-pool index kept by
  ``set_membership``; with ``--old-scripts DIR`` (the scripts of an earlier commit, e.g.
  ``git archive b801a4a dispatch/scripts | tar -x -C /tmp/old``) the same with those, to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "schedulerproj.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from bench.procs import RedisSnapshot, delete_matching, redis_client  # noqa: E402
from dispatch import admin_reads, keys, store  # noqa: E402
from dispatch.fleet_walk import token_nodes  # noqa: E402
from dispatch.impact import config_with_pool, impact  # noqa: E402
from dispatch.nodes import node_offline, node_register  # noqa: E402
from dispatch.outbox import json_text  # noqa: E402
from dispatch.protocol import decode_node_frame  # noqa: E402
from dispatch.sessions import session_open  # noqa: E402
from fleetsim import frames  # noqa: E402
from pools.rules import NodeCaps, PoolConfig, PoolSpec, node_pools, routes  # noqa: E402

ROUNDS = 3


def publish(config: PoolConfig) -> None:
    """What pools_publish's first call does, from a configuration made here (no database)."""
    route_args: list[str] = []
    for need, route in routes(config).items():
        route_args += [need, json_text([list(entry) for entry in route])]
    store.run_sync("config_publish", config.version, config.to_json(), "1" if config.auto else "0", "{}",
                   uuid.uuid4().hex[:16], *route_args)


async def register(count: int, tokens: int = 10, concurrency: int = 8) -> list[str]:
    frame = decode_node_frame(frames.encode(frames.register_frame()))
    queue, ids = iter(range(count)), []

    async def one() -> None:
        for index in queue:
            done = await node_register(frame=frame, token=f"tok-{index % tokens}", channel=f"bench.admin!{index}", current_id=None)  # type: ignore[arg-type]
            ids.append(done.node_id)

    await asyncio.gather(*(one() for _ in range(concurrency)))
    return ids


def timed(what: Callable[[], Any]) -> tuple[float, float, int, Any]:
    """Median wall ms, median Python CPU ms, median Redis µs of ROUNDS runs, and the last result."""
    walls, cpus, usecs, result = [], [], [], None
    client = redis_client()
    for _ in range(ROUNDS):
        before, cpu0, t0 = RedisSnapshot.take(client), time.process_time(), time.perf_counter()
        result = what()
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append((time.process_time() - cpu0) * 1000)
        usecs.append(RedisSnapshot.take(client).minus(before).total_usec)
    return statistics.median(walls), statistics.median(cpus), int(statistics.median(usecs)), result


def row(label: str, figures: tuple[float, float, int, Any], note: str = "") -> None:
    wall, cpu, usec, _ = figures
    print(f"| {label} | {wall:,.0f} | {cpu:,.0f} | {usec / 1000:,.1f} | {note} |")


def fleet_a(nodes: int, sessions: int) -> None:
    zh_en = PoolSpec(name="zh-en", priority=10, strategy="random", required_services=frozenset({"asr", "nmt"}),
                     pairs=frozenset({("zh", "en"), ("en", "zh")}))
    config = PoolConfig(pools=(zh_en,), auto=False)
    publish(config)
    t0 = time.perf_counter()
    asyncio.run(register(nodes))
    print(f"fleet A: {nodes:,} nodes registered in {time.perf_counter() - t0:,.0f} s", flush=True)

    async def open_sessions() -> None:
        for index in range(sessions):
            await session_open(trace_id=f"t-{index}", channel=f"bench.session!{index}", need="zh>en")

    asyncio.run(open_sessions())
    settings.SCHEDULER_AUTO_PAIR_POOLS = False
    ja_ko = PoolSpec(name="ja-ko", priority=20, strategy="random", required_services=frozenset({"asr", "nmt"}),
                     pairs=frozenset({("ja", "ko"), ("ko", "ja")}))
    zh_en_high = PoolSpec(name="zh-en-high", priority=20, strategy="random", required_services=frozenset({"asr"}),
                          pairs=frozenset({("zh", "en")}))
    print("\n| read (fleet A) | wall ms | Python CPU ms | Redis ms | what it found |\n|---|---|---|---|---|")
    added = timed(lambda: impact(config, config_with_pool(config, ja_ko)))
    row("impact of adding a pool every node joins", added, added[3].lines()[0][:90])
    rerouted = timed(lambda: impact(config, config_with_pool(config, zh_en_high)))
    row("impact of a pool that reroutes every session", rerouted, next(
        (line for line in rerouted[3].lines() if line.startswith("Sessions")), "")[:90])
    found = timed(lambda: token_nodes("tok-1"))
    row("a token's connected nodes", found, f"{found[3].count:,} nodes, at least: {found[3].at_least}")
    languages = timed(admin_reads.languages_reported)
    row("language suggestions (a sample)", languages, f"{len(languages[3])} languages")


def per_call(delta: Any) -> tuple[float, float]:
    """Redis µs per script call and commands run inside each (scripts alone in the window)."""
    calls = max(1, delta.calls.get("evalsha", 0))
    inside = sum(count for name, count in delta.calls.items() if name not in ("evalsha", "hget", "script|load", "script"))
    return delta.usec.get("evalsha", 0) / calls, inside / calls


def fleet_b(nodes: int, label: str, *, pages: bool) -> None:
    settings.SCHEDULER_AUTO_PAIR_POOLS = True
    config = PoolConfig(auto=True)
    publish(config)
    client = redis_client()
    before = RedisSnapshot.take(client)
    ids = asyncio.run(register(nodes))
    register_usec, register_commands = per_call(RedisSnapshot.take(client).minus(before))
    caps = NodeCaps.from_json(json.loads(store.decoded(store.sync_client().hget(keys.node(ids[0]), "caps"))))
    pools = node_pools(config, caps)
    capvers = {node_id: store.decoded(store.sync_client().hget(keys.node(node_id), "capver")) for node_id in ids}
    before = RedisSnapshot.take(client)
    for node_id in ids:  # a republish: every node's pools applied again, unchanged
        store.run_sync("node_pools", node_id, capvers[node_id], config.version, json_text(pools), "")
    repool_usec, repool_commands = per_call(RedisSnapshot.take(client).minus(before))
    if pages:
        print("\n| read (fleet B) | wall ms | Python CPU ms | Redis ms | what it found |\n|---|---|---|---|---|")
        count = timed(admin_reads.auto_pools_count)
        row("automatic pools counted", count, f"{count[3]} pools")
        page = timed(lambda: admin_reads.auto_pools_page(page=2))
        first = page[3].rows[0]
        row("a page of 50 automatic pools with slots", page, f"{first.name}: {first.members} members, {first.members_read} read")
    channels = {node_id: store.decoded(store.sync_client().hget(keys.node(node_id), "channel")) for node_id in ids}

    async def leave() -> None:
        for node_id in ids:  # every node leaves (its socket closed)
            await node_offline(node_id=node_id, channel=channels[node_id], move_jobs=False)

    before = RedisSnapshot.take(client)
    asyncio.run(leave())
    offline_usec, offline_commands = per_call(RedisSnapshot.take(client).minus(before))
    print(f"\n{label}: {nodes:,} nodes in {len(pools)} pools each. Redis µs and commands inside, per call: "
          f"node_register.lua {register_usec:,.0f} µs, {register_commands:,.0f} commands; "
          f"node_pools.lua (pools unchanged) {repool_usec:,.0f} µs, {repool_commands:,.0f} commands; "
          f"node_offline.lua {offline_usec:,.0f} µs, {offline_commands:,.0f} commands", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--auto-nodes", type=int, default=1_000)
    parser.add_argument("--old-scripts", type=Path, default=None)
    args = parser.parse_args()
    base = f"bench-admin-{uuid.uuid4().hex[:6]}"
    client = redis_client()
    try:
        settings.SCHEDULER_REDIS_PREFIX = f"{base}-a"
        fleet_a(args.nodes, args.sessions)
        delete_matching(client, f"{base}-a:*")
        settings.SCHEDULER_REDIS_PREFIX = f"{base}-b"
        fleet_b(args.auto_nodes, "fleet B, this commit's scripts", pages=True)
        delete_matching(client, f"{base}-b:*")
        if args.old_scripts:
            store.SCRIPTS_DIR = args.old_scripts
            store.script_source.cache_clear()
            store.script_sha.cache_clear()
            settings.SCHEDULER_REDIS_PREFIX = f"{base}-c"
            fleet_b(args.auto_nodes, f"fleet B, scripts of {args.old_scripts}", pages=False)
    finally:
        for suffix in ("a", "b", "c"):
            delete_matching(client, f"{base}-{suffix}:*")


if __name__ == "__main__":
    main()
