"""Rooms in live state: create, join, leave, raw voice preferences, WebRTC relays, activity and
expiry. A room and its members live in Redis only (one script per operation), so its members
may sit on any server process; every member hears of a change through its socket's channel.

Jobs of a room (one per language group) are placed and delivered by ``dispatch.room_jobs``.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from dispatch import outbox, store
from dispatch.outbox import json_text
from dispatch.protocol import (
    ROOM_CODE,
    ProtocolError,
    Relayed,
    RoomErrorCode,
    RoomRefused,
    relayed,
    room_expired,
    room_members,
)

log = logging.getLogger("dispatch.rooms")

ROOMS_PER_PASS = 100  # bounds one rooms_expired.lua call

REFUSALS = {
    "already": (RoomErrorCode.ALREADY_IN_ROOM, "You are already in a room; leave it first."),
    "not_found": (RoomErrorCode.ROOM_NOT_FOUND, "No room with that code is open, or you are not in it."),
    "full": (RoomErrorCode.ROOM_FULL, "This room is full."),
}


@dataclass(frozen=True)
class Member:
    """Who is asking, as a room stores it."""

    session_id: str
    channel: str
    lang: str  # its language: preferred_lang, else its session's tgt_lang
    display_name: str | None = None
    preferred_lang: str | None = None

    def entry(self) -> str:
        return json_text(
            {
                "session_id": self.session_id,
                "channel": self.channel,
                "lang": self.lang,
                "display_name": self.display_name,
                "preferred_lang": self.preferred_lang,
                "raw_voice_preferences": {},
            }
        )


@dataclass(frozen=True)
class Joined:
    room_code: str
    room_id: str
    members: dict[str, Any]  # the room_members frame


def check_code(room_code: str) -> None:
    if not ROOM_CODE.fullmatch(room_code):
        raise RoomRefused(RoomErrorCode.INVALID_ROOM_CODE, "A room code is 6 digits.")


def _refused(kind: str) -> Exception:
    """The refusal a script's answer stands for."""
    if kind == "no_session":
        return ProtocolError("Your session is no longer open; start a new one with session_init.")
    return RoomRefused(*REFUSALS[kind])


def entries_of(texts: list[str]) -> list[dict[str, Any]]:
    return [json.loads(text) for text in texts]


async def tell_members(room_code: str, entries: list[dict[str, Any]], *, skip: str = "") -> dict[str, Any]:
    """Send the room's member list to each member (``skip``: the requester, answered on its own
    socket); returns the frame."""
    frame = room_members(room_code, entries)
    text = json_text(frame)
    for entry in entries:
        if entry["session_id"] != skip:
            await outbox.send_room_frames(entry["channel"], entry["session_id"], [text])
    return frame


async def rooms_tell_left(told: list[list[str]]) -> None:
    """Members left rooms (a script's ``{code, remaining entries...}`` list): tell those left."""
    for code, *texts in told:
        await tell_members(code, entries_of(texts))


def new_room_code() -> str:
    """6 digits, the first not 0."""
    return str(100_000 + secrets.randbelow(900_000))


async def room_create(*, member: Member) -> Joined:
    room_id = str(uuid.uuid4())
    while True:
        room_code = new_room_code()
        reply = await store.run("room_create", room_code, room_id, member.session_id, member.entry())
        if reply[0] == "ok":
            break
        if reply[0] != "taken":
            raise _refused(reply[0])
    log.info("room created", extra={"session_id": member.session_id, "room": room_code})
    return Joined(room_code, room_id, room_members(room_code, entries_of(reply[1:])))


async def room_join(*, room_code: str, member: Member, on_joined: Callable[[Joined], Awaitable[None]]) -> None:
    """Join a room: ``on_joined`` answers the joiner, then the other members are told the new list."""
    check_code(room_code)
    reply = await store.run(
        "room_join", room_code, member.session_id, member.entry(), settings.SCHEDULER_ROOM_MAX_MEMBERS
    )
    if reply[0] != "ok":
        raise _refused(reply[0])
    entries = entries_of(reply[2:])
    await on_joined(Joined(room_code, reply[1], room_members(room_code, entries)))
    await tell_members(room_code, entries, skip=member.session_id)


async def room_leave(*, room_code: str, session_id: str) -> None:
    """Leave a room; the remaining members are told (the last one out deletes the room)."""
    check_code(room_code)
    reply = await store.run("room_leave", room_code, session_id)
    if reply[0] != "ok":
        raise _refused(reply[0])
    if reply[1]:
        await rooms_tell_left([reply[1]])


async def room_preference(*, room_code: str, session_id: str, target: str, receive: bool) -> dict[str, Any]:
    """Store whether a member wants another's raw voice; every member is told the new list
    (the sender through the returned frame)."""
    check_code(room_code)
    reply = await store.run("room_preference", room_code, session_id, target, "1" if receive else "0")
    if reply[0] != "ok":
        raise _refused(reply[0])
    return await tell_members(room_code, entries_of(reply[1:]), skip=session_id)


async def room_relay(*, frame: Relayed, sender: str) -> bool:
    """Pass a WebRTC signalling frame to the member it names, when both are members of the room
    and the receiver has not refused the sender's raw voice. Returns False when dropped."""
    if not ROOM_CODE.fullmatch(frame.room_code):
        return False
    channel = await store.run("room_relay", frame.room_code, sender, frame.to)
    if not channel:
        return False
    await outbox.send_room_frames(channel, frame.to, [json_text(relayed(frame, sender))])
    return True


async def room_touch(*, room_code: str, session_id: str) -> bool:
    """A member's audio counts as activity. Returns False when it is no longer a member."""
    return bool(await store.run("room_touch", room_code, session_id))


async def rooms_expire() -> int:
    """Worker: close the rooms idle for ``SCHEDULER_ROOM_IDLE_S``; their members are told
    ``room_expired``. Each room is claimed by the script that deletes it, so several worker
    copies expire it once. Returns how many members were told."""
    flat = await store.run("rooms_expired", int(settings.SCHEDULER_ROOM_IDLE_S * 1000), ROOMS_PER_PASS)
    for index in range(0, len(flat), 3):
        room_code, session_id, channel = flat[index : index + 3]
        text = json_text(room_expired(room_code))
        await outbox.send_room_frames(channel, session_id, [text], left_room=room_code)
    if flat:
        log.info("rooms expired", extra={"room": sorted(set(flat[0::3]))})
    return len(flat) // 3
