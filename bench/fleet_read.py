"""CPU of one dashboard frame and of one /metrics scrape's read, at fleets of several sizes, and
of the worker's fleet summary pass that both read (once per interval for the whole deployment).

Run alone: ``.venv/bin/python -m schedulerproj.launch exec -- .venv/bin/python -m bench.fleet_read``
(a private Redis when ``REDIS_URL`` is unset). ``BENCH_FLEET_SIZES`` (``10,1000,10000``) says
which fleets; nodes register through ``nodes.node_register`` with 14 languages and automatic
pools on (273 pools each), as ``bench/pick.py`` registers them. Every figure is the median of
``BENCH_FLEET_REPEAT`` (7) calls, in this process (``time.process_time``), with Redis's own CPU
(``INFO cpu``, which includes the two ``INFO`` calls around each measure) beside it. The frames are the default view's first page and a page of
one pool's nodes sorted by free slots, and the first page at 10 rows (what a fleet of 10 shows).
Keys are deleted at the end. The bench's phase "the fleet watched" calls ``measure_fleet``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.procs import BASE_DIR, RedisSnapshot, delete_matching, redis_client

Timed = tuple[float, float, float, int]  # CPU of this process, wall time, Redis CPU (s), reply size


async def timed_async(fn: Callable[[], Awaitable[Any]], repeat: int) -> Timed:
    """Median CPU of this process, wall time, Redis CPU (s) and reply size of ``fn`` (after one
    call that warms scripts and connections)."""
    client = redis_client()
    cpu, wall, redis_s, size = [], [], [], 0
    await fn()
    for _ in range(repeat):
        before = RedisSnapshot.take(client)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        out = await fn()
        cpu.append(time.process_time() - cpu0)
        wall.append(time.perf_counter() - wall0)
        redis_s.append(RedisSnapshot.take(client).minus(before).cpu)
        size = len(out) if isinstance(out, str | bytes) else 0
    return statistics.median(cpu), statistics.median(wall), statistics.median(redis_s), size


def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> Timed:
    """``timed_async`` outside an event loop."""
    return asyncio.get_event_loop().run_until_complete(timed_async(fn, repeat))


# What a page or a scrape reads, as a server process builds it (Django set up, the prefix chosen).


async def frame() -> str:
    """One dashboard frame of the default view's first page."""
    from dispatch import fleet
    from dispatch.outbox import json_text
    from nodes.dashboard import dashboard_frame

    return json_text(await dashboard_frame(fleet.DEFAULT_VIEW))  # as the dashboard socket sends it


async def small_frame() -> str:
    """The default view's first page of 10 rows (as many as a fleet of 10 shows)."""
    from dispatch import fleet
    from dispatch.outbox import json_text
    from nodes.dashboard import dashboard_frame

    return json_text(await dashboard_frame(fleet.View(size=10)))  # as the dashboard socket sends it


async def pool_frame() -> str:
    """One dashboard frame of a page of one pool's nodes, sorted by free slots."""
    from dispatch import fleet
    from dispatch.outbox import json_text
    from nodes.dashboard import dashboard_frame

    return json_text(await dashboard_frame(fleet.View(pool="auto:zh-en", sort="free", desc=True)))  # as the dashboard socket sends it


async def scrape() -> str:
    """What one ``/metrics`` scrape reads and writes."""
    from dispatch import fleet, loop_lag, metrics

    (summary, live), lags = await fleet.fleet_scrape(), await loop_lag.loop_lags()
    return metrics.metrics_text(summary, live, lags)


async def summary_pass() -> str:
    """One pass of the worker's fleet summary."""
    from dispatch import fleet_summary

    return json.dumps(await fleet_summary.summary_compute("bench"))


READS: tuple[tuple[str, Callable[[], Awaitable[str]]], ...] = (
    ("summary pass", summary_pass), ("dashboard frame", frame), ("frame of 10 rows", small_frame),
    ("pool page frame", pool_frame), ("scrape read", scrape),
)


async def measure_fleet(size: int, prefix: str, repeat: int) -> dict[str, Timed]:
    """Register ``size`` nodes in-process under ``prefix`` (its keys are left for the caller to
    delete) and time each of ``READS`` on them, the summary pass first (what the others read)."""
    from bench.phase_pick import FleetFigures, register_fleet

    figures = FleetFigures(nodes=size, prefix=prefix)
    await register_fleet(figures)
    print(f"registered {size} nodes in {figures.register_s:.1f} s", file=sys.stderr, flush=True)
    await pool_frame()  # asks for the pool's view: the next pass writes it
    return {name: await timed_async(fn, repeat) for name, fn in READS}


def main() -> None:
    if not os.environ.get("REDIS_URL"):
        sys.exit("REDIS_URL is unset: run under `python -m schedulerproj.launch exec --`.")
    sizes = [int(n) for n in os.environ.get("BENCH_FLEET_SIZES", "10,1000,10000").split(",")]
    repeat = int(os.environ.get("BENCH_FLEET_REPEAT", "7"))
    prefix = f"bench-fleetread-{uuid.uuid4().hex[:6]}"
    database = f"sqlite:///{BASE_DIR / 'var' / 'bench' / 'db.sqlite3'}"
    (BASE_DIR / "var" / "bench").mkdir(parents=True, exist_ok=True)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="schedulerproj.settings", SCHEDULER_REDIS_PREFIX=prefix,
        SCHEDULER_NODE_AUTH="open", DATABASE_URL=os.environ.get("BENCH_DATABASE_URL", database), LOG_LEVEL="WARNING",
    )
    subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput", "-v", "0"], check=True)
    import django

    django.setup()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        for size in sizes:
            measured = loop.run_until_complete(measure_fleet(size, f"{prefix}-{size}", repeat))
            for name, (cpu, wall, redis_s, size_b) in measured.items():
                print(f"{size:>6} nodes  {name:<16} CPU {cpu * 1000:9.2f} ms  wall {wall * 1000:9.2f} ms  "
                      f"Redis {redis_s * 1000:8.2f} ms  {size_b / 1024:8.1f} KiB", flush=True)
    finally:
        delete_matching(redis_client(), f"{prefix}*")


if __name__ == "__main__":
    main()
