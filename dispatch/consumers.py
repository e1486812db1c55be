"""``/ws/session``: a browser's socket. It parses each frame and hands it to the socket's
``BrowserSession`` (what a session holds and decides), and relays the session's jobs' news."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from dispatch.access import OPEN, Access
from dispatch.browser_session import BrowserSession
from dispatch.protocol import CloseCode, ErrorCode, Ignored, decode_session_frame
from dispatch.ratelimit import RateLimiter
from dispatch.sockets import FrameConsumer

log = logging.getLogger("dispatch.sessions")


class SessionConsumer(FrameConsumer):
    async def connect(self) -> None:
        await self.accept()
        access: Access = self.scope.get("session_access") or OPEN
        self.session = BrowserSession(self, access)
        self.limiter = RateLimiter(settings.SCHEDULER_RATE_LIMIT_PER_S)
        if access.refusal is not None:  # refused after the handshake, like a node without a token
            await self.send_error(ErrorCode.INTERNAL_ERROR if access.store_down else ErrorCode.UNAUTHORIZED, access.refusal)
            await self.close(code=CloseCode.RECONNECT if access.store_down else CloseCode.UNAUTHORIZED)

    async def disconnect(self, code: int) -> None:
        await self.session.end()

    async def receive_frame(self, text: str) -> None:
        if self.session.access.refusal is not None:
            return  # closing
        frame = decode_session_frame(text)
        if isinstance(frame, Ignored):
            await self.frame_ignored(frame.type)
        else:
            await self.session.receive(frame)

    # --- this process, and the store ---

    def held_session(self) -> str | None:
        return self.session.session_id

    async def session_gone(self) -> None:
        log.warning("session closed by the store (lease ran out): reconnect", extra={"session_id": self.held_session()})
        await self.close(code=CloseCode.RECONNECT)

    async def session_refused(self) -> None:
        """Its ticket's key was revoked or its tenant disabled: its unfinished jobs are
        cancelled, and the browser is told why before the socket closes with 4401."""
        log.warning("session no longer allowed: key revoked or tenant disabled", extra={"session_id": self.held_session()})
        await self.session.end()
        await self.send_error(
            ErrorCode.UNAUTHORIZED, "Your access ticket's key was revoked or your tenant was disabled."
        )
        await self.close(code=CloseCode.UNAUTHORIZED)

    async def stopping(self) -> None:
        """The process is stopping (SIGTERM): end the session now (its unfinished jobs are
        cancelled, as for a closed socket) and tell the browser to reconnect elsewhere."""
        await self.session.end()
        await self.close(code=CloseCode.RECONNECT)

    async def store_lost(self) -> None:
        await self.session.store_lost()

    async def store_back(self) -> None:
        self.session.store_back()

    # --- messages from the dispatch services (channel layer) ---

    async def job_ended(self, message: dict[str, Any]) -> None:
        await self.session.job_ended(message["job_id"], message["frames"])

    async def job_event(self, message: dict[str, Any]) -> None:
        await self.session.job_event(message["job_id"], message["frames"])

    async def room_frames(self, message: dict[str, Any]) -> None:
        await self.session.room.told(
            message["session_id"], self.session.session_id, message["frames"], message.get("left_room")
        )
