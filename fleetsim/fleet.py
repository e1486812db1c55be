"""Running a simulated fleet (``Plan``) against a scheduler, in one asyncio process.

The nodes connect and register first (a refused token stops the run at once), then each browser
opens its session and talks: an utterance every ``talk_every_s`` (±25%), reopening its session
when the server closes the socket. When the time is up (or on the first Ctrl-C / SIGTERM) the
browsers stop talking, the run waits up to ``drain_s`` for the jobs still running (a second
Ctrl-C stops waiting), then the browsers and the nodes leave, and the summary is made.
"""

from __future__ import annotations

import asyncio
import base64
import random
import signal
import sys
import time
from dataclasses import asdict
from typing import Any, TextIO

import uvloop
import websockets

from fleetsim.browser import SessionRefused, SimBrowser
from fleetsim.frames import audio_of
from fleetsim.node import Behaviour, NodeRefused, SimNode
from fleetsim.options import Plan
from fleetsim.stats import Stats
from fleetsim.wire import UNREACHABLE, http_base, pause, ws_connect

CONNECTING_AT_ONCE = 20
PROBE_TIMEOUT_S = 10.0


class Unreachable(Exception):
    """No scheduler answers at the plan's address."""


def _reason(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the scheduler running?)"
    if isinstance(error, TimeoutError):
        return f"no answer within {PROBE_TIMEOUT_S:.0f} s"
    if isinstance(error, websockets.InvalidStatus):
        return f"HTTP {error.response.status_code} at /ws/session (not a scheduler?)"
    return str(error) or type(error).__name__


async def probe(url: str) -> None:
    """Open and close a session socket; ``Unreachable`` when that fails."""
    try:
        ws = await ws_connect(f"{url}/ws/session", open_timeout=PROBE_TIMEOUT_S)
    except UNREACHABLE as error:
        raise Unreachable(f"cannot reach the scheduler at {url}: {_reason(error)}") from None
    await ws.close()


class Run:
    """One run of a plan: its nodes, browsers, counts and the live line."""

    def __init__(self, plan: Plan, *, err: TextIO, interactive: bool) -> None:
        self.plan, self.err, self.interactive = plan, err, interactive
        self.rng = random.Random(plan.seed)
        self.stop = asyncio.Event()  # talking ends
        self.hurry = asyncio.Event()  # waiting for the last jobs ends
        self.started = time.monotonic()
        self.stats = Stats(note=self.note, story_url=f"{http_base(plan.url)}/dashboard/jobs/")
        self.live_shown = False
        flaky = plan.nodes if plan.flaky is None else plan.flaky
        steady = Behaviour(service_ms=plan.behaviour.service_ms, reconnect_s=plan.behaviour.reconnect_s)
        self.nodes = [
            SimNode(
                plan.url, token=plan.token, languages=plan.node_languages, slots=plan.slots,
                behaviour=plan.behaviour if i >= plan.nodes - flaky else steady,
                rng=random.Random(self.rng.random()), observer=self.stats.node_observer, name=f"node {i + 1}",
            )
            for i in range(plan.nodes)
        ]
        self.stats.nodes.simulated = plan.nodes
        self.stats.nodes.flaky = flaky if plan.behaviour.flaky else 0
        self.browsers = [
            SimBrowser(plan.url, pair, observer=self.stats.browser_observer, name=f"browser {i + 1}")
            for i, pair in enumerate(plan.session_pairs(self.rng))
        ]
        self.packets = audio_of(plan.utterance_ms)
        self.audio_b64 = base64.b64encode(b"".join(self.packets)).decode()

    def note(self, text: str) -> None:
        self.clear_live()
        print(text, file=self.err, flush=True)

    def clear_live(self) -> None:
        if self.live_shown:
            self.err.write("\r\033[K")
            self.live_shown = False

    def interrupted(self) -> None:
        """First Ctrl-C (or SIGTERM): stop talking; the next: stop waiting for the last jobs."""
        if not self.stop.is_set():
            self.stop.set()
            self.note(f"stopping: waiting up to {self.plan.drain_s:.0f} s for the jobs still running "
                      "(Ctrl-C again to stop now)")
        else:
            self.hurry.set()

    async def live(self) -> None:
        every = self.plan.live_every_s
        if every <= 0:
            return
        while True:
            await asyncio.sleep(every)
            line = self.stats.live_line(time.monotonic() - self.started)
            if self.interactive:
                self.err.write(f"\r\033[K{line}")
                self.live_shown = True
            else:
                self.err.write(line + "\n")
            self.err.flush()

    async def connect_nodes(self) -> None:
        """Every node registers, a few at a time; the first refusal ends the run."""
        queue = iter(self.nodes)

        async def one() -> None:
            for node in queue:
                try:
                    await node.connect()
                except UNREACHABLE as error:
                    raise Unreachable(f"cannot reach the scheduler at {self.plan.url}: {_reason(error)}") from None

        await asyncio.gather(*(one() for _ in range(CONNECTING_AT_ONCE)))

    async def talk(self, browser: SimBrowser, rng: random.Random) -> None:
        """One browser: open a session (again, when the server closed it) and say an utterance
        every ``talk_every_s`` ±25%, until the talking ends."""
        plan, loop = self.plan, asyncio.get_running_loop()
        next_start = loop.time() + rng.uniform(0, plan.talk_every_s)  # sessions spread out
        backoff = 0.5
        while not self.stop.is_set():
            if not browser.open:
                try:
                    await browser.connect()
                    backoff = 0.5
                except SessionRefused as refused:
                    self.stats.session_refused(browser, refused.frame)
                    await pause(self.stop, 5.0)
                    continue
                except UNREACHABLE:
                    await pause(self.stop, backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
            if await pause(self.stop, next_start - loop.time()):
                break
            next_start = max(next_start + plan.talk_every_s * rng.uniform(0.75, 1.25), loop.time())
            if not browser.open:
                continue
            try:
                if plan.utterance_frames:
                    await browser.utterance(audio_b64=self.audio_b64)
                else:
                    await browser.speak(self.packets)
            except websockets.ConnectionClosed:
                continue  # its listener counts what was lost

    async def drain(self) -> None:
        """Wait for every utterance said to end, ``drain_s`` at most."""
        deadline = time.monotonic() + self.plan.drain_s
        while time.monotonic() < deadline and not self.hurry.is_set():
            if not any(browser.said_at for browser in self.browsers if browser.open):
                return
            await pause(self.hurry, 0.1)

    async def run(self) -> dict[str, Any]:
        await probe(self.plan.url)
        live = asyncio.ensure_future(self.live())
        nodes_stop = asyncio.Event()
        node_tasks: list[asyncio.Future[None]] = []
        try:
            await self.connect_nodes()
            node_tasks = [asyncio.ensure_future(node.run(nodes_stop)) for node in self.nodes]
            talkers = [asyncio.ensure_future(self.talk(b, random.Random(self.rng.random()))) for b in self.browsers]
            if self.plan.duration_s > 0:
                await pause(self.stop, self.plan.duration_s)
                self.stop.set()
            else:
                await self.stop.wait()
            await asyncio.gather(*talkers)
            await self.drain()
        finally:
            await asyncio.gather(*(browser.close() for browser in self.browsers), return_exceptions=True)
            nodes_stop.set()
            await asyncio.gather(*(node.close() for node in self.nodes), return_exceptions=True)
            await asyncio.gather(*node_tasks, return_exceptions=True)
            live.cancel()
            self.clear_live()
        plan = asdict(self.plan)
        plan.pop("token")
        plan["pairs"] = {pair.label: weight for pair, weight in self.plan.pairs}
        return self.stats.summary(url=self.plan.url, seconds=time.monotonic() - self.started, plan=plan)


def simulate(plan: Plan, *, err: TextIO = sys.stderr, interactive: bool = False) -> dict[str, Any]:
    """Run ``plan`` to its end (Ctrl-C and SIGTERM end it early) and return the summary.
    Raises ``Unreachable`` when no scheduler answers, ``NodeRefused`` when it refuses a node."""

    async def main() -> dict[str, Any]:
        run = Run(plan, err=err, interactive=interactive)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, run.interrupted)
        return await run.run()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


__all__ = ["NodeRefused", "Unreachable", "simulate"]
