"""Reads of live state (never writes): what consumers, the admin and the dashboard show."""

from __future__ import annotations

import json
from typing import Any

from dispatch import keys, store


async def route_of(need: str, auto_pool: str) -> list[list[str]]:
    """The pools a need's jobs walk, in order, each as [pool, strategy]."""
    client = store.async_client()
    raw, auto = await client.hmget(keys.routes(), need), await client.hget(keys.config(), "auto")
    route: list[list[str]] = json.loads(raw[0]) if raw[0] else []
    if auto == "1":
        route.append([auto_pool, "random"])
    return route


async def job_routing(job_id: str) -> dict[str, str] | None:
    """Where a job in flight is and whom it answers to (no audio)."""
    fields = ("node", "schan", "session", "utt", "trace", "cut_ms")
    values = await store.async_client().hmget(keys.job(job_id), *fields)
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


async def need_covered(need: str) -> bool:
    """Whether a session with this need may start: automatic pools are on, or an enabled
    admin pool covers it."""
    client = store.async_client()
    auto, covered = await client.hget(keys.config(), "auto"), await client.hexists(keys.routes(), need)
    return auto == "1" or bool(covered)


async def job_story(job_id: str) -> dict[str, str] | None:
    """A job's story (no audio): route, attempts, events, ending."""
    story = await store.async_client().hgetall(keys.story(job_id))
    return story or None
