"""What one node can cost at the bounds on what it declares: pools joined, Redis time of the
frames that move its memberships, Redis memory.

``.venv/bin/python -m schedulerproj.launch exec -- .venv/bin/python -m bench.node_bounds`` (the launcher
starts a private Redis when ``REDIS_URL`` is unset). In-process, against real Redis, through the
node services the socket consumer calls (``dispatch.nodes``), with automatic pools on and no
admin pool. For each count L of languages (each of the three lists the same L made-up codes of
16 characters, the longest allowed, none shared with any other node, so every pool is new;
``SCHEDULER_NODE_MAX_SERVICES`` entries in each service list), one node after another:

- ``register``: a first registration (``node_register.lua``): pools joined, Redis memory added;
- ``register again``: the same node registers again with L other codes (a reconnect, or a second
  ``node_register`` once its re-pool window has passed): it leaves every pool and joins as many
  new ones in one script, the longest any node frame can make a script run;
- ``heartbeat swap``: a heartbeat that changes every code again (``node_heartbeat.lua``, then
  ``node_pools.lua``);
- ``drain``, ``resume``, ``offline``: ``node_drain.lua`` both ways and ``node_offline.lua``.

Per frame: Redis CPU (``INFO cpu``, less what the measurement's own ``INFO`` calls cost), which a
busy machine inflates least; script time (``INFO commandstats``'s ``evalsha`` time: how long Redis
served nobody else, which a busy machine inflates most); and Redis commands, script internals
included, which are the same on any machine. Python CPU is this process's for the registration
(computing the pools): the server process's event loop is busy for as long. Each figure is the
median of ``BENCH_BOUNDS_ROUNDS`` nodes (5), the sizes taking turns. ``BENCH_BOUNDS_LANGS`` picks
the counts (comma-separated; the bound in force is always among them). Keys live under their own
prefix and are deleted at the end.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
SERVICE_TYPES = ("asr", "nmt", "tts", "tone", "semantic", "phonetic", "punctuation")
CODE_LENGTH = 16  # the longest language code a node may declare: the longest pool names
DEFAULT_LANGS = "14,32,48,64,100,150"


@dataclass
class Figures:
    languages: int
    pools: int = 0
    usec: dict[str, list[int]] = field(default_factory=dict)  # Redis time per frame kind
    cpu: dict[str, list[float]] = field(default_factory=dict)  # Redis CPU per frame kind (ms)
    commands: dict[str, list[int]] = field(default_factory=dict)  # Redis commands per frame kind
    python_ms: list[float] = field(default_factory=list)  # this process's CPU per registration
    memory: list[int] = field(default_factory=list)  # Redis memory a registration added
    record: list[int] = field(default_factory=list)  # the node hash's own size

    def add(self, kind: str, spent: Spent) -> None:
        self.usec.setdefault(kind, []).append(spent.usec)
        self.cpu.setdefault(kind, []).append(max(0.0, spent.redis_cpu_ms - MEASURING_MS[0]))
        self.commands.setdefault(kind, []).append(spent.commands)


MEASURING_MS = [0.0]  # Redis CPU of the measurement itself (its INFO calls), taken off each figure
KINDS = ("register", "register again", "heartbeat swap", "drain", "resume", "offline")


def language_codes(count: int, salt: str) -> list[str]:
    """``count`` distinct codes of the longest shape a node may send, unique to ``salt``."""
    return [f"{salt}{index:0{CODE_LENGTH - len(salt)}d}" for index in range(count)]


def register_frame(langs: list[str], services: int, node_id: str | None = None) -> dict[str, Any]:
    types = [SERVICE_TYPES[index % len(SERVICE_TYPES)] for index in range(services)]
    return {
        "type": "node_register", "node_id": node_id, "version": "2.0.0", "platform": "linux",
        "max_concurrent_jobs": 4,
        "installed_services": [
            {"service_id": f"svc-{index}", "type": kind, "device": "gpu", "status": "running"}
            for index, kind in enumerate(types)
        ],
        "capability_by_type": [{"type": kind, "ready": True, "devices": ["gpu"]} for kind in types],
        "language_capabilities": {"asr_languages": langs, "tts_languages": langs, "semantic_languages": langs,
                                  "semantic_core_ready": True},
    }


@dataclass
class Spent:
    usec: int  # time Redis spent in scripts (commandstats): what others waited
    redis_cpu_ms: float  # Redis's CPU meanwhile: the same work, less what a busy machine adds
    commands: int  # Redis commands, script internals included: the same on any machine
    python_ms: float  # this process's CPU
    answer: Any


async def redis_counters(client: Any) -> tuple[int, float, int]:
    stats, cpu = await client.info("commandstats"), await client.info("cpu")
    usec = int(stats.get("cmdstat_evalsha", {}).get("usec", 0))
    # INFO is the measurement's own; EVALSHA is counted by what its script runs
    calls = sum(int(value["calls"]) for name, value in stats.items() if name not in ("cmdstat_info", "cmdstat_evalsha"))
    return usec, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls


async def spent(client: Any, call: Awaitable[Any]) -> Spent:
    """Run ``call`` and say what it cost."""
    (usec, cpu, calls), python = await redis_counters(client), time.process_time()
    answer = await call
    python = time.process_time() - python
    usec_after, cpu_after, calls_after = await redis_counters(client)
    return Spent(usec_after - usec, (cpu_after - cpu) * 1000, calls_after - calls, python * 1000, answer)


async def one_node(figures: Figures) -> None:
    import msgspec
    from django.conf import settings

    from dispatch import keys, protocol, store
    from dispatch.nodes import node_drain, node_heartbeat, node_offline, node_register

    client = store.async_client()
    services = settings.SCHEDULER_NODE_MAX_SERVICES
    salt = f"b{uuid.uuid4().hex[:5]}"
    channel = f"bench.bounds!{salt}"

    def decoded(frame: dict[str, Any]) -> Any:
        return protocol.decode_node_frame(msgspec.json.encode(frame))

    first = decoded(register_frame(language_codes(figures.languages, salt + "a"), services))
    memory = int((await client.info("memory"))["used_memory"])
    registering = await spent(client, node_register(frame=first, token="open", channel=channel, current_id=None))
    figures.add("register", registering)
    figures.python_ms.append(registering.python_ms)
    figures.memory.append(int((await client.info("memory"))["used_memory"]) - memory)
    node_id = registering.answer.node_id
    figures.record.append(int(await client.memory_usage(keys.node(node_id), samples=0) or 0))
    figures.pools = len(msgspec.json.decode(await client.hget(keys.node(node_id), "pools") or "[]"))

    # the same node on a new socket, with other languages: out of every pool, into as many
    again = decoded(register_frame(language_codes(figures.languages, salt + "b"), services, node_id))
    figures.add("register again", await spent(
        client, node_register(frame=again, token="open", channel=channel + "-2", current_id=None)
    ))
    channel += "-2"

    others = language_codes(figures.languages, salt + "c")
    beat = decoded({"type": "node_heartbeat", "node_id": node_id, "timestamp": 0,
                    "language_capabilities": {"asr_languages": others, "tts_languages": others,
                                              "semantic_languages": others}})
    swap = await spent(client, node_heartbeat(node_id=node_id, channel=channel, frame=beat))
    if swap.answer != "ok" or await client.hexists(keys.node(node_id), "pending"):
        raise RuntimeError("the heartbeat's change was not applied at once")
    figures.add("heartbeat swap", swap)
    figures.add("drain", await spent(client, node_drain(node_id=node_id, drain=True)))
    figures.add("resume", await spent(client, node_drain(node_id=node_id, drain=False)))
    figures.add("offline", await spent(client, node_offline(node_id=node_id, channel=channel)))


async def measure(sizes: list[int], rounds: int) -> list[Figures]:
    from dispatch import store

    client = store.async_client()
    MEASURING_MS[0] = statistics.median([(await spent(client, asyncio.sleep(0))).redis_cpu_ms for _ in range(9)])
    figures = [Figures(languages=size) for size in sizes]
    for _ in range(rounds):  # the sizes take turns, so a busy moment is shared
        for item in figures:
            await one_node(item)
    return figures


def render(figures: list[Figures], bound: int) -> str:
    header = (["languages (each list)", "pools joined"]
              + [f"{kind}: Redis CPU ms (script ms) · commands" for kind in KINDS]
              + ["register: Python CPU ms", "Redis memory added (MB)", "node record (KB)"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for item in figures:
        cells = [f"{item.languages}" + (" (bound)" if item.languages == bound else ""), f"{item.pools:,}"]
        cells += [f"{statistics.median(item.cpu[kind]):.1f} ({statistics.median(item.usec[kind]) / 1000:.1f})"
                  f" · {statistics.median(item.commands[kind]):,.0f}" for kind in KINDS]
        cells += [f"{statistics.median(item.python_ms):.1f}", f"{statistics.median(item.memory) / 1e6:.2f}",
                  f"{statistics.median(item.record) / 1e3:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if not os.environ.get("REDIS_URL"):
        sys.exit("REDIS_URL is unset: run it under `python -m schedulerproj.launch exec --` (a private Redis).")
    prefix = f"bench-{uuid.uuid4().hex[:8]}-bounds"
    database = BASE_DIR / "var" / "bench" / "node_bounds.sqlite3"
    database.parent.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="schedulerproj.settings", SCHEDULER_REDIS_PREFIX=prefix,
        SCHEDULER_AUTO_PAIR_POOLS="true", DATABASE_URL=f"sqlite:///{database}", LOG_LEVEL="WARNING",
    )
    subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput", "-v", "0"],
                   cwd=BASE_DIR, check=True)
    import django

    django.setup()
    from django.conf import settings

    from bench.procs import delete_matching, redis_client
    from dispatch.config import pools_publish

    bound = settings.SCHEDULER_NODE_MAX_LANGUAGES
    raw = os.environ.get("BENCH_BOUNDS_LANGS") or DEFAULT_LANGS
    sizes = sorted({int(item) for item in raw.split(",") if item.strip()} | {bound})
    rounds = int(os.environ.get("BENCH_BOUNDS_ROUNDS") or 5)
    client = redis_client()
    try:
        pools_publish()
        figures = asyncio.run(measure(sizes, rounds))
    finally:
        delete_matching(client, f"{prefix}:*")
    server = client.info("server")
    print(f"One node at the bounds: medians of {rounds} nodes; Redis "
          f"{server['redis_version']}; SCHEDULER_NODE_MAX_LANGUAGES={bound}, "
          f"SCHEDULER_NODE_MAX_SERVICES={settings.SCHEDULER_NODE_MAX_SERVICES}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.\n")
    print(render(figures, bound))


if __name__ == "__main__":
    main()
