"""A simulated GPU node on ``/ws/node``: it registers as the real node agent does, heartbeats right
after its ack and every interval, and does each ``job_assign`` by its ``Behaviour``: answers after
a service time, fails a share, never answers a share (the scheduler times the attempt out and
sends ``job_cancel``), or vanishes on a share (its socket cut without a close frame) and connects
again with its node id a moment later.

Whoever counts (the simulator's statistics, the bench's stage marks) is told through a
``NodeObserver``; the node itself keeps only what a real node keeps: its id and the jobs it holds.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import websockets
from websockets.asyncio.client import ClientConnection

from fleetsim.frames import decode, encode, failure_frame, heartbeat_frame, register_frame, result_frame
from fleetsim.wire import CLOSED, UNREACHABLE, pause, ws_connect

# The scheduler's expected interval (its lease is three of them); a scheduler on this machine
# shares the environment, another one uses the protocol's default.
HEARTBEAT_INTERVAL_S = float(os.environ.get("SCHEDULER_HEARTBEAT_INTERVAL_S") or 15)
SHARED_RNG = random.Random()  # for nodes given none (a fleet of thousands need not keep one each)
# Close codes after which a real node does not come back by itself: its token was refused or
# revoked, or its id was taken over by another socket.
FINAL_CLOSES = (4401, 4409)


@dataclass(frozen=True)
class Behaviour:
    """How a node does its jobs. Each takes a service time drawn uniformly from ``service_ms``;
    of all jobs, a share ``fail_rate`` is answered with a failure, a share ``timeout_rate`` is
    never answered, and on a share ``drop_rate`` the node vanishes and reconnects after a pause
    drawn from ``reconnect_s``."""

    service_ms: tuple[float, float] = (0.0, 0.0)
    fail_rate: float = 0.0
    timeout_rate: float = 0.0
    drop_rate: float = 0.0
    reconnect_s: tuple[float, float] = (1.0, 3.0)

    @property
    def instant(self) -> bool:
        """Every job answered at once with a result (the bench's node)."""
        return self.service_ms[1] <= 0 and not (self.fail_rate or self.timeout_rate or self.drop_rate)

    @property
    def flaky(self) -> bool:
        return bool(self.fail_rate or self.timeout_rate or self.drop_rate)


class NodeObserver:
    """What a node tells whoever counts; every method is a no-op here."""

    def registered(self, node: SimNode, ack: dict[str, Any], again: bool) -> None:
        """Its ``node_register_ack`` arrived (``again``: after a reconnect)."""

    def assigned(self, node: SimNode, job: dict[str, Any]) -> None:
        """A ``job_assign`` arrived."""

    def answered(self, node: SimNode, job: dict[str, Any], ok: bool, assigned_at: float) -> None:
        """Its answer (a result, or a failure when not ``ok``) was written; ``assigned_at`` is
        ``time.perf_counter()`` when the job was read."""

    def kept(self, node: SimNode, job: dict[str, Any]) -> None:
        """It will never answer this job."""

    def cancelled(self, node: SimNode, frame: dict[str, Any]) -> None:
        """A ``job_cancel`` arrived."""

    def vanished(self, node: SimNode, jobs: int) -> None:
        """It cut its own socket, holding ``jobs`` jobs."""

    def closed(self, node: SimNode, code: int | None) -> None:
        """The server closed its socket (``code``), or the connection was lost."""

    def heartbeat_sent(self, node: SimNode) -> None:
        """A heartbeat was written."""

    def heartbeat_failed(self, node: SimNode) -> None:
        """A heartbeat could not be written: the socket is closed, and its heartbeats end."""


class NodeRefused(Exception):
    """The server closed the socket before acknowledging the registration."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        self.code = code
        super().__init__(f"the scheduler closed the node's socket with {code}" + (f" ({reason})" if reason else ""))


def _token_url(url: str, token: str | None) -> str:
    if not token:
        return url
    return f"{url}{'&' if '?' in url else '?'}token={quote(token, safe='')}"


async def heartbeats(
    ws: ClientConnection, node_id: str, node: SimNode | None = None, *, interval: float = HEARTBEAT_INTERVAL_S,
    sent: Callable[[], None] | None = None,
) -> None:
    """As a real node: right after the ack, then every ``interval`` (else its lease runs out and
    the scheduler takes it offline). ``node`` gives the load and languages to report; ``sent``
    is called after each heartbeat. Returns when the socket is closed."""
    try:
        while True:
            if node is None:
                frame = heartbeat_frame(node_id)
            else:
                frame = heartbeat_frame(node_id, node.languages, running_jobs=len(node.jobs), load=node.load)
            await ws.send(frame)
            if sent is not None:
                sent()
            await asyncio.sleep(interval)
    except CLOSED:
        return


class SimNode:
    """One node on its own socket (``base``: ``ws://host:port``)."""

    def __init__(
        self,
        base: str,
        *,
        token: str | None = None,
        languages: list[str] | None = None,
        slots: int | None = None,
        behaviour: Behaviour = Behaviour(),
        rng: random.Random | None = None,
        observer: NodeObserver | None = None,
        heartbeat_s: float = HEARTBEAT_INTERVAL_S,
        name: str = "",
    ) -> None:
        self.url = _token_url(f"{base}/ws/node", token)
        self.languages, self.slots, self.behaviour = languages, slots, behaviour
        self.instant = behaviour.instant
        self.rng = rng or SHARED_RNG
        self.observer = observer or NodeObserver()
        self.heartbeat_s = heartbeat_s
        self.name = name
        self.node_id: str | None = None
        self.status = ""
        self.ws: ClientConnection | None = None
        self.jobs: dict[str, dict[str, Any]] = {}  # held: job id → its job_assign
        self.tasks: set[asyncio.Future[None]] = set()  # its heartbeats and answers to come
        self.vanishing = False
        self.stopping = False

    @property
    def up(self) -> bool:
        return self.ws is not None

    @property
    def load(self) -> float:
        return min(1.0, len(self.jobs) / self.slots) if self.slots else 0.0

    async def connect(self) -> dict[str, Any]:
        """Open the socket and register (with its id, after the first time); heartbeats start
        at the ack. Raises ``NodeRefused`` when the server closes first."""
        ws = await ws_connect(self.url, open_timeout=30)
        try:
            await ws.send(encode(register_frame(self.languages, node_id=self.node_id, slots=self.slots)).decode())
            while True:
                ack = decode(await ws.recv())
                if ack.get("type") == "node_register_ack":
                    break
                if ack.get("type") == "error":
                    await ws.close()
                    raise NodeRefused(None, f"{ack.get('code')}: {ack.get('message')}")
        except websockets.ConnectionClosed as closed:
            raise NodeRefused(closed.rcvd.code if closed.rcvd else None) from None
        again = self.node_id is not None
        self.ws, self.node_id, self.status = ws, ack["node_id"], ack.get("status", "")
        self.vanishing = False
        self._spawn(self._heartbeats(ws, ack["node_id"]))
        self.observer.registered(self, ack, again)
        return ack

    async def _heartbeats(self, ws: ClientConnection, node_id: str) -> None:
        await heartbeats(ws, node_id, self, interval=self.heartbeat_s, sent=lambda: self.observer.heartbeat_sent(self))
        self.observer.heartbeat_failed(self)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def serve(self) -> int | None:
        """Do the jobs that arrive until the socket closes; the close code (1006: cut)."""
        ws = self.ws
        assert ws is not None, "connect first"
        try:
            async for text in ws:
                frame = decode(text)
                kind = frame.get("type")
                if kind == "job_assign":
                    await self.job(frame)
                elif kind == "job_cancel":
                    self.jobs.pop(frame.get("job_id", ""), None)
                    self.observer.cancelled(self, frame)
        except websockets.ConnectionClosed:
            pass
        code = ws.close_code
        self._forget()
        return code

    def _forget(self) -> None:
        """The socket is gone: so are its heartbeats, its answers to come and the jobs it held
        (the scheduler gives them to other nodes)."""
        for task in list(self.tasks):
            task.cancel()
        self.jobs.clear()
        self.ws = None

    async def job(self, job: dict[str, Any]) -> None:
        assigned_at = time.perf_counter()
        self.observer.assigned(self, job)
        if self.instant:
            await self.answer(job, True, assigned_at)
            return
        behaviour, roll = self.behaviour, self.rng.random()
        if roll < behaviour.drop_rate:
            self.vanish()
            return
        self.jobs[job["job_id"]] = job
        if roll < behaviour.drop_rate + behaviour.timeout_rate:
            self.observer.kept(self, job)
            return
        ok = roll >= behaviour.drop_rate + behaviour.timeout_rate + behaviour.fail_rate
        delay = self.rng.uniform(*behaviour.service_ms) / 1000
        self._spawn(self._answer_after(delay, job, ok, assigned_at))

    async def _answer_after(self, delay: float, job: dict[str, Any], ok: bool, assigned_at: float) -> None:
        await asyncio.sleep(delay)
        if job["job_id"] in self.jobs:  # not cancelled meanwhile
            await self.answer(job, ok, assigned_at)

    async def answer(self, job: dict[str, Any], ok: bool, assigned_at: float) -> None:
        ws = self.ws
        if ws is None:
            return
        processing_ms = round((time.perf_counter() - assigned_at) * 1000)
        node_id = self.node_id or ""
        frame = result_frame(job, node_id, processing_ms=processing_ms) if ok else failure_frame(job, node_id)
        try:
            await ws.send(frame)
        except CLOSED:
            return  # lost with the socket: the scheduler moves the job on
        self.jobs.pop(job.get("job_id", ""), None)
        self.observer.answered(self, job, ok, assigned_at)

    def vanish(self) -> None:
        """Cut the socket without a close frame, as a crashed node or a lost network does."""
        if self.ws is not None:
            self.vanishing = True
            self.observer.vanished(self, len(self.jobs))
            self.ws.transport.abort()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve, and connect again with its id whenever the socket ends, until ``stop`` (or a
        close after which a real node would not come back: 4401, 4409)."""
        backoff = 0.5
        while not stop.is_set() and not self.stopping:
            if self.ws is None:
                try:
                    await self.connect()
                    backoff = 0.5
                except NodeRefused as refused:
                    self.observer.closed(self, refused.code)
                    if refused.code in FINAL_CLOSES:
                        return
                    await pause(stop, backoff)
                    backoff = min(backoff * 2, 10)
                    continue
                except UNREACHABLE:
                    await pause(stop, backoff)
                    backoff = min(backoff * 2, 10)
                    continue
            code = await self.serve()
            if self.stopping:
                return
            if self.vanishing:
                await pause(stop, self.rng.uniform(*self.behaviour.reconnect_s))
                continue
            self.observer.closed(self, code)
            if code in FINAL_CLOSES:
                return
            await pause(stop, self.rng.uniform(0.2, 1.0))  # the server restarts or moved it: come back

    async def close(self) -> None:
        """Leave: stop heartbeating and close the socket."""
        self.stopping = True
        ws = self.ws
        for task in list(self.tasks):
            task.cancel()
        if ws is not None:
            try:
                await ws.close()
            except CLOSED:
                pass
