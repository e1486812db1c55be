"""The fleet summary: computed at most once per interval for the whole deployment by the worker
copy that claims it (``SET NX PX``), read by every dashboard frame and every ``/metrics`` scrape
(``dispatch.fleet``). An observation, not state: no decision reads it.

A pass reads every node record in slices (``fleet_slice.lua``: an SSCAN step and its nodes'
fields, one round trip each), so Redis never runs one long command for it. Per-pool figures
come from grouping nodes by their ``pools_sig`` (a hash of their pools, written with the pools
by ``node_register.lua`` and ``node_pools.lua``): a fleet of alike nodes is a handful of
groups, so the cost is the nodes plus pools × distinct pool sets, not nodes × pools. It also writes the node-table views that
viewers asked for in the last few seconds (``fleet.View``), and takes the load sample.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import msgspec
import redis

from dispatch import history, keys, store
from dispatch.fleet import DEFAULT_VIEW, ID_WIDTH, MAX_VIEWS, STATUSES, WANTED_FOR_S, View, pack
from dispatch.selectors import HISTORY_WINDOW_S
from dispatch.store import as_int
from pools.rules import NodeCaps, PoolConfig, served_pairs

log = logging.getLogger("dispatch.fleet_summary")

SUMMARY_EVERY_MS = 1000  # at most one pass per this long, whichever copy claims it
CLAIM_EVERY_S = 0.25  # how often each worker copy tries the claim
SLICE = 100  # node records read per round trip (under a millisecond of Redis each)
KEEP_S = 60  # the summary and its views outlive a stopped worker this long
CACHE_LIMIT = 4096


class Load(msgspec.Struct):
    """The two numbers of a heartbeat's ``resource_usage`` the totals average."""

    cpu_percent: Any = None
    gpu_percent: Any = None


_load_decoder = msgspec.json.Decoder(Load)
# A signature is the hash of its pools, so what it stands for never changes: kept across passes.
_pools_by_sig: dict[str, frozenset[str]] = {}
_pairs_by_caps: dict[str, frozenset[str]] = {}


@dataclass(slots=True)
class Row:
    node_id: str
    status: str
    slots: int
    used: int
    sig: str
    caps: str
    last_seen_ms: int
    failed: int
    load: str
    eject_until_ms: int

    @property
    def connected(self) -> bool:
        return self.status != "offline"

    @property
    def free(self) -> int:
        return max(0, self.slots - self.used) if self.status == "ready" else 0



def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


async def _scan(*, with_caps: bool) -> list[Row]:
    """Every node record, a slice at a time (``fleet_slice.lua``; caps only ``with_caps``);
    sorted by node id. Ids whose record expired (offline for long) are forgotten, a slice at a
    time too."""
    found: dict[str, Row] = {}
    cursor = "0"
    while True:
        reply = await store.run("fleet_slice", cursor, SLICE, "1" if with_caps else "0")
        cursor, flat = str(reply[0]), reply[1:]
        gone = []
        for i in range(0, len(flat), 10):
            node_id, status, slots, used, sig, caps, last_seen, failed, load, eject_until = flat[i : i + 10]
            if not status:
                gone.append(node_id)
            elif len(node_id) <= ID_WIDTH:  # longer ones are not ids node_register makes
                found[node_id] = Row(node_id, status, as_int(slots), as_int(used), sig, caps, as_int(last_seen),
                                     as_int(failed), load, as_int(eject_until))
        if gone:
            await store.run("nodes_prune", *gone)
        if cursor == "0":
            return sorted(found.values(), key=attrgetter("node_id"))


async def _pools_of(client: Any, rows: list[Row]) -> dict[str, frozenset[str]]:
    """Each signature's pools: read once from one node that has it, then remembered."""
    if len(_pools_by_sig) > CACHE_LIMIT:
        _pools_by_sig.clear()
    missing: dict[str, str] = {}
    for row in rows:
        if not row.sig:
            row.sig = f"node:{row.node_id}"  # a record older than signatures: its own pools
        if row.sig not in _pools_by_sig:
            missing.setdefault(row.sig, row.node_id)
    found = dict(_pools_by_sig)
    if missing:
        pipe = client.pipeline(transaction=False)
        for node_id in missing.values():
            pipe.hget(keys.node(node_id), "pools")
        for sig, raw in zip(missing, await pipe.execute(), strict=True):
            found[sig] = frozenset(json.loads(raw) if raw else ())
            if raw and hashlib.sha1(raw.encode()).hexdigest() == sig:  # not changed since read
                _pools_by_sig[sig] = found[sig]
    return found


def _pairs_of(caps_raw: str) -> frozenset[str]:
    pairs = _pairs_by_caps.get(caps_raw)
    if pairs is None:
        if len(_pairs_by_caps) > CACHE_LIMIT:
            _pairs_by_caps.clear()
        try:
            caps = NodeCaps.from_json(json.loads(caps_raw)) if caps_raw else None
        except (ValueError, TypeError, KeyError):
            caps = None
        served = served_pairs(caps, with_tts=False) if caps else set()
        pairs = _pairs_by_caps[caps_raw] = frozenset(f"{s}>{t}" for s, t in served)
    return pairs


def _totals(rows: list[Row], now_ms: int) -> dict[str, Any]:
    counts = {status: 0 for status in STATUSES}
    used = total = ejected = 0
    cpu: list[float] = []
    gpu: list[float] = []
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
        if row.connected:
            used += row.used
            total += row.slots
            ejected += row.eject_until_ms > now_ms
            if row.load:
                try:
                    load = _load_decoder.decode(row.load)
                except msgspec.DecodeError:
                    continue
                for values, value in ((cpu, _number(load.cpu_percent)), (gpu, _number(load.gpu_percent))):
                    if value is not None:
                        values.append(value)
    return {
        "nodes": counts,
        "node_count": len(rows),
        "slots_used": used,
        "slots_total": total,
        "ejected": ejected,
        "cpu": round(sum(cpu) / len(cpu), 1) if cpu else None,
        "gpu": round(sum(gpu) / len(gpu), 1) if gpu else None,
    }


def _percentile(ordered: list[int], q: float) -> int | None:
    """Nearest-rank percentile of sorted values (q in 0..100)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


async def _activity(client: Any, now_ms: int) -> tuple[dict[int, int], dict[str, dict[int, int]], dict[str, list[int]]]:
    """Jobs placed per minute over the history window (all pools, and by pool), and the recent
    dispatch latencies of each pool that placed a job in it."""
    last = now_ms // 60000
    minutes = list(range(last - HISTORY_WINDOW_S // 60, last + 1))
    pipe = client.pipeline(transaction=False)
    for number in minutes:
        pipe.hgetall(keys.minute(number))
    per_minute = dict(zip(minutes, await pipe.execute(), strict=True))
    totals = {number: as_int(fields.get("placed")) for number, fields in per_minute.items()}
    by_pool: dict[str, dict[int, int]] = {}
    for number, fields in per_minute.items():
        for name, count in fields.items():
            if name.startswith("placed:"):
                by_pool.setdefault(name.removeprefix("placed:"), {})[number] = as_int(count)
    names = sorted(by_pool)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.lrange(keys.dispatch_latency(name), 0, -1)
    latencies = await pipe.execute() if names else []
    return totals, by_pool, {name: sorted(as_int(v) for v in values) for name, values in zip(names, latencies, strict=True)}


def _pools(rows: list[Row], pools_of: dict[str, frozenset[str]], config: PoolConfig | None,
           counters: dict[str, str], activity: Any, now_ms: int) -> list[dict[str, Any]]:
    _, placed, latencies = activity
    groups: dict[str, list[int]] = {}  # signature → members, ready, free slots, slots (of ready ones)
    for row in rows:
        if row.connected:
            group = groups.setdefault(row.sig, [0, 0, 0, 0])
            group[0] += 1
            if row.status == "ready":
                group[1] += 1
                group[2] += row.free
                group[3] += row.slots
    figures: dict[str, list[int]] = {}
    for sig, group in groups.items():
        for name in pools_of.get(sig, ()):
            into = figures.setdefault(name, [0, 0, 0, 0])
            for index in range(4):
                into[index] += group[index]
    order = {pool.name: index for index, pool in enumerate(config.enabled_pools)} if config else {}
    names = set(order) | set(figures) | set(placed)
    names |= {name.removeprefix("no_available:") for name in counters if name.startswith("no_available:")}
    last_minute = now_ms // 60000
    out = []
    for name in sorted(names, key=lambda n: (order.get(n, len(order)), n)):
        members, ready, free, total = figures.get(name, (0, 0, 0, 0))
        by_minute = placed.get(name, {})
        recent = latencies.get(name, [])
        out.append({
            "name": name, "admin": name in order, "members": members, "ready_nodes": ready, "free": free,
            "total": total, "jobs_per_min": by_minute.get(last_minute - 1, 0), "jobs_15m": sum(by_minute.values()),
            "p50_ms": _percentile(recent, 50), "p95_ms": _percentile(recent, 95),
            "no_available": as_int(counters.get(f"no_available:{name}")),
        })
    return out


SORT_KEYS: dict[str, Callable[[Row], int]] = {
    "free": attrgetter("free"),
    "used": attrgetter("used"),
    "failed": attrgetter("failed"),
    "heartbeat": lambda row: -row.last_seen_ms,  # seconds since the last heartbeat, fewest first
}


def _views(rows: list[Row], views: list[View], pools_of: dict[str, frozenset[str]]) -> dict[str, str]:
    """Each view's node ids in its order (ascending; ties by node id), packed."""
    ordered: dict[str, list[Row]] = {"id": rows}  # rows come sorted by node id
    out: dict[str, str] = {}
    for view in views:
        if view.sort not in ordered:
            ordered[view.sort] = sorted(rows, key=SORT_KEYS[view.sort])  # stable: ties stay by id
        chosen = ordered[view.sort]
        if view.status:
            chosen = [row for row in chosen if row.status == view.status]
        if view.pool:
            sigs = {sig for sig, pools in pools_of.items() if view.pool in pools}
            chosen = [row for row in chosen if row.sig in sigs]
        if view.node:
            chosen = [row for row in chosen if row.node_id.lower().startswith(view.node)]
        if view.pair:
            chosen = [row for row in chosen if view.pair in _pairs_of(row.caps)]
        out[view.key()] = pack([row.node_id for row in chosen])
    return out


async def summary_compute(name: str) -> dict[str, Any]:
    """One pass: read the fleet in slices, write the summary and the wanted views; returns the
    totals written."""
    client = store.async_client()
    started = time.perf_counter()
    seconds, micros = await client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.metrics())
    pipe.hget(keys.config(), "json")
    pipe.zremrangebyscore(keys.fleet_views_wanted(), "-inf", int(time.time() * 1000) - WANTED_FOR_S * 1000)
    pipe.zrevrange(keys.fleet_views_wanted(), 0, MAX_VIEWS - 1)
    counters, config_raw, _, wanted = await pipe.execute()
    views = [DEFAULT_VIEW] + [view for view in map(View.from_wanted, wanted) if view is not None]
    rows = await _scan(with_caps=any(view.pair for view in views))
    pools_of = await _pools_of(client, rows)
    config = PoolConfig.from_json(config_raw) if config_raw else None
    activity = await _activity(client, now_ms)
    totals = _totals(rows, now_ms)
    pools = _pools(rows, pools_of, config, counters, activity, now_ms)
    summary: dict[Any, str | int | float] = {
        "at_ms": now_ms,
        "totals": json.dumps(totals),
        "pools": json.dumps(pools),
        "pool_names": json.dumps([pool["name"] for pool in pools]),
        "minutes": json.dumps(sorted([number, count] for number, count in activity[0].items())),
        "by": name,
    }
    built = _views(rows, views, pools_of)
    summary["took_ms"] = round((time.perf_counter() - started) * 1000, 1)
    pipe = client.pipeline(transaction=False)
    pipe.hset(keys.fleet(), mapping=summary)
    pipe.hincrby(keys.fleet(), "passes", 1)
    pipe.expire(keys.fleet(), KEEP_S)
    for key, text in built.items():
        pipe.set(key, text, ex=KEEP_S)
    await pipe.execute()
    await history.fleet_sample(totals)
    return totals


async def summary_claimed(name: str) -> bool:
    """Compute the summary when no worker copy has within the interval; whether this one did.
    A pass that took more than a fifth of the interval holds the claim four times as long as it
    took, so the summary never keeps a worker and Redis busy more than a fifth of the time
    (a fleet far past 10,000 nodes, or a starved machine, gets a slower summary instead)."""
    client = store.async_client()
    if not await client.set(keys.fleet_claim(), name, nx=True, px=SUMMARY_EVERY_MS):
        return False
    started = time.perf_counter()
    await summary_compute(name)
    took_ms = (time.perf_counter() - started) * 1000
    if took_ms * 5 > SUMMARY_EVERY_MS:
        await client.pexpire(keys.fleet_claim(), int(took_ms * 4))
    return True


async def summary_loop(stop: asyncio.Event, name: str) -> None:
    """Worker: try the claim a few times a second until ``stop`` (beside the worker's passes,
    so a long summary never delays job timeouts)."""
    while not stop.is_set():
        try:
            await summary_claimed(name)
        except redis.RedisError:
            pass  # the worker's own pass says when the store is unreachable
        except Exception:
            log.exception("fleet summary failed; retrying")
        try:
            await asyncio.wait_for(stop.wait(), CLAIM_EVERY_S)
        except TimeoutError:
            pass
