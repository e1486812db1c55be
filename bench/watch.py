"""Watching a server as staff and operators do, from the load generator's process: a logged-in
staff member's dashboard socket, a ``/metrics`` scrape a second, the server's event-loop lag read
from its own ``/metrics``, this process's own loop lag, and the server's log read between two
points (its ERROR lines and the loop-lag WARNINGs). Used by ``phase_fleet_watched``.

A socket or a request the server closes or refuses is counted, never fatal; the viewer opens
its socket again.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from websockets.asyncio.client import connect

from fleetsim.wire import CLOSED, UNREACHABLE

LAG = "scheduler_event_loop_lag_seconds"
LAG_LINE = re.compile(rf'^{LAG}_bucket\{{process="(?P<process>[^"]+)",le="(?P<le>[^"]+)"\}} (?P<n>\d+)$')
ERROR_LINE = re.compile(r"^\S+ ERROR ")
LATE_LINE = re.compile(r"event loop late by (\d+) ms")
TOO_MANY = re.compile(r"MaxConnectionsError: ")  # the exception's own line of a traceback


# --- A staff member --------------------------------------------------------------------------


def staff_session() -> tuple[str, Callable[[], None]]:
    """A staff user logged in, in the bench's database (the server reads it at the socket's
    connect): the ``Cookie`` header of its session, and how to remove both again."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.create_user(username=f"bench-staff-{uuid.uuid4().hex[:8]}", is_staff=True)
    client = Client()
    client.force_login(user)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value

    def forget() -> None:
        from django.contrib.sessions.models import Session

        Session.objects.filter(session_key=key).delete()
        user.delete()

    return f"{settings.SESSION_COOKIE_NAME}={key}", forget


# --- HTTP, the viewer and the scraper ----------------------------------------------------------


async def http_get(port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    """GET ``path`` from 127.0.0.1:``port`` (HTTP/1.0: the body ends with the connection)."""

    async def get() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            data = await reader.read()
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        parts = head.split(b" ", 2)
        return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body

    return await asyncio.wait_for(get(), timeout)


class Running:
    """Something that runs in the background (its ``_run``) until stopped."""

    task: asyncio.Future[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self.task = asyncio.ensure_future(self._run())
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@dataclass
class Viewer(Running):
    """One staff member on ``/dashboard/``'s socket (its first page, the default view), reading
    every frame pushed; opened again when the server closes it."""

    port: int
    cookie: str
    frames: int = 0
    built: int = 0  # frames whose page the worker had written
    bytes: int = 0
    largest: int = 0
    closed: int = 0  # by the server, or could not be opened
    first: asyncio.Event = field(default_factory=asyncio.Event)  # a frame with its page built arrived


    def count(self) -> tuple[int, int, int]:
        return self.frames, self.built, self.bytes

    async def _run(self) -> None:
        base = f"127.0.0.1:{self.port}"
        headers = {"Cookie": self.cookie, "Origin": f"http://{base}"}
        while True:
            try:
                async with connect(f"ws://{base}/ws/dashboard", additional_headers=headers, max_size=None,
                                   compression=None, ping_interval=None, open_timeout=30, close_timeout=2) as ws:
                    async for text in ws:
                        frame = json.loads(text)
                        if frame.get("type") != "snapshot":
                            continue
                        self.frames += 1
                        self.bytes += len(text)
                        self.largest = max(self.largest, len(text))
                        if frame.get("page", {}).get("built"):
                            self.built += 1
                            self.first.set()
            except (*CLOSED, *UNREACHABLE):
                pass
            self.closed += 1
            await asyncio.sleep(0.5)


@dataclass
class Scraper(Running):
    """A ``/metrics`` scrape a second, as Prometheus does; failed ones are counted."""

    port: int
    every_s: float = 1.0
    done: int = 0
    failed: int = 0
    seconds: list[float] = field(default_factory=list)  # each scrape's wall time


    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            started = time.perf_counter()
            try:
                status, _ = await http_get(self.port, "/metrics")
            except (OSError, TimeoutError):
                status = 0
            if status == 200:
                self.done += 1
                self.seconds.append(time.perf_counter() - started)
            else:
                self.failed += 1
            next_at += self.every_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))


# --- Event-loop lag --------------------------------------------------------------------------


@dataclass
class Lag:
    """Ticks of a loop by how late they ran: counts per bucket (``bounds`` in seconds; the last
    bucket is +Inf), not cumulative."""

    bounds: tuple[float, ...]
    counts: list[int]

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Lag:
        return cls(bounds, [0] * (len(bounds) + 1))

    @property
    def ticks(self) -> int:
        return sum(self.counts)

    def __add__(self, other: Lag) -> Lag:
        return Lag(self.bounds, [a + b for a, b in zip(self.counts, other.counts, strict=True)])

    def __sub__(self, other: Lag) -> Lag:
        return Lag(self.bounds, [max(0, a - b) for a, b in zip(self.counts, other.counts, strict=True)])

    def quantile(self, q: float) -> float:
        """The bucket bound under which a share ``q`` of the ticks ran (inf past the last)."""
        running, needed = 0, q * self.ticks
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += count
            if running >= needed and running:
                return bound
        return float("nan")

    def later_than(self, bound: float) -> int:
        """Ticks late by more than ``bound`` (one of the bounds)."""
        index = self.bounds.index(bound)
        return sum(self.counts[index + 1 :])


async def server_lag(port: int, pid: int) -> Lag | None:
    """The histogram the server process ``pid`` published, read from its ``/metrics``
    (``scheduler_event_loop_lag_seconds{process="<host>:<pid>"}``); None when absent."""
    try:
        status, body = await http_get(port, "/metrics")
    except (OSError, TimeoutError):
        return None
    if status != 200:
        return None
    cumulative: list[tuple[float, int]] = []
    for line in body.decode(errors="replace").splitlines():
        match = LAG_LINE.match(line)
        if match and match["process"].endswith(f":{pid}"):
            cumulative.append((float(match["le"]), int(match["n"])))
    if not cumulative:
        return None
    cumulative.sort()
    bounds = tuple(bound for bound, _ in cumulative if bound != float("inf"))
    counts, before = [], 0
    for _, n in cumulative:
        counts.append(n - before)
        before = n
    return Lag(bounds, counts)


class LoopTicker:
    """This process's own loop (the load generator's): how late a 50 ms timer fires. A late
    load generator delays the round trips it times, so its lag is shown beside the server's."""

    TICK_S = 0.05

    def __init__(self) -> None:
        self.late: list[float] = []
        self.task: asyncio.Future[None] | None = None

    def start(self) -> LoopTicker:
        self.late = []
        self.task = asyncio.ensure_future(self._run())
        return self

    async def stop(self) -> list[float]:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        return self.late

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.TICK_S)
            self.late.append(max(0.0, loop.time() - before - self.TICK_S))


# --- The server's log ----------------------------------------------------------------------------


@dataclass
class LogSlice:
    """What the server logged between ``mark`` and ``read``."""

    errors: int = 0  # ERROR lines
    too_many: int = 0  # lines naming redis-py's MaxConnectionsError
    tracebacks: int = 0
    late_ms: list[int] = field(default_factory=list)  # "event loop late by N ms" WARNINGs
    first_error: str = ""


class ServerLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def read(self) -> LogSlice:
        found = LogSlice()
        if not self.path.exists():
            return found
        with self.path.open("rb") as file:
            file.seek(self.offset)
            text = file.read().decode(errors="replace")
        for line in text.splitlines():
            if ERROR_LINE.match(line):
                found.errors += 1
                found.first_error = found.first_error or line[:300]
            if line.startswith("Traceback (most recent call last)"):
                found.tracebacks += 1
            if TOO_MANY.search(line):
                found.too_many += 1
            late = LATE_LINE.search(line)
            if late:
                found.late_ms.append(int(late.group(1)))
        return found
