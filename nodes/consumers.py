"""``/ws/node``: a GPU node's socket. Parses each frame, calls one dispatch service, replies."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis
from django.conf import settings

from dispatch.jobs import job_finish, job_partial, job_progress
from dispatch.nodes import (
    NodeTaken,
    ResumeTooSoon,
    node_drain,
    node_heartbeat,
    node_jobs_move_on,
    node_offline,
    node_register,
)
from dispatch.protocol import (
    CloseCode,
    ErrorCode,
    Ignored,
    JobAck,
    JobResult,
    JobStarted,
    NodeAsrPartial,
    NodeBounds,
    NodeControl,
    NodeError,
    NodeHeartbeat,
    NodeRegister,
    ProtocolError,
    decode_node_frame,
    node_register_ack,
)
from dispatch.ratelimit import RateLimiter
from dispatch.sockets import FrameConsumer

log = logging.getLogger("nodes")

RESULT_RETRIES, RESULT_RETRY_S = 120, 0.5  # a minute to get a result through a store outage

HEARTBEAT_CLOSE = {
    "replaced": CloseCode.TAKEN_OVER,
    "offline": CloseCode.RECONNECT,
    "revoked": CloseCode.UNAUTHORIZED,
}


class NodeConsumer(FrameConsumer):
    node_id: str | None = None
    left = False  # taken offline already (the process is stopping)

    async def connect(self) -> None:
        await self.accept()
        self.limiter = RateLimiter(settings.SCHEDULER_NODE_RATE_LIMIT_PER_S)
        self.bounds = NodeBounds(
            languages=settings.SCHEDULER_NODE_MAX_LANGUAGES,
            services=settings.SCHEDULER_NODE_MAX_SERVICES,
            slots=settings.SCHEDULER_NODE_MAX_SLOTS,
        )
        self.token_id: str | None = self.scope.get("node_token_id")
        self.tenant: str = self.scope.get("node_tenant") or ""
        if not self.token_id:
            await self.close(code=CloseCode.UNAUTHORIZED)

    async def stopping(self) -> None:
        """Reconnect elsewhere: this process is going away. The node leaves its pools before
        its socket closes, so no new job is sent to it; its jobs move on in ``stopped``."""
        self.held: list[str] = []
        if self.node_id is not None:
            try:
                self.held = await node_offline(
                    node_id=self.node_id, channel=self.channel_name, move_jobs=False
                )
                self.left = True
            except redis.RedisError:
                log.warning("node not taken offline: store unreachable", extra={"node_id": self.node_id})
        await self.close(code=CloseCode.RECONNECT)

    async def stopped(self) -> None:
        """Every node of this process has left its pools: the jobs this one held move on."""
        if self.node_id is not None and getattr(self, "held", None):
            await node_jobs_move_on(node_id=self.node_id, job_ids=self.held)

    async def store_lost(self) -> None:
        """Register again: the node's live record is gone with the store."""
        self.node_id = None
        await self.close(code=CloseCode.RECONNECT)

    async def disconnect(self, code: int) -> None:
        if self.node_id is not None and not self.left:
            await node_offline(node_id=self.node_id, channel=self.channel_name)

    async def receive_frame(self, text: str) -> None:
        if not self.token_id:
            return
        frame = decode_node_frame(text, self.bounds)
        if isinstance(frame, Ignored):
            await self.frame_ignored(frame.type)
            return
        if isinstance(frame, NodeRegister):
            await self.register(frame)
            return
        if self.node_id is None:
            raise ProtocolError(f"Send node_register before {_type(frame)}.")
        claimed = getattr(frame, "node_id", self.node_id)
        if claimed != self.node_id:
            await self.send_error(
                ErrorCode.NODE_ID_MISMATCH,
                f"This socket is node {self.node_id}; the frame names {claimed}. It was ignored.",
            )
            return
        if isinstance(frame, NodeHeartbeat):
            outcome = await node_heartbeat(node_id=self.node_id, channel=self.channel_name, frame=frame)
            if outcome in HEARTBEAT_CLOSE:
                await self.close(code=HEARTBEAT_CLOSE[outcome])
        elif isinstance(frame, JobResult):
            self.start_task(self.finish(self.node_id, frame))
        elif isinstance(frame, JobAck | JobStarted):
            state = "accepted" if isinstance(frame, JobAck) else "started"
            if not await job_progress(node_id=self.node_id, job_id=frame.job_id, state=state):
                await self.frame_ignored(_type(frame))
        elif isinstance(frame, NodeAsrPartial):
            if not await job_partial(
                node_id=self.node_id, job_id=frame.job_id, text=frame.text, is_final=frame.is_final
            ):
                await self.frame_ignored("asr_partial")
        elif isinstance(frame, NodeError):
            log.warning("node reported an error: %s", frame.message, extra={"node_id": self.node_id, "code": frame.code})
        elif isinstance(frame, NodeControl):
            try:
                await node_drain(
                    node_id=self.node_id, drain=frame.command == "drain", reason=frame.reason, by_node=True
                )
            except ResumeTooSoon as soon:
                raise ProtocolError(
                    "A node may put itself back in its pools once per heartbeat interval; try again in "
                    f"{soon.wait_ms / 1000:.1f} s. The resume was ignored.",
                    ErrorCode.RATE_LIMITED,
                ) from None

    async def finish(self, node_id: str, result: JobResult) -> None:
        """A result is precious: while the store is unreachable, keep trying for a while."""
        for _ in range(RESULT_RETRIES):
            try:
                if not await job_finish(node_id=node_id, result=result):
                    await self.frame_ignored("job_result")
                return
            except (redis.ConnectionError, redis.TimeoutError):
                await asyncio.sleep(RESULT_RETRY_S)
        log.error("result dropped: store unreachable", extra={"node_id": node_id, "job_id": result.job_id})

    async def register(self, frame: NodeRegister) -> None:
        try:
            registered = await node_register(
                frame=frame, token=self.token_id or "", channel=self.channel_name, current_id=self.node_id,
                tenant=self.tenant,
            )
        except NodeTaken:
            await self.close(code=CloseCode.TAKEN_OVER)
            return
        self.node_id = registered.node_id
        await self.send_frame(node_register_ack(registered.node_id, registered.status))

    # --- messages from dispatch services (channel layer) ---

    async def job_assign(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["text"])

    async def job_cancel(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["text"])

    async def node_control(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["text"])

    async def node_close(self, message: dict[str, Any]) -> None:
        await self.close(code=message["code"])


def _type(frame: Any) -> str:
    return type(frame).__struct_config__.tag  # the frame's "type" as sent
