"""Load for end-to-end tests of whole deployments: nodes that answer and reconnect to the next
process when theirs goes away, browsers that keep talking and open a new session when their
socket is closed, and the checks of live state that every job ended once."""

from __future__ import annotations

import asyncio
import collections
import random
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import websockets

from dispatch import keys, store
from tests.clients import FakeBrowser, FakeNode, eventually

ENDING_TYPES = ("translation_result", "missing_result", "error")
T = TypeVar("T")


def is_ending(frame: dict[str, Any]) -> bool:
    return frame["type"] in ENDING_TYPES and "utterance_index" in frame


async def reach(server: Any, start: int, open_on: Callable[[int], Awaitable[T | None]]) -> tuple[int, T]:
    """Try ``open_on`` each process in turn from ``start`` (one may be restarting) until one
    opens; returns that process's index and what it opened."""
    count = len(server.ports)
    while True:
        for offset in range(count):
            index = (start + offset) % count
            try:
                opened = await open_on(index)
            except (OSError, TimeoutError, websockets.WebSocketException):
                continue
            if opened is not None:
                return index, opened
        await asyncio.sleep(0.1)


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


async def ready(url: str, timeout: float = 15) -> None:
    """Wait for ``/readyz`` to answer 200 (polled off the event loop: the clients keep going)."""
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(status, url) != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} never became ready")
        await asyncio.sleep(0.1)


async def keep_alive(*nodes: FakeNode) -> None:
    while True:
        for client in nodes:
            try:
                await client.heartbeat()
            except websockets.ConnectionClosed:
                pass
        await asyncio.sleep(0.3)


def used_slots(*node_ids: str, client: redis.Redis | None = None) -> list[int]:
    """The slots in use on these nodes (``client``: another Redis than the test run's own)."""
    client = client or store.sync_client()
    return [int(store.decoded(client.hget(keys.node(node_id), "used")) or 0) for node_id in node_ids]


def jobs_in_flight(client: redis.Redis | None = None) -> int:
    client = client or store.sync_client()
    return sum(1 for _ in client.scan_iter(match=f"{keys.prefix()}:job:*"))


def job_counters(client: redis.Redis | None = None) -> dict[str, int]:
    """Jobs ended, by outcome, as the scripts counted them."""
    metrics = store.decoded((client or store.sync_client()).hgetall(keys.metrics()))
    return {name: int(metrics.get(f"jobs_{name}", 0)) for name in ("result", "missing", "error", "cancelled")}


class Agent:
    """A node that answers every job after a pause (``slow`` ones take seconds, so they always
    hold jobs) and, whenever its socket closes, connects again (same node id) to the next
    process that accepts it."""

    def __init__(
        self, server: Any, token: str, home: int, rng: random.Random, *, slow: bool = False, slots: int = 4
    ) -> None:
        self.server, self.token, self.rng, self.slow, self.slots = server, token, rng, slow, slots
        self.at = home
        self.node_id: str | None = None
        self.connected = False
        self.closes: list[int | None] = []
        self.assigned = self.moved_here = 0
        self.task = asyncio.ensure_future(self.run())

    async def connect(self) -> FakeNode:
        async def register(index: int) -> FakeNode:
            client = await FakeNode.connect(self.server.ws(index), self.token)
            await client.register(langs=["zh", "en"], node_id=self.node_id, slots=self.slots)
            return client

        self.at, client = await reach(self.server, self.at, register)
        self.node_id = client.node_id
        return client

    async def run(self) -> None:
        while True:
            client = await self.connect()
            self.connected = True
            beats = asyncio.ensure_future(keep_alive(client))
            try:
                while True:
                    frame = await client.recv(timeout=3600)
                    if frame["type"] == "job_assign":
                        self.assigned += 1
                        self.moved_here += frame["attempt_id"] > 1
                        asyncio.ensure_future(self.answer(client, frame))
            except websockets.ConnectionClosed as closed:
                self.closes.append(closed.rcvd.code if closed.rcvd else None)
            finally:
                self.connected = False
                beats.cancel()
            self.at = (self.at + 1) % len(self.server.ports)  # its process is going away

    async def answer(self, client: FakeNode, job: dict[str, Any]) -> None:
        await asyncio.sleep(self.rng.uniform(2, 3) if self.slow else self.rng.uniform(0.1, 0.8))
        try:
            await client.send(client.result_for(job))
        except websockets.ConnectionClosed:
            pass  # lost with the socket: the job moves on


class Session:
    def __init__(self, browser: FakeBrowser, at: int) -> None:
        self.browser, self.at = browser, at
        self.sent: list[int] = []
        self.sent_at: dict[int, float] = {}  # utterance index → time.monotonic() when sent
        self.endings: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
        self.closed_by_server: int | None | bool = False  # the close code when the server closed it


class Talker:
    """A browser saying an utterance every ``say_every_s`` until ``stop`` is set; when the server
    closes its socket it connects to another process and starts a new session."""

    def __init__(self, server: Any, home: int, stop: asyncio.Event, say_every_s: float = 0.4) -> None:
        self.server, self.at, self.stop, self.say_every_s = server, home, stop, say_every_s
        self.sessions: list[Session] = []
        self.task = asyncio.ensure_future(self.run())

    async def open(self) -> Session:
        async def init(index: int) -> FakeBrowser | None:
            browser = await FakeBrowser.connect(self.server.ws(index))
            ack = await browser.init("zh", "en")
            return browser if ack["type"] == "session_init_ack" else None

        self.at, browser = await reach(self.server, self.at, init)
        return Session(browser, self.at)

    async def receive(self, session: Session) -> None:
        try:
            while True:
                frame = await session.browser.recv(timeout=3600)
                if is_ending(frame):
                    session.endings[frame["utterance_index"]].append(frame)
        except websockets.ConnectionClosed as closed:
            if session.closed_by_server is False:
                session.closed_by_server = closed.rcvd.code if closed.rcvd else None

    async def run(self) -> None:
        while not self.stop.is_set():
            session = await self.open()
            self.sessions.append(session)
            receiver = asyncio.ensure_future(self.receive(session))
            index = 0
            while not self.stop.is_set() and not receiver.done():
                try:
                    await session.browser.utterance(index)
                except websockets.ConnectionClosed:
                    break
                session.sent.append(index)
                session.sent_at[index] = time.monotonic()
                index += 1
                await asyncio.sleep(self.say_every_s)
            if receiver.done():
                self.at = (self.at + 1) % len(self.server.ports)
                continue
            await self.finish(session, receiver)

    async def finish(self, session: Session, receiver: asyncio.Future[None]) -> None:
        """The run is over and this socket stayed up: wait for every ending, then a moment more."""
        try:
            await eventually(lambda: len(session.endings) >= len(session.sent) or receiver.done(), timeout=30)
        except TimeoutError:
            pass  # the test's assertions say which utterance never ended
        await asyncio.sleep(1.0)  # anything more would be a second ending
        receiver.cancel()
        await session.browser.close()
