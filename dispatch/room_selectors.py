"""Reads of rooms in live state (never writes): a room's members for its jobs, open rooms for
the dashboard, a room code's jobs for the job lookup."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, cast

from dispatch import keys, store

ROOMS_SHOWN = 50  # the dashboard lists the most recently active rooms


async def room_member_entries(room_code: str) -> list[dict[str, Any]]:
    """A room's members as stored (none when the room is gone)."""
    texts = cast(list[str], await store.async_client().hvals(keys.room_members(room_code)))
    return [json.loads(text) for text in texts]


@dataclass(frozen=True)
class OpenRoom:
    code: str
    members: int
    languages: list[str]  # the members' languages, sorted
    jobs_last_minute: int
    idle_s: float


async def rooms_open(now_ms: int, limit: int = ROOMS_SHOWN) -> tuple[int, list[OpenRoom]]:
    """How many rooms are open, and the ``limit`` most recently active ones (two round trips,
    whatever the number of rooms)."""
    client = store.async_client()
    pipe = client.pipeline(transaction=False)
    pipe.zcard(keys.rooms())
    pipe.zrevrange(keys.rooms(), 0, limit - 1, withscores=True)
    count, recent = await pipe.execute()
    pipe = client.pipeline(transaction=False)
    for code, _ in recent:
        pipe.hvals(keys.room_members(code))
        pipe.zcount(keys.room_jobs(code), now_ms - 60_000, "+inf")
    replies = await pipe.execute() if recent else []
    rooms = []
    for index, (code, active_ms) in enumerate(recent):
        entries = [json.loads(text) for text in replies[2 * index]]
        rooms.append(
            OpenRoom(
                code=code,
                members=len(entries),
                languages=sorted({entry["lang"] for entry in entries}),
                jobs_last_minute=int(replies[2 * index + 1]),
                idle_s=round(max(0, now_ms - active_ms) / 1000, 1),
            )
        )
    return int(count), rooms


async def room_jobs_page(room_code: str, *, offset: int, limit: int) -> tuple[int, list[str]]:
    """How many jobs were placed for a room code (while their stories can still exist), and one
    page of their ids, oldest first."""
    client = store.async_client()
    count = await client.zcard(keys.room_jobs(room_code))
    return count, cast(list[str], await client.zrange(keys.room_jobs(room_code), offset, offset + limit - 1))


async def rooms_snapshot(now_ms: int) -> dict[str, Any]:
    """Open rooms as the dashboard shows them (the most recently active first)."""
    count, rooms = await rooms_open(now_ms)
    return {"count": count, "shown": [dataclasses.asdict(room) for room in rooms]}
