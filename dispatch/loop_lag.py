"""Each server process watches its own event loop: a timer that should fire every ``TICK_S``,
and how late it fired. Anything CPU-heavy run on the loop (a frame built from the whole fleet,
say) shows here, and every socket of that process waited that long.

The process keeps a histogram of the lateness, logs a WARNING naming it when a tick is more
than ``WARN_S`` late, and publishes the histogram to Redis under its own name with a TTL, so
a ``/metrics`` scrape on any process shows every live process
(``scheduler_event_loop_lag_seconds{process=...}``). An observation: no decision reads it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from dispatch import keys, store

log = logging.getLogger("dispatch.loop_lag")

TICK_S = 0.05
WARN_S = 0.1
PUBLISH_EVERY_S = 2.0
KEEP_S = 10  # a process that stopped publishing drops off /metrics after this long
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class LagHistogram:
    """Counts per bucket (not cumulative; the last one is +Inf), their sum, and the worst."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_S) + 1))
    sum_s: float = 0.0
    max_s: float = 0.0

    def observe(self, lag_s: float) -> None:
        index = next((i for i, bound in enumerate(BUCKETS_S) if lag_s <= bound), len(BUCKETS_S))
        self.counts[index] += 1
        self.sum_s += lag_s
        self.max_s = max(self.max_s, lag_s)

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) as Prometheus has a histogram's buckets."""
        out, running = [], 0
        for bound, count in zip([*(f"{b:g}" for b in BUCKETS_S), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out

    def to_json(self) -> str:
        return json.dumps({"counts": self.counts, "sum": round(self.sum_s, 6), "max": round(self.max_s, 6)})

    @classmethod
    def from_json(cls, raw: str) -> LagHistogram | None:
        try:
            data = json.loads(raw)
            counts = [int(n) for n in data["counts"]]
        except (ValueError, KeyError, TypeError):
            return None
        if len(counts) != len(BUCKETS_S) + 1:
            return None  # published by a process with other buckets
        return cls(counts=counts, sum_s=float(data.get("sum", 0)), max_s=float(data.get("max", 0)))


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def _publish(name: str, histogram: LagHistogram) -> None:
    try:
        pipe = store.async_client().pipeline(transaction=False)
        pipe.set(keys.loop_lag(name), histogram.to_json(), ex=KEEP_S)
        now_ms = int(time.time() * 1000)
        pipe.zadd(keys.loop_lags(), {name: now_ms + KEEP_S * 1000})
        pipe.zremrangebyscore(keys.loop_lags(), "-inf", now_ms)
        await pipe.execute()
    except redis.RedisError:
        pass  # store_watch says when the store is unreachable; the next publish tries again


async def loop_watch() -> None:
    """Run for the life of the process: time the loop's ticks, warn when one is late, publish."""
    loop = asyncio.get_running_loop()
    name = process_name()
    histogram = LagHistogram()
    publishing: asyncio.Future[Any] | None = None
    next_publish = loop.time()
    while True:
        before = loop.time()
        await asyncio.sleep(TICK_S)
        now = loop.time()
        late = max(0.0, now - before - TICK_S)
        histogram.observe(late)
        if late > WARN_S:
            log.warning("event loop late by %d ms", round(late * 1000), extra={"code": name})
        if now >= next_publish and (publishing is None or publishing.done()):
            next_publish = now + PUBLISH_EVERY_S
            publishing = asyncio.ensure_future(_publish(name, histogram))


async def loop_lags() -> dict[str, LagHistogram]:
    """Every live server process's published histogram, by process name (two round trips,
    O(processes))."""
    client = store.async_client()
    names = sorted(cast(list[str], await client.zrangebyscore(keys.loop_lags(), int(time.time() * 1000), "+inf")))
    if not names:
        return {}
    raws = cast(list[str | None], await client.mget([keys.loop_lag(name) for name in names]))
    found = {name: LagHistogram.from_json(raw) for name, raw in zip(names, raws, strict=True) if raw}
    return {name: histogram for name, histogram in found.items() if histogram is not None}
