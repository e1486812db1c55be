"""Tenant configuration → live state: publishing the tenants and their live keys, and reading
them back (a tenant's record, a key) for the session socket and the selectors."""

from __future__ import annotations

import json
import logging
from typing import Any

from dispatch import keys, store
from dispatch.outbox import json_text
from tenants.config import TenantsConfig, load_tenants

log = logging.getLogger("dispatch")


def tenants_publish() -> TenantsConfig:
    """Publish every tenant and every live key in one script call. Sessions of a revoked key or
    a disabled tenant are told at their next lease renewal (``sessions_alive.lua``)."""
    config = load_tenants()
    args: list[str] = [config.version, str(len(config.tenants))]
    for name, record in sorted(config.tenants.items()):
        args += [name, json_text(record)]
    for key_id, record in sorted(config.keys.items()):
        args += [key_id, json_text(record)]
    store.run_sync("tenants_publish", *args)
    log.info("tenants published", extra={"code": config.version})
    return config


def tenants_ensure_published() -> None:
    """On process start: publish when Redis lacks the database's current tenants."""
    current = store.decoded(store.sync_client().hget(keys.config(), "tenants_version"))
    if current != load_tenants().version:
        tenants_publish()


async def tenant_published(name: str) -> dict[str, Any] | None:
    """A tenant's published record (None when there is none)."""
    raw = await store.async_client().hget(keys.tenants(), name)
    return json.loads(raw) if raw else None


async def key_published(key_id: str) -> dict[str, str] | None:
    """A live key's published record, ``{tenant, secret}`` (the secret sealed); None when the
    key is unknown or revoked."""
    raw = await store.async_client().hget(keys.tenant_keys(), key_id)
    return json.loads(raw) if raw else None
