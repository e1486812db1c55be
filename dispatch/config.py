"""Pool configuration → live state: publishing the database's pools and re-pooling nodes."""

from __future__ import annotations

import json
import logging
import secrets

from channels.db import database_sync_to_async

from dispatch import keys, store
from dispatch.outbox import json_text
from pools.config import load_config
from pools.rules import NodeCaps, PoolConfig, node_pools, routes, tenant_pools

log = logging.getLogger("dispatch")

STALE_RETRIES = 20  # a node's capabilities changed under a re-pool: compute again


def pools_publish() -> PoolConfig:
    """Publish the database's pool configuration and re-pool every live node.

    Memberships are recomputed here and applied node by node with a check of the node's
    capability version, so a heartbeat that lands in between is never undone."""
    config = load_config()
    route_args: list[str] = []
    for need, route in routes(config).items():
        route_args += [need, json_text([list(entry) for entry in route])]
    store.run_sync(
        "config_publish",
        config.version,
        config.to_json(),
        "1" if config.auto else "0",
        json_text(dict(config.slot_overrides)),
        secrets.token_hex(8),
        *route_args,
    )
    client = store.sync_client()
    for node_id in sorted(store.decoded(client.smembers(keys.nodes()))):
        _node_repool_sync(node_id, config)
    log.info("pool configuration published", extra={"pool": config.version})
    return config


def _node_repool_sync(node_id: str, config: PoolConfig) -> None:
    client = store.sync_client()
    for _ in range(STALE_RETRIES):
        caps_raw, capver, tenant = store.decoded(client.hmget(keys.node(node_id), "caps", "capver", "tenant"))
        if caps_raw is None:
            return
        pools = pools_json(config, NodeCaps.from_json(json.loads(caps_raw)), tenant or "")
        outcome = store.run_sync("node_pools", node_id, capver, config.version, pools, "")
        if outcome != "stale":
            return


def pools_ensure_published() -> None:
    """On process start: publish when Redis lacks the database's current configuration."""
    current = store.decoded(store.sync_client().hget(keys.config(), "version"))
    if current != load_config().version:
        pools_publish()


# A published configuration never changes under its version (a digest of its content), so a
# process parses it once, and computes a set of capabilities' pools under it once: a fleet's nodes
# mostly declare the same few sets, and a storm registers thousands of them at once. Plain dicts,
# touched without an await in between; a new version empties them.
_parsed: dict[str, PoolConfig] = {}
_memberships: dict[tuple[str, NodeCaps, str], str] = {}
MEMBERSHIPS_KEPT = 1024


async def config_current() -> PoolConfig:
    """The published configuration (published first when the store has none): one small read,
    and the configuration itself only when its version is new to this process."""
    client = store.async_client()
    version = store.decoded(await client.hget(keys.config(), "version"))
    config = _parsed.get(version) if version is not None else None
    if config is not None:
        return config
    raw = await client.hget(keys.config(), "json")
    if raw is None:
        return await database_sync_to_async(pools_publish)()
    config = PoolConfig.from_json(raw)
    if config.version != version:
        return config  # published anew between the two reads: use it, remember the next one
    _parsed.clear()
    _memberships.clear()
    _parsed[config.version] = config
    return config


async def config_known() -> PoolConfig:
    """The configuration this process parsed last, without asking the store; the published one
    when there is none. For callers whose script is handed its version and answers ``stale``
    when it is not the published one (then: :func:`config_current`)."""
    return next(iter(_parsed.values()), None) or await config_current()


def pools_json(config: PoolConfig, caps: NodeCaps, tenant: str) -> str:
    """The pool sets a node of these capabilities and tenant belongs to, as a script takes them."""
    key = (config.version, caps, tenant)
    found = _memberships.get(key)
    if found is None:
        found = json_text(tenant_pools(node_pools(config, caps), tenant))
        if len(_memberships) >= MEMBERSHIPS_KEPT:
            _memberships.clear()
        _memberships[key] = found
    return found
