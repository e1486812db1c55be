"""Reads of live state (never writes): what consumers, the admin and the dashboard show."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

from dispatch import keys, store
from dispatch.store import as_int
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
    """A pool's dispatchable members, sorted: every one (tests, small pools; the admin shows
    :func:`pool_members_shown`)."""
    return sorted(store.decoded(store.sync_client().smembers(keys.pool(name))))


def pool_members_shown(name: str, limit: int = 20) -> tuple[int, list[str]]:
    """How many dispatchable members a pool has, and up to ``limit`` of them (whichever SSCAN
    meets first), sorted (sync: the admin). Bounded whatever the pool's size: SSCAN stops once
    it has enough."""
    client = store.sync_client()
    count = int(client.scard(keys.pool(name)))
    shown: set[str] = set()
    cursor = 0
    for _ in range(limit):  # SSCAN may answer few at a time; never more than `limit` calls
        cursor, batch = client.sscan(keys.pool(name), cursor, count=limit)
        shown |= store.decoded(set(batch))
        if cursor == 0 or len(shown) >= limit:
            break
    return count, sorted(shown)[:limit]


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


# --- Nodes as the dashboard shows them ------------------------------------------------------

HISTORY_WINDOW_S = 15 * 60  # the dashboard's charts
HISTORY_SAMPLE_S = 10  # one load sample per this many seconds (dispatch.history)
# as fleet_rows.lua returns them
NODE_FIELDS = (
    "status", "slots", "used", "caps", "pools", "load", "last_seen_ms", "jobs_done", "jobs_failed", "info",
    "eject_until", "eject_reason", "eject_code",
)


@dataclass(frozen=True)
class NodeLoad:
    """One node as the dashboard shows it (its record as stored, decoded)."""

    node_id: str
    status: str
    slots: int
    used: int
    caps: dict[str, list[str]]
    pools: tuple[str, ...]
    load: dict[str, Any]
    last_seen_ms: int
    jobs_done: int
    jobs_failed: int
    times_ms: list[int]  # its last processing times, newest first
    info: dict[str, Any] = field(default_factory=dict)
    eject_until_ms: int = 0  # ejected after failures until then (ms, Redis clock); past: not ejected
    eject_reason: str = ""  # "error" or "timeout", and the code of the failure that ejected it
    eject_code: str = ""

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.times_ms) if self.times_ms else None

    def ejected_for_ms(self, now_ms: int) -> int:
        """How long the node's ejection still lasts (0: not ejected)."""
        return max(0, self.eject_until_ms - now_ms)

    @property
    def free(self) -> int:
        """Slots a job could take now: none unless ready."""
        return max(0, self.slots - self.used) if self.status == "ready" else 0



def _json_or(raw: Any, default: Any) -> Any:
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return default


@lru_cache(maxsize=256)
def _pools_decoded(raw: str) -> tuple[str, ...]:
    """A node's pools as stored: alike nodes share the same text (about 270 names each), decoded once."""
    return tuple(_json_or(raw, []))


async def nodes_load(node_ids: list[str]) -> list[NodeLoad]:
    """These nodes' records (the rows a page shows), in the same order, in one round trip
    (``fleet_rows.lua``); a node whose record expired meanwhile is left out."""
    if not node_ids:
        return []
    nodes = []
    for node_id, values in zip(node_ids, await store.run("fleet_rows", *node_ids), strict=True):
        record = dict(zip(NODE_FIELDS, values[:-1], strict=True))
        if not record["status"]:
            continue
        nodes.append(
            NodeLoad(
                node_id=node_id,
                status=record["status"],
                slots=as_int(record["slots"]),
                used=as_int(record["used"]),
                caps=_json_or(record["caps"], {}),
                pools=_pools_decoded(record["pools"]),
                load=_json_or(record["load"], {}),
                last_seen_ms=as_int(record["last_seen_ms"]),
                jobs_done=as_int(record["jobs_done"]),
                jobs_failed=as_int(record["jobs_failed"]),
                times_ms=[as_int(t) for t in values[-1]],
                info=_json_or(record["info"], {}),
                eject_until_ms=as_int(record["eject_until"]),
                eject_reason=record["eject_reason"] or "",
                eject_code=record["eject_code"] or "",
            )
        )
    return nodes


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


async def pools_configured() -> PoolConfig | None:
    """The published pool configuration (admin pools), None before the first publish."""
    raw = await store.async_client().hget(keys.config(), "json")
    return PoolConfig.from_json(raw) if raw else None


async def session_job_ids(session_id: str) -> list[str]:
    """A session's jobs, oldest first, while their stories can still exist (every one: tests
    and short sessions; pages read :func:`session_jobs_page`)."""
    return cast(list[str], await store.async_client().zrange(keys.session_jobs(session_id), 0, -1))


async def session_jobs_page(session_id: str, *, offset: int, limit: int) -> tuple[int, list[str]]:
    """How many jobs a session's index holds, and ``limit`` of them from ``offset``, oldest first."""
    pipe = store.async_client().pipeline(transaction=False)
    pipe.zcard(keys.session_jobs(session_id))
    pipe.zrange(keys.session_jobs(session_id), offset, offset + limit - 1)
    count, job_ids = await pipe.execute()
    return int(count), cast(list[str], job_ids)


async def trace_session_ids(trace_id: str, limit: int = 20) -> list[str]:
    """The sessions a trace id named (a browser's trace id names one session), ``limit`` at most."""
    found: set[str] = set()
    cursor = 0
    for _ in range(limit):
        cursor, batch = await store.async_client().sscan(keys.trace(trace_id), cursor, count=limit)
        found |= set(cast(list[str], batch))
        if cursor == 0 or len(found) >= limit:
            break
    return sorted(found)[:limit]


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


PREVIEW_MEMBERS = 50  # members shown per pool of a pair preview; a bigger pool shows a random sample


@dataclass(frozen=True)
class PoolPreview:
    pool: str
    strategy: str
    members: list[CandidateNode]  # all of them, or a random sample of PREVIEW_MEMBERS
    size: int  # how many dispatchable members the pool has

    @property
    def sampled(self) -> bool:
        return self.size > len(self.members)

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
        size = int(client.scard(keys.pool(name)))
        if size <= PREVIEW_MEMBERS:
            members = sorted(store.decoded(client.smembers(keys.pool(name))))
        else:
            members = sorted(store.decoded(client.srandmember(keys.pool(name), PREVIEW_MEMBERS)))
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
                    free=max(0, as_int(slots) - as_int(used)),
                    blocked=as_int(blocked_until) > now,
                )
            )
        candidates.sort(key=lambda c: (not c.eligible, -c.free, c.node_id))
        previews.append(PoolPreview(pool=name, strategy=strategy, members=candidates, size=size))
    return previews


def is_auto_pool(name: str) -> bool:
    return name.startswith(AUTO_PREFIX)
