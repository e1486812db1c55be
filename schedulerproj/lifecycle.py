"""What a server process does for all of its sockets at once, beside serving them.

- ``sockets_notify``: tell every open socket that the process is stopping, or that Redis came
  back empty or after an outage.
- ``store_watch`` (once a second): notice those Redis events.
- ``sessions_keep_alive`` (every heartbeat interval): renew the leases of this process's sessions.

``schedulerproj.server`` starts the two loops and calls ``sockets_notify("stopping")`` on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging

import redis
from channels.db import database_sync_to_async
from django.conf import settings

from dispatch import keys, store
from dispatch.config import pools_publish
from dispatch.sessions import sessions_renew
from dispatch.sockets import FrameConsumer, live_sockets
from dispatch.tenants import tenants_publish

log = logging.getLogger("dispatch.sockets")

STORE_WATCH_S = 1.0


async def sockets_notify(event: str) -> None:
    """Tell every open socket of this process: ``stopping`` (SIGTERM), ``store_lost`` or
    ``store_back``. ``stopping`` goes round twice: ``stopping`` (node sockets leave their pools
    and close, sessions end), then ``stopped`` (the jobs those nodes held move on, so they
    never chase a node of this process that is about to leave as well)."""
    consumers = list(live_sockets)
    for name in (event, "stopped") if event == "stopping" else (event,):
        # All at once: ten thousand node sockets leaving one after another would outlast the stop.
        await asyncio.gather(*(_tell(consumer, name) for consumer in consumers))


async def _tell(consumer: FrameConsumer, name: str) -> None:
    try:
        await getattr(consumer, name)()
    except Exception:
        log.exception("socket could not handle %s", name)


async def sessions_keep_alive() -> None:
    """Renew the leases of this process's open sessions every heartbeat interval, so the
    sessions of a process that dies without closing them stop counting. A session the store
    closed meanwhile (its lease ran out while this process could not reach Redis, and its jobs
    were cancelled) ends its socket: the browser opens a new one. A session whose ticket's key
    was revoked or whose tenant was disabled ends too (4401), its jobs cancelled."""
    was_down = False
    while True:
        await asyncio.sleep(settings.SCHEDULER_HEARTBEAT_INTERVAL_S)
        holders = {session_id: c for c in list(live_sockets) if (session_id := c.held_session())}
        try:
            gone, refused = await sessions_renew(list(holders))
            for session_id in gone:
                consumer = holders[session_id]
                if consumer.held_session() == session_id:  # not since closed or opened anew
                    await consumer.session_gone()
            for session_id in refused:  # its ticket's key was revoked, or its tenant disabled
                consumer = holders[session_id]
                if consumer.held_session() == session_id:
                    await consumer.session_refused()
            was_down = False
        except (redis.ConnectionError, redis.TimeoutError):
            if not was_down:
                log.warning("store unreachable: session leases not renewed")
            was_down = True
        except Exception:
            log.exception("session leases not renewed")


async def store_watch() -> None:
    """Once a second:

    - Redis came back empty (the epoch written with the configuration is missing or new):
      republish the pools, close this process's node sockets with 1012 so nodes register
      again, and end its sessions' unfinished jobs (``store_lost``).
    - Redis was unreachable, or restarted with its data (a new run id): frames sent on the
      pub/sub layer meanwhile may be lost, so sessions look their jobs' endings up
      (``store_back``)."""
    seen_epoch: bytes | str | None = None
    seen_run: str | None = None
    was_down = False
    while True:
        await asyncio.sleep(STORE_WATCH_S)
        client = store.async_client()
        try:
            run_id = (await client.info("server"))["run_id"]
            epoch = await client.hget(keys.config(), "epoch")
            if epoch is None:
                log.warning("store came back empty: republishing the pool configuration")
                await database_sync_to_async(pools_publish)()
                await database_sync_to_async(tenants_publish)()
                epoch = await client.hget(keys.config(), "epoch")
        except (redis.ConnectionError, redis.TimeoutError):
            if not was_down:
                log.warning("store unreachable")
            was_down = True
            continue
        except Exception:
            log.exception("store watch failed")
            continue
        if seen_epoch is not None and epoch != seen_epoch:
            log.warning("live state was lost: nodes must register again, unfinished jobs end")
            await sockets_notify("store_lost")
        elif was_down or (seen_run is not None and run_id != seen_run):
            log.warning("store reachable again: sessions look up endings they may have missed")
            await sockets_notify("store_back")
        seen_epoch, seen_run, was_down = epoch, run_id, False
