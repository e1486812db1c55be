"""The scheduler worker's loop. Each pass claims due work atomically in Redis, so any number
of copies can run side by side; a liveness key says one is running."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time

import redis

from dispatch import fleet_summary, store
from dispatch.jobs import jobs_handle_due
from dispatch.nodes import nodes_expire_leases, tokens_enforce_revoked
from dispatch.rooms import rooms_expire
from dispatch.sessions import sessions_expire
from dispatch.usage import usage_rollup

log = logging.getLogger("dispatch.worker")

TICK_S = 0.25
REVOKE_CHECK_EVERY_S = 2  # look again at recently revoked tokens' nodes (ticks in that second)
ALIVE_TTL_S = 5


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def worker_tick() -> None:
    """One pass: say we are alive, expire the leases of silent nodes and of sessions whose
    process died, close idle rooms, move timed-out jobs on, and roll the tenants' usage into the
    database when its time has come. (The fleet summary runs beside it,
    ``fleet_summary.summary_loop``, and forgets the ids of nodes whose record expired.)"""
    await store.run("worker_alive", worker_name(), ALIVE_TTL_S)
    await nodes_expire_leases()
    await sessions_expire()
    await rooms_expire()
    second = int(time.monotonic())
    if second % REVOKE_CHECK_EVERY_S == 0:
        await tokens_enforce_revoked()
    while await jobs_handle_due() == 100:
        pass
    await usage_rollup()


async def worker_run() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("worker started")
    summary = asyncio.ensure_future(fleet_summary.summary_loop(stop, worker_name()))
    store_down = False
    while not stop.is_set():
        try:
            await worker_tick()
            if store_down:
                log.warning("store reachable again")
            store_down = False
        except (redis.ConnectionError, redis.TimeoutError):
            if not store_down:
                log.warning("store unreachable; retrying every tick")
            store_down = True
        except Exception:
            log.exception("worker pass failed; retrying")
        try:
            await asyncio.wait_for(stop.wait(), TICK_S)
        except TimeoutError:
            pass
    await summary
    log.info("worker stopped")
