"""The one way a message leaves for a socket: ``channel_layer.send`` to that socket's channel.

Only the dispatch services call these (one layer sends events, as in Zulip), so every state
change and the message that tells a socket about it are found together.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from dispatch import protocol


def now_ms() -> int:
    return int(time.time() * 1000)


def lease_ms() -> int:
    """A node's or a session's lease: three heartbeat intervals."""
    return int(3 * settings.SCHEDULER_HEARTBEAT_INTERVAL_S * 1000)


def json_text(value: Any) -> str:
    return msgspec.json.encode(value).decode()


async def send(channel: str, message: dict[str, Any]) -> None:
    if channel:
        await get_channel_layer().send(channel, message)


def send_sync(channel: str, message: dict[str, Any]) -> None:
    if channel:
        async_to_sync(get_channel_layer().send)(channel, message)


async def send_job_frames(channel: str, job_id: str, frames: list[dict[str, Any]], *, ended: bool) -> None:
    """Frames of one job for its browser session; ``ended`` when the job's ending is among them."""
    await send(
        channel,
        {"type": "job.ended" if ended else "job.event", "job_id": job_id, "frames": [json_text(f) for f in frames]},
    )


async def send_room_frames(channel: str, session_id: str, texts: list[str], *, left_room: str | None = None) -> None:
    """Frames for a room member's browser, passed on only while that socket still holds
    ``session_id``; ``left_room`` when they tell it that it is no longer in that room."""
    await send(channel, {"type": "room.frames", "session_id": session_id, "frames": texts, "left_room": left_room})


async def send_cancel(channel: str, job_id: str, reason: str, trace_id: str | None) -> None:
    """Tell the node holding a job that it is no longer wanted."""
    await send(channel, {"type": "job.cancel", "text": json_text(protocol.job_cancel(job_id, reason, trace_id))})


async def send_node_control(channel: str, command: str, reason: str | None = None) -> None:
    await send(channel, {"type": "node.control", "text": json_text(protocol.node_control(command, reason))})


async def tell_drained(channel: str) -> None:
    """A draining node's last job ended (the scripts name its channel when that happens)."""
    if channel:
        await send_node_control(channel, "drained")
