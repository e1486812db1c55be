"""What both WebSocket consumers share: frame size limit, error frames, and no thread hop.

Handlers of these consumers never touch the ORM after connect, so the per-message
``close_old_connections`` that channels runs in a worker thread is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Protocol

import redis
from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from dispatch import counters, protocol
from dispatch.protocol import CloseCode, ErrorCode, ProtocolError
from dispatch.ratelimit import RateLimiter

log = logging.getLogger("dispatch.sockets")


# This process's open sockets, so the process can act on all of them when it stops or when
# Redis comes back empty (schedulerproj.lifecycle). Not state any decision reads.
live_sockets: weakref.WeakSet[FrameConsumer] = weakref.WeakSet()


class FrameConsumer(AsyncWebsocketConsumer):
    limiter: RateLimiter | None = None  # set on connect by sockets whose frames are rate limited

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        live_sockets.add(self)
        self.tasks: set[asyncio.Task[None]] = set()
        await super().websocket_connect(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """channels' own, less its thread hop to close stale database connections (handlers
        here never use the ORM after connect, and no group is used): ten thousand sockets closing
        at once queued on that one thread for seconds."""
        live_sockets.discard(self)
        for task in self.tasks:
            task.cancel()
        await self.disconnect(message["code"])
        raise StopConsumer()

    def start_task(self, coroutine: Any) -> None:
        """Run work that must not hold up this socket's next frame; cancelled on disconnect."""
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def held_session(self) -> str | None:
        """The browser session this socket holds open, if any (its lease is renewed)."""
        return None

    async def session_gone(self) -> None:
        """The store closed the session this socket holds (its lease ran out)."""

    async def session_refused(self) -> None:
        """The session this socket holds is no longer allowed (key revoked, tenant disabled)."""

    async def stopping(self) -> None:
        """The process is stopping (SIGTERM): reconnect elsewhere."""
        await self.close(code=CloseCode.RECONNECT)

    async def stopped(self) -> None:
        """Every socket of this stopping process has had ``stopping``."""

    async def store_lost(self) -> None:
        """Redis came back empty: live state of this socket is gone."""

    async def store_back(self) -> None:
        """Redis is reachable again after an outage or a restart with its data."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        # every frame costs a token, binary ones too (they would get an error each otherwise)
        if self.limiter is not None and not self.limiter.take():
            if self.limiter.flooding:
                await self.close(code=CloseCode.POLICY)
            elif self.limiter.should_warn():
                await self.send_error(ErrorCode.RATE_LIMITED, "You are sending too fast; frames are being dropped.")
            return
        text = message.get("text")
        if text is None:
            await self.send_error(ErrorCode.INVALID_MESSAGE, "Binary frames are not used: send JSON text.")
            return
        limit = settings.SCHEDULER_MAX_FRAME_BYTES
        if len(text) > limit // 4 and len(text.encode()) > limit:
            await self.close(code=CloseCode.TOO_BIG)
            return
        try:
            await self.receive_frame(text)
        except ProtocolError as error:
            await self.send_error(error.code, error.message)
            if error.close_code is not None:
                await self.close(code=error.close_code)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log.warning("store unreachable while handling a frame: %s", error)
            await self.send_error(
                ErrorCode.INTERNAL_ERROR, "The scheduler's store is unreachable; please retry shortly."
            )
        except Exception:  # a bug must not cost the client its socket, nor show it a traceback
            log.exception("internal error while handling a frame")
            await self.send_error(
                ErrorCode.INTERNAL_ERROR, "The scheduler hit an internal error with that message."
            )

    async def receive_frame(self, text: str) -> None:
        raise NotImplementedError

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        """A frame for a socket that is already closing has nowhere to go. daphne raises then,
        which would end the consumer before its disconnect handler runs (a node's jobs would
        wait for its lease): drop the frame instead."""
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except Disconnected:
            log.debug("frame dropped: the socket is closing")

    async def send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=protocol.encode(frame).decode())

    async def send_error(self, code: ErrorCode, message: str, **fields: Any) -> None:
        await counters.frame_rejected(code=code)
        await self.send_frame(protocol.error_frame(code, message, **fields))

    async def frame_ignored(self, frame_type: str) -> None:
        await counters.frame_ignored(frame_type=frame_type)


class Socket(Protocol):
    """Where a session's frames go: its browser's socket."""

    channel_name: str

    async def send_frame(self, frame: dict[str, Any]) -> None: ...

    async def send_text(self, text: str) -> None: ...

    async def send_error(self, code: ErrorCode, message: str, **fields: Any) -> None: ...
