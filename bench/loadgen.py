"""The load generator: many fake browsers and nodes in one asyncio process.

A *pair* is one browser and one node. Three kinds speak to three kinds of server:

- ``EchoPair`` (one socket to ``/echo``): the frame comes straight back.
- ``RelayPair`` (``/relay/browser`` and ``/relay/node`` of the floor server): the node answers
  each frame it is relayed with a ``job_result``-sized frame, which is relayed back.
- ``FullPair`` (``/ws/session`` and ``/ws/node`` of the scheduler): the simulated clients of
  ``fleetsim``, the same as ``manage.py fleet_simulate``'s: a session (zh → en) sends
  ``utterance`` frames; its node, registered with 14 languages, answers each ``job_assign`` at
  once; a round trip ends at the browser's ``translation_result``.

Every kind carries the same utterance (1 s of audio, 50 Opus packets) and the same answer, so
round trips compare. ``closed_loop`` measures saturation (each browser sends its next utterance
when the last one is answered); ``open_loop`` measures latency at a fixed offered load (round
trips start on a fixed schedule, round-robin over the pairs; latency counts from the scheduled
start, so a late sender is not hidden). A browser socket the server closes is counted (its
round trip failed) and its pair sends no more.

Fleets of idle nodes are in ``bench/fleet.py``; what the browsers and nodes send is in
``fleetsim/frames.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from fleetsim.browser import BrowserObserver, LanguagePair, SimBrowser
from fleetsim.frames import decode, result_frame, utterance_frame
from fleetsim.node import NodeObserver, SimNode
from fleetsim.stats import percentile
from fleetsim.wire import CLOSED, ws_connect

REQUEST_TIMEOUT_S = 30.0


# --- Round trips -----------------------------------------------------------------------------


@dataclass
class Sample:
    started: float
    ended: float
    ok: bool
    assigned: float = math.nan  # when the node had the job (its frame read)
    answered: float = math.nan  # when the node's answer was written

    @property
    def latency(self) -> float:
        return self.ended - self.started


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    lost: int = 0


PAIR_NUMBERS = itertools.count()
# (session id, utterance index) → when a node read its job and when it had written its answer
NODE_MARKS: dict[tuple[str, int], tuple[float, float]] = {}


class Pair:
    """One browser and its node; ``pending`` maps utterance index → (start, future)."""

    browser: ClientConnection

    def __init__(self) -> None:
        self.session_id = f"s-{next(PAIR_NUMBERS):08x}"  # the scheduler's pairs take the id it gives
        self.pending: dict[int, tuple[float, asyncio.Future[None] | None]] = {}
        self.counter = itertools.count()
        self.recorder = Recorder()
        self.readers: list[asyncio.Task[None]] = []
        self.sockets: list[ClientConnection] = []
        self.closed = False  # the server closed the browser's socket: it sends no more

    def complete(self, index: int, ok: bool) -> None:
        entry = self.pending.pop(index, None)
        if entry is None:
            return
        started, future = entry
        assigned, answered = NODE_MARKS.pop((self.session_id, index), (math.nan, math.nan))
        self.recorder.samples.append(Sample(started, time.perf_counter(), ok, assigned, answered))
        if future is not None and not future.done():
            future.set_result(None)

    @staticmethod
    async def answer(node: ClientConnection, job: dict[str, Any], frame: str) -> None:
        """A node's answer, with the stage marks of its round trip (the scheduler may give a
        browser's job to any pair's node)."""
        assigned = time.perf_counter()
        await node.send(frame)
        NODE_MARKS[(job["session_id"], job["utterance_index"])] = (assigned, time.perf_counter())

    async def request(self, started: float | None = None, wait: bool = False) -> asyncio.Future[None] | None:
        index = next(self.counter)
        future = asyncio.get_running_loop().create_future() if wait else None
        self.pending[index] = (time.perf_counter() if started is None else started, future)
        try:
            await self.send(index)
        except CLOSED:
            self.closed = True
            self.complete(index, False)  # counted as failed
        return future

    async def send(self, index: int) -> None:
        await self.browser.send(utterance_frame(self.session_id, index))

    def read(self, ws: ClientConnection, handle: Callable[[str], Awaitable[None] | None]) -> None:
        async def loop() -> None:
            try:
                async for text in ws:
                    outcome = handle(text)  # type: ignore[arg-type]
                    if outcome is not None:
                        await outcome
            except websockets.ConnectionClosed:
                pass

        self.readers.append(asyncio.ensure_future(loop()))

    async def close(self) -> None:
        for ws in self.sockets:
            await ws.close()
        for reader in self.readers:
            reader.cancel()


class EchoPair(Pair):
    async def open(self, base: str) -> EchoPair:
        self.browser = await ws_connect(f"{base}/echo")
        self.sockets = [self.browser]
        self.read(self.browser, lambda text: self.complete(decode(text)["utterance_index"], True))
        return self


class RelayPair(Pair):
    path = "relay"

    async def open(self, base: str) -> RelayPair:
        node = await ws_connect(f"{base}/{self.path}/node")
        channel = decode(await node.recv())["channel"]
        self.browser = await ws_connect(f"{base}/{self.path}/browser?to={channel}")
        self.sockets = [self.browser, node]

        def answer(text: str) -> Awaitable[None]:
            job = decode(text)
            return self.answer(node, job, result_frame(job, "node-bench000"))

        self.read(node, answer)
        self.read(self.browser, lambda text: self.complete(decode(text)["utterance_index"], True))
        return self


class NoHopRelayPair(RelayPair):
    path = "relay-nohop"


class CallingRelayPair(RelayPair):
    path = "relay-calls"


class FullPair(Pair):
    """The scheduler's own clients (``fleetsim``): a node registered with 14 languages that
    answers each job at once, and a browser whose session (zh → en) says ``utterance`` frames.
    A subclass may register its node with other ``languages`` and speak another pair."""

    sim_node: SimNode
    sim_browser: SimBrowser
    languages: list[str] | None = None  # the node's: fleetsim's 14 when None
    speaks = LanguagePair("zh", "en")

    async def open(self, base: str) -> FullPair:
        node = SimNode(base, observer=NODE_MARKER, languages=self.languages)
        ack = await node.connect()
        if ack.get("status") != "ready":
            raise RuntimeError(f"node not registered ready: {ack}")
        browser = SimBrowser(base, self.speaks, observer=Completer(self))
        await browser.connect()
        self.sim_node, self.sim_browser = node, browser
        self.session_id = browser.session_id
        self.readers.append(asyncio.ensure_future(node.serve()))
        return self

    async def send(self, index: int) -> None:
        if self.sim_browser.ws is None:  # the server closed it: counted as failed
            raise ConnectionError("the browser's socket is closed")
        await self.sim_browser.utterance(index)

    async def close(self) -> None:
        await self.sim_browser.close()
        await self.sim_node.close()
        for reader in self.readers:
            reader.cancel()


class StageMarks(NodeObserver):
    """Each job's stage marks, as its node saw them (the scheduler may give a browser's job to
    any pair's node)."""

    def answered(self, node: SimNode, job: dict[str, Any], ok: bool, assigned_at: float) -> None:
        NODE_MARKS[(job["session_id"], job["utterance_index"])] = (assigned_at, time.perf_counter())


NODE_MARKER = StageMarks()


class Completer(BrowserObserver):
    """Ends a pair's round trip at its browser's ending: a result, or anything else (failed)."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair

    def ended(self, browser: SimBrowser, index: int, frame: dict[str, Any], waited: float) -> None:
        self.pair.complete(index, frame["type"] == "translation_result")


async def open_pairs(kind: type[Pair], base: str, count: int) -> list[Pair]:
    pairs = []
    for _ in range(count):  # one at a time: a fleet connecting, not a thundering herd
        pairs.append(await kind().open(base))  # type: ignore[attr-defined]
    return pairs


async def close_pairs(pairs: list[Pair]) -> None:
    await asyncio.gather(*(pair.close() for pair in pairs), return_exceptions=True)


# --- Phases ----------------------------------------------------------------------------------


@dataclass
class Window:
    """What one measured window saw: round trips that ended in it (saturation) or started in it
    (fixed load), and what the probes read at its edges."""

    seconds: float
    samples: list[Sample]
    lost: int
    probes: dict[str, Any]

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.ok]

    @property
    def failed(self) -> int:
        return sum(1 for s in self.samples if not s.ok) + self.lost

    @property
    def rate(self) -> float:
        return len(self.samples) / self.seconds

    def percentile(self, q: float) -> float:
        return percentile([s.latency for s in self.ok], q)


Probe = Callable[[], dict[str, Any]]


def _reset(pairs: list[Pair]) -> None:
    NODE_MARKS.clear()
    for pair in pairs:
        pair.recorder = Recorder()


async def _drain(pairs: list[Pair], timeout: float) -> int:
    deadline = time.perf_counter() + timeout
    while any(pair.pending for pair in pairs) and time.perf_counter() < deadline:  # noqa: ASYNC110 (polls many pairs)
        await asyncio.sleep(0.01)
    lost = 0
    for pair in pairs:
        lost += len(pair.pending)
        pair.pending.clear()
    return lost


async def closed_loop(pairs: list[Pair], *, warmup: float, seconds: float, probe: Probe) -> Window:
    """Each pair keeps one round trip in flight; the window counts round trips that ended in it."""
    _reset(pairs)
    running = True
    lost = 0

    async def drive(pair: Pair) -> None:
        nonlocal lost
        while running and not pair.closed:
            future = await pair.request(wait=True)
            try:
                await asyncio.wait_for(future, REQUEST_TIMEOUT_S)  # type: ignore[arg-type]
            except TimeoutError:
                lost += 1

    drivers = [asyncio.ensure_future(drive(pair)) for pair in pairs]
    await asyncio.sleep(warmup)
    start, before = time.perf_counter(), probe()
    await asyncio.sleep(seconds)
    end, after = time.perf_counter(), probe()
    running = False
    await asyncio.gather(*drivers)
    lost += await _drain(pairs, 5)
    samples = [s for pair in pairs for s in pair.recorder.samples if start <= s.ended < end]
    return Window(end - start, samples, lost, {"before": before, "after": after})


async def open_loop(pairs: list[Pair], *, rate: float, warmup: float, seconds: float, probe: Probe) -> Window:
    """Round trips start at a fixed rate whatever the answers; the window counts the ones
    scheduled in it and measures each from its scheduled start."""
    _reset(pairs)
    origin = time.perf_counter()
    start, end = origin + warmup, origin + warmup + seconds
    before: dict[str, Any] = {}
    for k in itertools.count():
        scheduled = origin + k / rate
        if scheduled >= end:
            break
        if not before and scheduled >= start:
            before = probe()
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await pairs[k % len(pairs)].request(started=scheduled)
    after = probe()
    lost = await _drain(pairs, REQUEST_TIMEOUT_S)
    samples = [s for pair in pairs for s in pair.recorder.samples if start <= s.started < end]
    return Window(end - start, samples, lost, {"before": before, "after": after})


async def paced_until(pairs: list[Pair], *, rate: float, stop: asyncio.Event) -> Window:
    """Round trips one at a time, at most ``rate`` a second, until ``stop`` is set: each waits
    for the one before it to end, and is measured from its own start (what one round trip costs
    meanwhile, without a queue of them piling up behind a slow one)."""
    _reset(pairs)
    start, lost = time.perf_counter(), 0
    for k in itertools.count():
        if stop.is_set():
            break
        future = await pairs[k % len(pairs)].request(wait=True)
        try:
            await asyncio.wait_for(future, REQUEST_TIMEOUT_S)  # type: ignore[arg-type]
        except TimeoutError:
            lost += 1
        delay = start + (k + 1) / rate - time.perf_counter()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
    end = time.perf_counter()
    lost += await _drain(pairs, REQUEST_TIMEOUT_S)
    samples = [s for pair in pairs for s in pair.recorder.samples]
    return Window(end - start, samples, lost, {})


async def one_at_a_time(pairs: list[Pair], *, count: int) -> tuple[list[Sample], int]:
    """Round trips one after another, the pairs taking turns: each stage's cost on a quiet
    server, without queueing. Returns the samples and how many were lost."""
    _reset(pairs)
    lost = 0
    for k in range(count):
        future = await pairs[k % len(pairs)].request(wait=True)
        try:
            await asyncio.wait_for(future, REQUEST_TIMEOUT_S)  # type: ignore[arg-type]
        except TimeoutError:
            lost += 1
    return [s for pair in pairs for s in pair.recorder.samples], lost


async def counted(pairs: list[Pair], *, total: int) -> float:
    """Closed loop until ``total`` round trips have ended (for counting Redis commands).
    Returns how many ended."""
    _reset(pairs)
    done = 0

    async def drive(pair: Pair) -> None:
        nonlocal done
        while done < total and not pair.closed:
            future = await pair.request(wait=True)
            await asyncio.wait_for(future, REQUEST_TIMEOUT_S)  # type: ignore[arg-type]
            done += 1

    await asyncio.gather(*(drive(pair) for pair in pairs))
    return float(sum(len(pair.recorder.samples) for pair in pairs))
