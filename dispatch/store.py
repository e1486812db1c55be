"""Redis clients for live state and the Lua scripts that are its only writers.

Async code (consumers, the worker) uses one ``redis.asyncio`` client per event loop; sync code
(admin, management commands) uses django-redis's connection. Every script is ``scripts/NAME.lua``
with ``scripts/_lib.lua`` prepended, called by name through :func:`run` or :func:`run_sync`.

The async client's pool holds at most ``REDIS_MAX_CONNECTIONS`` connections and a call beyond
them waits for one (up to ``REDIS_POOL_TIMEOUT_S``) instead of failing. Calls that come by the
thousand at once (nodes going offline when every socket closes) share script calls instead
(dispatch/batches.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from functools import cache
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis
from django.conf import settings
from redis.exceptions import NoScriptError

from dispatch import keys

SCRIPTS_DIR = Path(__file__).parent / "scripts"
CLIENT_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "health_check_interval": 10,
    "decode_responses": True,
}

Reply = Any


@cache
def script_source(name: str) -> str:
    lib = (SCRIPTS_DIR / "_lib.lua").read_text()
    return lib + "\n" + (SCRIPTS_DIR / f"{name}.lua").read_text()


_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aredis.Redis] = (
    weakref.WeakKeyDictionary()
)


class BlockingSentinelConnectionPool(aredis.sentinel.SentinelConnectionPool, aredis.BlockingConnectionPool):
    """Sentinel's pool (it asks the sentinels where the primary is) with the blocking pool's
    bounded size and wait."""


def async_client() -> aredis.Redis:
    """The current event loop's client (created on first use). Its pool holds at most
    ``REDIS_MAX_CONNECTIONS``; a call finding them all busy waits for one (up to
    ``REDIS_POOL_TIMEOUT_S``) instead of failing at once with redis-py's ``MaxConnectionsError``
    (its default pool's limit is 100)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        pool_options: dict[str, Any] = {
            "max_connections": settings.REDIS_MAX_CONNECTIONS, "timeout": settings.REDIS_POOL_TIMEOUT_S,
        }
        if settings.REDIS_SENTINELS:
            options = CLIENT_OPTIONS | ({"password": settings.REDIS_PASSWORD} if settings.REDIS_PASSWORD else {})
            sentinel = aredis.sentinel.Sentinel(
                settings.REDIS_SENTINELS, sentinel_kwargs=settings.REDIS_SENTINEL_KWARGS, **options
            )
            client = sentinel.master_for(
                settings.REDIS_SENTINEL_MASTER, connection_pool_class=BlockingSentinelConnectionPool,
                **options, **pool_options,
            )
        else:
            pool = aredis.BlockingConnectionPool.from_url(settings.REDIS_URL, **CLIENT_OPTIONS, **pool_options)
            client = aredis.Redis.from_pool(pool)
        _async_clients[loop] = client
    return client


def sync_client() -> redis.Redis:
    from django_redis import get_redis_connection

    return get_redis_connection("default")


@cache
def script_sha(name: str) -> str:
    return hashlib.sha1(script_source(name).encode()).hexdigest()


async def run(name: str, *args: Any) -> Reply:
    """Call script ``name`` with ARGV = (prefix, *args): one round trip (EVALSHA). A server
    that does not know the script yet (new, or restarted) is sent it once."""
    client = async_client()
    try:
        return await client.evalsha(script_sha(name), 0, keys.prefix(), *args)
    except NoScriptError:
        await client.script_load(script_source(name))
        return await client.evalsha(script_sha(name), 0, keys.prefix(), *args)


def run_sync(name: str, *args: Any) -> Reply:
    client = sync_client()
    try:
        return decoded(client.evalsha(script_sha(name), 0, keys.prefix(), *args))
    except NoScriptError:
        client.script_load(script_source(name))
        return decoded(client.evalsha(script_sha(name), 0, keys.prefix(), *args))


def decoded(reply: Any) -> Any:
    """django-redis's client answers bytes; ours answers text: make sync replies text too."""
    if isinstance(reply, bytes):
        return reply.decode()
    if isinstance(reply, list):
        return [decoded(item) for item in reply]
    if isinstance(reply, set | frozenset):  # SMEMBERS
        return {decoded(item) for item in reply}
    if isinstance(reply, dict):
        return {decoded(key): decoded(value) for key, value in reply.items()}
    return reply


def as_int(raw: Any) -> int:
    """A Redis reply as a whole number; 0 when absent or not a number."""
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0
