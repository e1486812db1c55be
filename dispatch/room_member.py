"""A browser session's side of rooms, with no socket: its room frames, the room it is in, the
jobs it placed for that room and where their endings go.

The room code kept here is a cache of the session's own membership: Redis stays the truth.
Every script checks membership itself, and a script that finds the session out of the room
(it expired while its ``room_expired`` was lost, say) clears the cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
import redis
from django.conf import settings

from dispatch import protocol
from dispatch.jobs import Cut, Dispatched, job_submit
from dispatch.protocol import (
    Relayed,
    RoomCreate,
    RoomFrame,
    RoomJoin,
    RoomLeave,
    RoomRawVoicePreference,
    RoomRefused,
)
from dispatch.room_jobs import RoomJob, room_deliver, room_plan, room_submit
from dispatch.rooms import (
    Joined,
    Member,
    room_create,
    room_join,
    room_leave,
    room_preference,
    room_relay,
    room_touch,
)
from dispatch.sessions import SessionSpec

log = logging.getLogger("dispatch.rooms")

OnDispatched = Callable[[Dispatched], Awaitable[None]]


class Browser(Protocol):
    async def send_frame(self, frame: dict[str, Any]) -> None: ...

    async def send_text(self, text: str) -> None: ...


def is_ui_event(frame: dict[str, Any]) -> bool:
    return frame.get("type") == "ui_event"


class RoomMember:
    def __init__(self, socket: Browser) -> None:
        self.socket = socket
        self.forget()

    def forget(self) -> None:
        """The session ended (its membership went with it, in the same script)."""
        self.code: str | None = None
        self.jobs: dict[str, RoomJob] = {}  # job id → its room and group, until it ends
        self.transcribed: set[int] = set()  # utterances whose transcript went out
        self.touched = 0.0  # when this socket last told the room its audio is activity

    def left(self, room_code: str) -> None:
        if self.code == room_code:
            self.code = None

    # --- room frames from the browser ---

    async def receive(self, spec: SessionSpec, frame: RoomFrame) -> None:
        try:
            if isinstance(frame, RoomCreate | RoomJoin):
                member = Member(
                    session_id=spec.session_id,
                    channel=spec.channel,
                    lang=frame.preferred_lang or spec.tgt_lang,
                    display_name=frame.display_name,
                    preferred_lang=frame.preferred_lang,
                )
                if isinstance(frame, RoomCreate):
                    await self.entered(await room_create(member=member))
                else:
                    await room_join(room_code=frame.room_code, member=member, on_joined=self.entered)
            elif isinstance(frame, RoomLeave):
                await room_leave(room_code=frame.room_code, session_id=spec.session_id)
                self.left(frame.room_code)
            elif isinstance(frame, RoomRawVoicePreference):
                members = await room_preference(
                    room_code=frame.room_code,
                    session_id=spec.session_id,
                    target=frame.target_session_id,
                    receive=frame.receive_raw_voice,
                )
                await self.socket.send_frame(members)
            else:
                await self.relay(spec, frame)
        except RoomRefused as refused:
            await self.socket.send_frame(protocol.room_error(refused.code, refused.message))

    async def entered(self, joined: Joined) -> None:
        self.code = joined.room_code
        # the existing web client enters a room on room_create_ack, so a joiner gets it too
        await self.socket.send_frame(protocol.room_create_ack(joined.room_code, joined.room_id))
        await self.socket.send_frame(joined.members)

    async def relay(self, spec: SessionSpec, frame: Relayed) -> None:
        if not await room_relay(frame=frame, sender=spec.session_id):
            log.debug("relay dropped", extra={"session_id": spec.session_id, "room": frame.room_code})

    async def heard(self, spec: SessionSpec) -> None:
        """Audio from this member: the room is active (told at most every tenth of the idle time)."""
        if self.code is None or time.monotonic() - self.touched < min(30.0, settings.SCHEDULER_ROOM_IDLE_S / 10):
            return
        self.touched = time.monotonic()
        code = self.code
        try:
            if not await room_touch(room_code=code, session_id=spec.session_id):
                self.left(code)
        except redis.RedisError:
            log.warning("room activity not recorded: store unreachable", extra={"room": code})

    # --- frames for this member, from the others' sockets and the worker ---

    async def told(self, session_id: str | None, current: str | None, texts: list[str], left_room: str | None) -> None:
        if session_id != current:
            return  # meant for a session this socket no longer holds
        if left_room is not None:
            self.left(left_room)
        for text in texts:
            await self.socket.send_text(text)

    # --- this member's utterances ---

    async def submit(self, spec: SessionSpec, cut: Cut, dispatched: OnDispatched) -> bool:
        """Place a cut of this member's audio for its room: one job per language group, or, when
        no other member needs a translation but some speak its language, its own job (whose
        transcript they get). False when it is an ordinary job (not in a room, or alone)."""
        code = self.code
        if code is None:
            return False
        plan = await room_plan(room_code=code, spec=spec)
        if plan is None:
            self.left(code)
            return False
        source = plan.source if plan.transcript else ""

        async def placed(job: Dispatched, group: str = "") -> None:
            self.jobs[job.job_id] = RoomJob(code, group, source, cut.utterance_index)
            await dispatched(job)

        if not plan.groups:
            if not plan.transcript:
                return False
            await job_submit(spec=spec, cut=cut, on_dispatched=placed)
            return True
        if await room_submit(spec=spec, cut=cut, room_code=code, groups=plan.groups, on_dispatched=placed):
            return True
        self.left(code)
        return False

    def event_texts(self, job_id: str, texts: list[str]) -> list[str]:
        """Of a running job's news, what its speaker gets: a room job's ui_events only."""
        job = self.jobs.get(job_id)
        if job is None or not job.group:
            return texts
        return [text for text in texts if is_ui_event(msgspec.json.decode(text))]

    async def deliver(self, speaker: str, job_id: str, texts: list[str]) -> bool:
        """A room job ended: its ui_events to the speaker, its ending to its group, and the
        utterance's first result as a transcript to the speaker's language. False when the
        speaker takes the frames itself (not a room job, or its own job)."""
        job = self.jobs.pop(job_id, None)
        if job is None:
            return False
        frames = [msgspec.json.decode(text) for text in texts]
        result = next((f for f in frames if f.get("type") == "translation_result"), None)
        transcript = None
        if result is not None and job.source and job.utterance_index not in self.transcribed:
            self.transcribed.add(job.utterance_index)
            transcript = protocol.transcript(result)
        if not any(other.utterance_index == job.utterance_index for other in self.jobs.values()):
            self.transcribed.discard(job.utterance_index)
        try:
            if job.group:
                for text, frame in zip(texts, frames, strict=True):
                    if is_ui_event(frame):
                        await self.socket.send_text(text)
                ending = [text for text, frame in zip(texts, frames, strict=True) if not is_ui_event(frame)]
                await room_deliver(job=job, speaker=speaker, texts=ending, transcript=transcript)
            elif transcript is not None:
                await room_deliver(job=job, speaker=speaker, texts=[], transcript=transcript)
        except redis.RedisError:
            log.warning("room job ending not delivered: store unreachable", extra={"job_id": job_id})
        return bool(job.group)
