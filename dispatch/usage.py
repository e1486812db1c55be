"""Usage per tenant and UTC day: counted in Redis by the scripts (``keys.usage``), rolled into
the database by the worker every ``ROLLUP_EVERY_S`` as absolute values (an upsert: a restart,
or a second worker copy, counts nothing twice)."""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict

from channels.db import database_sync_to_async

from dispatch import keys, store
from tenants.usage import USAGE_FIELDS, keys_last_used, usage_store

log = logging.getLogger("dispatch.worker")

ROLLUP_EVERY_S = 5
DAY_MS = 86_400_000
KEEP_DAYS_S = 3 * 86_400  # the live counters outlive their day long enough to be rolled up


def usage_rows(day: int, fields: dict[str, str]) -> dict[tuple[str, datetime.date], dict[str, int]]:
    """One day's live counters (``<tenant>:<counter>`` → n) as rows per tenant."""
    date = datetime.date(1970, 1, 1) + datetime.timedelta(days=day)
    rows: dict[tuple[str, datetime.date], dict[str, int]] = defaultdict(dict)
    for field, value in fields.items():
        tenant, _, counter = field.rpartition(":")
        if tenant and counter in USAGE_FIELDS:
            rows[(tenant, date)][counter] = int(value)
    return dict(rows)


def _record(rows: dict[tuple[str, datetime.date], dict[str, int]], used: dict[str, int]) -> int:
    keys_last_used(used)
    return usage_store(rows)


async def usage_rollup(*, claim: bool = True) -> int:
    """Write today's and yesterday's counters (UTC, Redis clock) to the database; returns the
    rows written. With ``claim`` only one worker copy does it per ``ROLLUP_EVERY_S`` slot."""
    client = store.async_client()
    seconds, _ = await client.time()
    if claim and not await client.set(
        keys.usage_rollup(int(seconds) // ROLLUP_EVERY_S), "", nx=True, ex=ROLLUP_EVERY_S * 2
    ):
        return 0
    today = int(seconds) * 1000 // DAY_MS
    pipe = client.pipeline(transaction=False)
    for day in (today - 1, today):
        pipe.hgetall(keys.usage(day))
        pipe.expire(keys.usage(day), KEEP_DAYS_S)
    pipe.hgetall(keys.tenant_keys_used())
    yesterday, _, current, _, used = await pipe.execute()
    rows = usage_rows(today - 1, yesterday) | usage_rows(today, current)
    return int(await database_sync_to_async(_record)(rows, {key: int(ms) for key, ms in used.items()}))
