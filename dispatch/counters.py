"""Counters of frames refused or ignored: observations for ``/metrics``, not state."""

from __future__ import annotations

import logging

import redis

from dispatch import keys, store
from dispatch.protocol import ErrorCode

log = logging.getLogger("dispatch")

IGNORED_FAMILIES = ("room_", "webrtc_")


async def count(field: str) -> None:
    try:
        await store.async_client().hincrby(keys.metrics(), field, 1)
    except redis.RedisError:
        log.debug("counter not written: store unreachable", extra={"code": field})


async def frame_rejected(*, code: ErrorCode) -> None:
    await count(f"rejected:{code}")


async def frame_ignored(*, frame_type: str) -> None:
    """Count a frame the protocol lets pass unused; client-made type names are folded into
    their family (``room_*``) so a client cannot grow the label set."""
    for family in IGNORED_FAMILIES:
        if frame_type.startswith(family):
            frame_type = family + "*"
    await count(f"ignored:{frame_type}")
