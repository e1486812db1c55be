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
        pools = tenant_pools(node_pools(config, NodeCaps.from_json(json.loads(caps_raw))), tenant or "")
        outcome = store.run_sync("node_pools", node_id, capver, config.version, json_text(pools), "")
        if outcome != "stale":
            return


def pools_ensure_published() -> None:
    """On process start: publish when Redis lacks the database's current configuration."""
    current = store.decoded(store.sync_client().hget(keys.config(), "version"))
    if current != load_config().version:
        pools_publish()


async def config_current() -> PoolConfig:
    """The published configuration (published first when the store has none)."""
    raw = await store.async_client().hget(keys.config(), "json")
    if raw is None:
        return await database_sync_to_async(pools_publish)()
    return PoolConfig.from_json(raw)
