"""What one browser session holds and decides, with no socket: its spec, its audio cutter, its
queue of utterances, its jobs in flight and their recovery deadlines.

``SessionConsumer`` owns one ``BrowserSession`` and hands it each decoded frame and each message
about its jobs; the session answers through the small ``Socket`` interface. Everything shared
(live state, other sockets) goes through the dispatch services: ``sessions`` and ``jobs``; its
side of rooms is its ``RoomMember`` (``dispatch/room_member.py``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import logging
from collections.abc import Coroutine
from typing import Any

import msgspec
import redis
from django.conf import settings

from dispatch import history, protocol, selectors
from dispatch.access import OPEN, REFUSALS, Access
from dispatch.cutter import CutReason, Cutter, audio_duration_ms
from dispatch.endings import ERROR_SENTENCES
from dispatch.jobs import Cut, Dispatched, NoAvailableNode, QuotaExceeded, job_recover, job_submit
from dispatch.outbox import now_ms
from dispatch.protocol import (
    ROOM_FRAMES,
    AudioChunk,
    ClientHeartbeat,
    ErrorCode,
    ProtocolError,
    SessionClose,
    SessionFrame,
    SessionInit,
    Utterance,
)
from dispatch.room_member import RoomMember
from dispatch.sessions import (
    SessionRefused,
    SessionSpec,
    new_trace_id,
    session_close,
    session_need,
    session_open,
    session_spec,
)
from dispatch.sockets import Socket
from pools.rules import need_pairs

log = logging.getLogger("dispatch.sessions")

DEFAULT_PIPELINE = {"use_asr": True, "use_nmt": True, "use_tts": True, "use_semantic": False, "use_tone": False}
# The indexes a session has used are remembered to refuse repeats; this bounds that memory.
MAX_UTTERANCES_PER_SESSION = 100_000
STORE_BACK_SWEEPS_S = (2.0, 3.0)  # after an outage: look endings up 2 s, then 5 s later


class BrowserSession:
    def __init__(self, socket: Socket, access: Access = OPEN) -> None:
        self.socket = socket
        self.access = access  # its tenant and what its ticket allows
        self.spec: SessionSpec | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.pause_timer: asyncio.TimerHandle | None = None
        self.deadlines: dict[str, asyncio.TimerHandle] = {}  # job id → lost-ending recovery
        self.room = RoomMember(socket)
        self._forget()

    def _forget(self) -> None:
        """Back to no session: nothing buffered, queued or in flight."""
        self.source: str | None = None  # "audio_chunk" or "utterance", whichever came first
        self.cutter = Cutter(max_ms=settings.SCHEDULER_MAX_UTTERANCE_MS)
        self.next_index = 0
        self.used_indexes: set[int] = set()
        self.inflight: set[int] = set()  # utterance indexes submitted and not ended
        self.jobs: dict[str, Cut] = {}  # job id → its utterance, once dispatched
        self.waiting: collections.deque[Cut] = collections.deque()

    @property
    def session_id(self) -> str | None:
        return self.spec.session_id if self.spec is not None else None

    def start_task(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Work that must not hold up the socket's next frame; cancelled when the session ends."""
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- frames from the browser ---

    async def receive(self, frame: SessionFrame) -> None:
        if isinstance(frame, SessionInit):
            await self.init(frame)
            return
        spec = self.check(getattr(frame, "session_id", None))
        if isinstance(frame, ROOM_FRAMES):
            await self.room.receive(spec, frame)
            return
        if isinstance(frame, AudioChunk | Utterance):
            await self.room.heard(spec)
        if isinstance(frame, AudioChunk):
            await self.audio_chunk(spec, frame)
        elif isinstance(frame, Utterance):
            await self.utterance(frame)
        elif isinstance(frame, ClientHeartbeat):
            await self.socket.send_frame(protocol.server_heartbeat(spec.session_id, now_ms()))
        elif isinstance(frame, SessionClose):
            await self.end()
            await self.socket.send_frame(protocol.session_close_ack(spec.session_id))

    def check(self, session_id: str | None) -> SessionSpec:
        """The socket's session (a frame with no ``session_id``, a room frame, is the session's)."""
        if self.spec is None:
            raise ProtocolError("Start a session with session_init first.")
        if session_id is not None and session_id != self.spec.session_id:
            raise ProtocolError(
                f"This socket's session is {self.spec.session_id}, not {session_id}.", ErrorCode.INVALID_SESSION
            )
        return self.spec

    async def init(self, frame: SessionInit) -> None:
        need, mode = session_need(frame)
        if not all(self.access.allows(s, t) for s, t in need_pairs(need)):
            raise ProtocolError(
                f"Your access ticket does not allow {need.replace('>', ' → ').replace('~', ' ↔ ')}.",
                ErrorCode.UNSUPPORTED_LANGUAGE_PAIR,
            )
        if not await selectors.need_covered(need, self.access.tenant):
            raise ProtocolError(
                f"No pool serves {need.replace('>', ' → ').replace('~', ' ↔ ')} right now.",
                ErrorCode.UNSUPPORTED_LANGUAGE_PAIR,
            )
        if self.spec is not None:
            old = self.spec.session_id
            await self.end()
            await self.socket.send_frame(protocol.session_close_ack(old))
        trace_id = frame.trace_id or new_trace_id()
        channel = self.socket.channel_name
        try:
            session_id = await session_open(
                trace_id=trace_id, channel=channel, tenant=self.access.tenant, key_id=self.access.key_id,
                sub=self.access.sub, need=need,
            )
        except SessionRefused as refused:
            code, sentence, close_code = REFUSALS[refused.reason]
            raise ProtocolError(sentence, code, close_code) from None
        self.spec = session_spec(
            frame, session_id=session_id, trace_id=trace_id, channel=channel, need=need, mode=mode,
            tenant=self.access.tenant, sub=self.access.sub,
        )
        log.info("session opened", extra={"session_id": session_id, "trace_id": trace_id})
        await self.socket.send_frame(protocol.session_init_ack(session_id, trace_id))

    async def end(self) -> None:
        """Forget the session: its buffer, its waiting utterances, its unfinished jobs (they
        are cancelled on their nodes)."""
        if self.pause_timer is not None:
            self.pause_timer.cancel()
            self.pause_timer = None
        for task in self.tasks:
            task.cancel()
        for handle in self.deadlines.values():
            handle.cancel()
        self.deadlines.clear()
        spec, self.spec = self.spec, None
        self._forget()
        self.room.forget()
        if spec is not None:
            try:
                await session_close(session_id=spec.session_id)
            except redis.RedisError:
                log.warning("session not closed in the store: unreachable", extra={"session_id": spec.session_id})

    # --- audio in ---

    def use_source(self, source: str) -> None:
        if self.source not in (None, source):
            raise ProtocolError(f"This session sends {self.source} frames; it cannot mix in {source}.")
        self.source = source

    async def audio_chunk(self, spec: SessionSpec, frame: AudioChunk) -> None:
        self.use_source("audio_chunk")
        try:
            payload = base64.b64decode(frame.payload or "", validate=True)
            cut = self.cutter.add(payload, final=frame.is_final)
        except (binascii.Error, ValueError) as error:
            raise ProtocolError(f"The audio_chunk payload is not Opus in length-prefixed framing ({error}); dropped.") from None
        self.restart_pause_timer()
        if cut is not None:
            await self.submit_cut(cut.audio, cut.reason, cut.turn_id, cut.duration_ms)

    def restart_pause_timer(self) -> None:
        if self.pause_timer is not None:
            self.pause_timer.cancel()
        self.pause_timer = asyncio.get_running_loop().call_later(
            settings.SCHEDULER_PAUSE_MS / 1000, lambda: self.start_task(self.on_pause())
        )

    async def on_pause(self) -> None:
        self.pause_timer = None
        cut = self.cutter.cut(CutReason.PAUSE)
        if cut is not None and self.spec is not None:
            await self.submit_cut(cut.audio, cut.reason, cut.turn_id, cut.duration_ms)

    async def submit_cut(self, audio: bytes, reason: CutReason, turn_id: str, duration_ms: int = 0) -> None:
        index = self.next_index
        self.next_index += 1
        await self.enqueue(
            Cut(
                utterance_index=index,
                audio_b64=base64.b64encode(audio).decode(),
                audio_format="opus",
                sample_rate=16000,
                pipeline=DEFAULT_PIPELINE,
                turn_id=turn_id,
                manual=reason is CutReason.MANUAL,
                timeout=reason is CutReason.PAUSE,
                max_duration=reason is CutReason.MAX_DURATION,
                cut_ms=now_ms(),
                audio_ms=duration_ms,
            )
        )

    async def utterance(self, frame: Utterance) -> None:
        self.use_source("utterance")
        if len(self.used_indexes) >= MAX_UTTERANCES_PER_SESSION:
            raise ProtocolError(
                f"A session takes at most {MAX_UTTERANCES_PER_SESSION} utterances; start a new session."
            )
        if frame.utterance_index < 0 or frame.utterance_index in self.used_indexes:
            raise ProtocolError(f"utterance_index {frame.utterance_index} was already used (or is negative).")
        try:
            audio = base64.b64decode(frame.audio, validate=True)
        except binascii.Error:
            raise ProtocolError("The utterance audio is not valid base64; dropped.") from None
        self.used_indexes.add(frame.utterance_index)
        pipeline = dict(DEFAULT_PIPELINE)
        if frame.pipeline is not None:
            pipeline |= {k: v for k, v in msgspec.structs.asdict(frame.pipeline).items() if v is not None}
        await self.enqueue(
            Cut(
                utterance_index=frame.utterance_index,
                audio_b64=frame.audio,
                audio_format=frame.audio_format,
                sample_rate=frame.sample_rate,
                pipeline=pipeline,
                turn_id=new_trace_id(),
                manual=True,
                timeout=False,
                max_duration=False,
                cut_ms=now_ms(),
                audio_ms=audio_duration_ms(audio, frame.audio_format, frame.sample_rate),
            )
        )

    # --- jobs ---

    async def enqueue(self, cut: Cut) -> None:
        """At most SCHEDULER_SESSION_MAX_INFLIGHT jobs; as many more wait in order; beyond that
        the utterance is dropped with RATE_LIMITED."""
        limit = settings.SCHEDULER_SESSION_MAX_INFLIGHT
        if len(self.inflight) < limit:
            self.place(cut)
        elif len(self.waiting) < limit:
            self.waiting.append(cut)
        else:
            await self.socket.send_error(
                ErrorCode.RATE_LIMITED,
                "Too many utterances are waiting for translation; this one was dropped.",
                utterance_index=cut.utterance_index,
                trace_id=self.spec.trace_id if self.spec else None,
            )

    def place(self, cut: Cut) -> None:
        self.inflight.add(cut.utterance_index)
        if self.spec is not None:
            self.start_task(self.dispatch_cut(self.spec, cut))

    async def dispatch_cut(self, spec: SessionSpec, cut: Cut) -> None:
        async def dispatched(job: Dispatched) -> None:
            self.jobs[job.job_id] = cut
            self.deadlines[job.job_id] = asyncio.get_running_loop().call_later(
                history.job_deadline_s(), lambda: self.start_task(self.recover(job.job_id))
            )
            if job.node_id:  # a room job waiting for a node is not dispatched yet
                await self.socket.send_frame(self.event(spec, cut, job.job_id, "DISPATCHED"))

        try:
            if not await self.room.submit(spec, cut, dispatched):
                await job_submit(spec=spec, cut=cut, on_dispatched=dispatched)
        except NoAvailableNode as error:
            await self.send_job_error(spec, cut, error.job_id, ErrorCode.NO_AVAILABLE_NODE)
            self.job_done(cut.utterance_index)
        except QuotaExceeded:
            await self.socket.send_error(
                ErrorCode.QUOTA_EXCEEDED,
                "Your tenant has used its audio minutes for today (UTC); this utterance was not translated.",
                trace_id=spec.trace_id,
                utterance_index=cut.utterance_index,
            )
            self.job_done(cut.utterance_index)
        except Exception as error:
            unreachable = isinstance(error, redis.ConnectionError | redis.TimeoutError)
            if unreachable:
                log.warning("job not placed: store unreachable", extra={"session_id": spec.session_id})
            else:
                log.exception("job not placed: internal error", extra={"session_id": spec.session_id})
            await self.socket.send_frame(
                protocol.error_frame(
                    ErrorCode.INTERNAL_ERROR,
                    "The scheduler's store is unreachable, so this utterance was not translated."
                    if unreachable
                    else "The scheduler hit an internal error, so this utterance was not translated.",
                    trace_id=spec.trace_id,
                    utterance_index=cut.utterance_index,
                )
            )
            self.job_done(cut.utterance_index)

    def event(self, spec: SessionSpec, cut: Cut, job_id: str, event: str, **extra: Any) -> dict[str, Any]:
        return protocol.ui_event(
            trace_id=spec.trace_id,
            session_id=spec.session_id,
            job_id=job_id,
            utterance_index=cut.utterance_index,
            event=event,
            elapsed_ms=max(0, now_ms() - cut.cut_ms),
            **extra,
        )

    async def send_job_error(
        self, spec: SessionSpec, cut: Cut, job_id: str, code: ErrorCode, message: str | None = None
    ) -> None:
        """A job's ending as an error: ``ui_event ERROR``, then the ``error`` frame."""
        frames = [
            self.event(spec, cut, job_id, "ERROR", status="error", error_code=code),
            protocol.error_frame(
                code,
                message or ERROR_SENTENCES[code],
                trace_id=spec.trace_id,
                utterance_index=cut.utterance_index,
                job_id=job_id,
            ),
        ]
        await self.deliver(spec, job_id, [protocol.encode(frame).decode() for frame in frames])

    async def deliver(self, spec: SessionSpec, job_id: str, texts: list[str]) -> None:
        """A job's ending frames, to this browser; a room job's to its language group (this
        browser, its speaker, gets the ui_events)."""
        if not await self.room.deliver(spec.session_id, job_id, texts):
            for text in texts:
                await self.socket.send_text(text)

    def job_done(self, index: int) -> None:
        if any(cut.utterance_index == index for cut in self.jobs.values()):
            return  # a room utterance is done when its last job is
        self.inflight.discard(index)
        while self.waiting and len(self.inflight) < settings.SCHEDULER_SESSION_MAX_INFLIGHT:
            self.place(self.waiting.popleft())

    def take_job(self, job_id: str) -> Cut | None:
        """Forget a job as it ends (None if it already ended here)."""
        handle = self.deadlines.pop(job_id, None)
        if handle is not None:
            handle.cancel()
        return self.jobs.pop(job_id, None)

    async def end_job_with_error(self, job_id: str, code: ErrorCode, message: str | None = None) -> None:
        cut = self.take_job(job_id)
        if cut is None or self.spec is None:
            return
        await self.send_job_error(self.spec, cut, job_id, code, message)
        self.job_done(cut.utterance_index)

    # --- news of its jobs (from the dispatch services, over the channel layer) ---

    async def job_ended(self, job_id: str, frames: list[str]) -> None:
        cut = self.take_job(job_id)
        if cut is None or self.spec is None:
            return  # a job of a session this socket has closed, or already recovered
        await self.deliver(self.spec, job_id, frames)
        self.job_done(cut.utterance_index)

    async def job_event(self, job_id: str, frames: list[str]) -> None:
        if job_id in self.jobs:
            for text in self.room.event_texts(job_id, frames):
                await self.socket.send_text(text)

    async def recover(self, job_id: str) -> None:
        """No ending reached us by the longest a job can last: it was lost on the channel
        layer, or the job is stuck. Read it from the job's story, or end the job now."""
        if job_id not in self.jobs or self.spec is None:
            return
        frames = await job_recover(job_id=job_id)
        log.warning("job ending recovered", extra={"job_id": job_id, "session_id": self.spec.session_id})
        if not frames:  # not even its story is left
            await self.end_job_with_error(job_id, ErrorCode.JOB_TIMEOUT)
            return
        cut = self.take_job(job_id)
        if cut is None or self.spec is None:
            return  # the ending arrived while we looked
        await self.deliver(self.spec, job_id, [protocol.encode(frame).decode() for frame in frames])
        self.job_done(cut.utterance_index)

    # --- the store ---

    async def store_lost(self) -> None:
        """Redis came back empty: the jobs this session is waiting for are gone with it, and
        the session is recorded again under its id."""
        spec = self.spec
        if spec is None:
            return
        for job_id in list(self.jobs):
            await self.end_job_with_error(
                job_id,
                ErrorCode.INTERNAL_ERROR,
                "The scheduler lost track of this utterance (its store was reset); please say it again.",
            )
        try:
            await session_open(
                session_id=spec.session_id, trace_id=spec.trace_id, channel=spec.channel, tenant=spec.tenant,
                key_id=self.access.key_id, sub=spec.sub, need=spec.need,
            )
        except SessionRefused as refused:  # its next lease renewal ends the socket
            log.warning("session not recorded again: %s", refused.reason, extra={"session_id": spec.session_id})

    def store_back(self) -> None:
        """After an outage, endings published while our subscription was down are lost: once
        the channel layer has subscribed again, take the endings of our jobs from their
        stories (jobs still running are left alone)."""
        self.start_task(self.sweep_endings())

    async def sweep_endings(self) -> None:
        for delay in STORE_BACK_SWEEPS_S:
            await asyncio.sleep(delay)
            for job_id in list(self.jobs):
                story = await selectors.job_story(job_id)
                if story and story.get("ending") and job_id in self.jobs:
                    await self.recover(job_id)
