"""Reads of live state (never writes): what consumers, the admin and the dashboard show."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any, cast

from dispatch import keys, store
from pools.rules import AUTO_PREFIX, AUTO_STRATEGY, PoolConfig, auto_pool_name, tenant_need
from tenants.models import PUBLIC


async def route_of(need: str, auto_pool: str, tenant: str = "") -> list[list[str]]:
    """The pools a need's jobs walk, in order, each as [pool, strategy] (the tenant's own route
    when pools restricted to it give it one)."""
    client = store.async_client()
    raw, auto = await client.hmget(keys.routes(), tenant_need(tenant, need), need), await client.hget(keys.config(), "auto")
    found = raw[0] or raw[1]
    route: list[list[str]] = json.loads(found) if found else []
    if auto == "1":
        route.append([auto_pool, "random"])
    return route


async def job_routing(job_id: str) -> dict[str, str] | None:
    """Where a job in flight is and whom it answers to (no audio)."""
    fields = ("node", "schan", "session", "utt", "trace", "cut_ms")
    values = cast(list[str], await store.async_client().hmget(keys.job(job_id), *fields))
    if values[0] is None:
        return None
    return dict(zip(fields, values, strict=True))


def node_record(node_id: str) -> dict[str, str]:
    """One node's live record as stored (sync: admin, commands, tests)."""
    return store.decoded(store.sync_client().hgetall(keys.node(node_id)))


def pool_members(name: str) -> list[str]:
    """A pool's dispatchable members, sorted."""
    return sorted(store.decoded(store.sync_client().smembers(keys.pool(name))))


def node_ids() -> list[str]:
    return sorted(store.decoded(store.sync_client().smembers(keys.nodes())))


def nodes_by_pool() -> dict[str, list[str]]:
    """Every node's pools (as computed from its capabilities), keyed by pool."""
    client = store.sync_client()
    found: dict[str, list[str]] = {}
    for node_id in node_ids():
        record: Any = store.decoded(client.hmget(keys.node(node_id), "pools", "status"))
        if record[0] is None:
            continue
        for name in json.loads(record[0]):
            found.setdefault(name, []).append(node_id)
    return found


async def need_covered(need: str, tenant: str = "") -> bool:
    """Whether a session with this need may start: automatic pools are on, or an enabled
    admin pool covers it (one restricted to the session's tenant included)."""
    client = store.async_client()
    auto = await client.hget(keys.config(), "auto")
    covered = await client.hmget(keys.routes(), need, tenant_need(tenant, need))
    return auto == "1" or any(covered)


async def job_story(job_id: str) -> dict[str, str] | None:
    """A job's story (no audio): route, attempts, events, ending."""
    story = cast(dict[str, str], await store.async_client().hgetall(keys.story(job_id)))
    return story or None


# --- The fleet: the dashboard, /metrics and the admin's pair preview --------------------------

HISTORY_WINDOW_S = 15 * 60  # the dashboard's charts
HISTORY_SAMPLE_S = 10  # one load sample per this many seconds (dispatch.history)
NODE_FIELDS = ("status", "slots", "used", "caps", "pools", "load", "last_seen_ms", "jobs_done", "jobs_failed", "info")


@dataclass(frozen=True)
class NodeLoad:
    """One node as the dashboard shows it (its record as stored, decoded)."""

    node_id: str
    status: str
    slots: int
    used: int
    caps: dict[str, list[str]]
    pools: list[str]
    load: dict[str, Any]
    last_seen_ms: int
    jobs_done: int
    jobs_failed: int
    times_ms: list[int]  # its last processing times, newest first
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.times_ms) if self.times_ms else None


@dataclass(frozen=True)
class Fleet:
    """Every node's record and the fleet-wide counters, read at ``now_ms`` (Redis clock)."""

    now_ms: int
    nodes: list[NodeLoad]
    counters: dict[str, int]
    workers_alive: int
    sessions: int
    jobs_in_flight: int

    @property
    def connected(self) -> list[NodeLoad]:
        """The nodes with a socket (every status but offline)."""
        return [node for node in self.nodes if node.status != "offline"]

    @property
    def slots_used(self) -> int:
        return sum(node.used for node in self.connected)

    @property
    def slots_total(self) -> int:
        return sum(node.slots for node in self.connected)

    def by_status(self, statuses: tuple[str, ...]) -> dict[str, int]:
        """How many nodes have each status (these first, even at 0)."""
        counts = {status: 0 for status in statuses}
        for node in self.nodes:
            counts[node.status] = counts.get(node.status, 0) + 1
        return counts

    def mean_load(self, field: str) -> float | None:
        """The mean of a reported ``resource_usage`` number over connected nodes that sent it."""
        values = [
            float(value)
            for value in (node.load.get(field) for node in self.connected)
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        return round(sum(values) / len(values), 1) if values else None


def _int(raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


def _json_or(raw: Any, default: Any) -> Any:
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return default


async def fleet_snapshot() -> Fleet:
    """Read the whole fleet in two pipelined round trips (the dashboard does this once a
    second, /metrics once a scrape; never on the dispatch path)."""
    client = store.async_client()
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.smembers(keys.nodes())
    pipe.hgetall(keys.metrics())
    pipe.zrange(keys.workers(), 0, -1, withscores=True)
    pipe.zcard(keys.sessions())
    pipe.zcard(keys.deadlines())
    (seconds, micros), ids, counters, workers, sessions, in_flight = await pipe.execute()
    now = int(seconds) * 1000 + int(micros) // 1000
    node_ids = sorted(ids)
    pipe = client.pipeline(transaction=False)
    for node_id in node_ids:
        pipe.hmget(keys.node(node_id), *NODE_FIELDS)
        pipe.lrange(keys.node_times(node_id), 0, -1)
    replies = await pipe.execute() if node_ids else []
    nodes = []
    for index, node_id in enumerate(node_ids):
        values, times = replies[2 * index], replies[2 * index + 1]
        record = dict(zip(NODE_FIELDS, values, strict=True))
        if record["status"] is None:
            continue  # its record expired (offline for more than 15 minutes)
        nodes.append(
            NodeLoad(
                node_id=node_id,
                status=record["status"],
                slots=_int(record["slots"]),
                used=_int(record["used"]),
                caps=_json_or(record["caps"], {}),
                pools=_json_or(record["pools"], []),
                load=_json_or(record["load"], {}),
                last_seen_ms=_int(record["last_seen_ms"]),
                jobs_done=_int(record["jobs_done"]),
                jobs_failed=_int(record["jobs_failed"]),
                times_ms=[_int(t) for t in times],
                info=_json_or(record["info"], {}),
            )
        )
    return Fleet(
        now_ms=now,
        nodes=nodes,
        counters={name: _int(value) for name, value in counters.items()},
        workers_alive=sum(1 for _, until in workers if until > now),
        sessions=int(sessions),
        jobs_in_flight=int(in_flight),
    )


async def tenant_sessions() -> dict[str, int]:
    """Open sessions per tenant (every published tenant, and ``public``), read at the Redis
    clock: entries whose lease ran out no longer count."""
    client = store.async_client()
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.hkeys(keys.tenants())
    (seconds, micros), names = await pipe.execute()
    now = int(seconds) * 1000 + int(micros) // 1000
    tenants = sorted(set(names) | {PUBLIC})
    pipe = client.pipeline(transaction=False)
    for name in tenants:
        pipe.zcount(keys.tenant_sessions(name), now, "+inf")
    return {name: int(count) for name, count in zip(tenants, await pipe.execute(), strict=True)}


@dataclass(frozen=True)
class PoolActivity:
    """Jobs placed in a pool over the history window, and its recent dispatch latencies."""

    placed_by_minute: dict[int, int]  # minute since the epoch → jobs placed
    latencies_ms: list[int]  # the last 100 dispatch latencies, newest first

    @property
    def placed(self) -> int:
        return sum(self.placed_by_minute.values())

    def percentile_ms(self, q: float) -> int | None:
        """Nearest-rank percentile of the recent latencies (q in 0..100)."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        rank = max(1, -(-len(ordered) * q // 100))
        return ordered[int(rank) - 1]


async def pools_activity(now_ms: int) -> tuple[dict[int, int], dict[str, PoolActivity]]:
    """Jobs placed per minute over the history window (fleet-wide, by minute) and, for each
    pool that placed a job in it, its activity."""
    client = store.async_client()
    last = now_ms // 60000
    minutes = list(range(last - HISTORY_WINDOW_S // 60, last + 1))
    pipe = client.pipeline(transaction=False)
    for number in minutes:
        pipe.hgetall(keys.minute(number))
    per_minute = dict(zip(minutes, await pipe.execute(), strict=True))
    totals = {number: _int(fields.get("placed")) for number, fields in per_minute.items()}
    by_pool: dict[str, dict[int, int]] = {}
    for number, fields in per_minute.items():
        for name, count in fields.items():
            if name.startswith("placed:"):
                by_pool.setdefault(name.removeprefix("placed:"), {})[number] = _int(count)
    pools = sorted(by_pool)
    pipe = client.pipeline(transaction=False)
    for name in pools:
        pipe.lrange(keys.dispatch_latency(name), 0, -1)
    latencies = await pipe.execute() if pools else []
    return totals, {
        name: PoolActivity(placed_by_minute=by_pool[name], latencies_ms=[_int(v) for v in values])
        for name, values in zip(pools, latencies, strict=True)
    }


async def load_history(now_ms: int) -> list[dict[str, Any]]:
    """The worker's load samples over the history window, oldest first."""
    last = now_ms // 1000 // HISTORY_SAMPLE_S * HISTORY_SAMPLE_S
    seconds = range(last - HISTORY_WINDOW_S, last + 1, HISTORY_SAMPLE_S)
    raw = await store.async_client().mget([keys.load_sample(second) for second in seconds])
    return [json.loads(item) for item in raw if item]


async def pools_configured() -> PoolConfig | None:
    """The published pool configuration (admin pools), None before the first publish."""
    raw = await store.async_client().hget(keys.config(), "json")
    return PoolConfig.from_json(raw) if raw else None


async def session_job_ids(session_id: str) -> list[str]:
    """A session's jobs, oldest first, while their stories can still exist."""
    return cast(list[str], await store.async_client().zrange(keys.session_jobs(session_id), 0, -1))


async def trace_session_ids(trace_id: str) -> list[str]:
    """The sessions a trace id named (a browser's trace id names one session)."""
    return sorted(cast(set[str], await store.async_client().smembers(keys.trace(trace_id))))


async def job_stories(job_ids: list[str]) -> list[dict[str, str]]:
    """The stories of these jobs that still exist, in the same order (one round trip)."""
    if not job_ids:
        return []
    pipe = store.async_client().pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hgetall(keys.story(job_id))
    return [story for story in await pipe.execute() if story]


@dataclass(frozen=True)
class CandidateNode:
    node_id: str
    status: str
    free: int
    blocked: bool

    @property
    def eligible(self) -> bool:
        return self.status == "ready" and not self.blocked and self.free > 0


@dataclass(frozen=True)
class PoolPreview:
    pool: str
    strategy: str
    members: list[CandidateNode]

    @property
    def eligible(self) -> list[CandidateNode]:
        return [member for member in self.members if member.eligible]


def pair_preview(need: str, tenant: str = "") -> list[PoolPreview]:
    """Who would serve a need now for a tenant's session: its route's pools in order (the
    tenant's own route when it has one, and before each pool the set of the tenant's own
    nodes when it has members), each with its members and their free slots (sync: the admin)."""
    client = store.sync_client()
    raw_route = store.decoded(client.hmget(keys.routes(), tenant_need(tenant, need), need))
    auto = store.decoded(client.hget(keys.config(), "auto"))
    found = raw_route[0] or raw_route[1]
    shared: list[list[str]] = json.loads(found) if found else []
    if auto == "1":
        shared.append([auto_pool_name(need), AUTO_STRATEGY])
    route: list[list[str]] = []
    for name, strategy in shared:
        if tenant and client.exists(keys.pool(f"{name}@{tenant}")):
            route.append([f"{name}@{tenant}", strategy])
        route.append([name, strategy])
    seconds, micros = client.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    previews = []
    for name, strategy in route:
        members = sorted(store.decoded(client.smembers(keys.pool(name))))
        pipe = client.pipeline(transaction=False)
        for node_id in members:
            pipe.hmget(keys.node(node_id), "status", "slots", "used", f"block:{name}")
        candidates = []
        for node_id, values in zip(members, pipe.execute() if members else [], strict=True):
            status, slots, used, blocked_until = store.decoded(values)
            candidates.append(
                CandidateNode(
                    node_id=node_id,
                    status=status or "gone",
                    free=max(0, _int(slots) - _int(used)),
                    blocked=_int(blocked_until) > now,
                )
            )
        candidates.sort(key=lambda c: (not c.eligible, -c.free, c.node_id))
        previews.append(PoolPreview(pool=name, strategy=strategy, members=candidates))
    return previews


def is_auto_pool(name: str) -> bool:
    return name.startswith(AUTO_PREFIX)
