"""The fleet watched: on the full path (the real server and worker), with an idle fleet of
``BENCH_FLEET_NODES`` nodes registered, what a staff member and a scraper cost the sockets of
the process they read from, and what the fleet itself does to that process when it all comes
back or leaves at once.

In order, in one run:

1. The CPU of one dashboard frame and of one ``/metrics`` scrape's read at 10 and at N nodes,
   in-process (``bench/fleet_read.py``'s functions, each fleet under its own key prefix).
2. N idle nodes register over sockets (``fleetsim``'s, 14 languages, heartbeating from their
   ack on), ``BENCH_FLEET_CONCURRENCY`` at a time.
3. A browser/node pair of a language pair the fleet does not serve (its jobs go to its own
   node) sends round trips one at a time at ``BENCH_WATCHED_RATE`` per second, in windows that
   take turns: nobody watching, then one staff member's ``/ws/dashboard`` on its first page plus a
   ``/metrics`` scrape a second on the same process. ``BENCH_WATCHED_S`` of round trips each.
4. Every node leaves at once (close frames all sent together): how long until every node is
   offline in Redis, and what the server logged.
5. The storm: every node connects and registers again with its id, ``BENCH_STORM_CONCURRENCY``
   at a time, as after a restart; how long until all are ready in Redis, and the pair's round
   trips meanwhile.
6. Every socket cut at once (a network blip): the same as 4.

The server's event-loop lag in each step is its own histogram read from ``/metrics`` before and
after (the process publishes it every 2 s), this process's own loop lag beside it. A socket the
server closes is counted, never fatal. When a round-trip target is missed or the server's loop
stalled in the windows (``BENCH_PROFILE``), one more watched window runs under py-spy, C frames
included (the garbage collector shows there).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

from bench import fleet_read, loadgen, profile
from bench.fleet import Fleet, fleet_close, fleet_connect, fleet_cut, fleet_reconnect
from bench.phases import Bench, Phase, Report, log
from bench.procs import LOG_DIR, RedisSnapshot, delete_matching
from bench.watch import Lag, LogSlice, LoopTicker, Scraper, ServerLog, Viewer, server_lag, staff_session
from fleetsim.browser import LanguagePair
from fleetsim.stats import percentile

PUBLISHED_S = 2.3  # the server publishes its lag histogram every 2 s: wait for one past a window
HALVES = 2  # each condition's round trips in this many windows, the conditions taking turns
LEAVE_LIMIT_S = 60.0  # a lease runs out after 45 s: past that, a node was not taken offline by its close
READY_LIMIT_S = 300.0
P99_RATIO, MAX_RATIO, READ_RATIO = 1.2, 2.0, 3.0
FLEET_POOL = "auto:zh-en"  # one of the 273 pools every fleet node joins; the pair's is not among them


class ApartPair(loadgen.FullPair):
    """A pair whose language pair no fleet node serves: its jobs all go to its own node."""

    languages = ["sw", "yo"]
    speaks = LanguagePair("sw", "yo")


@dataclass
class Trips:
    """Round trips of the pair: latencies (s) of those that ended well, and those that did not."""

    ok: list[float] = field(default_factory=list)
    failed: int = 0

    def add(self, window: loadgen.Window) -> None:
        self.ok += [s.latency for s in window.ok]
        self.failed += window.failed

    def ms(self, q: float) -> float:
        return percentile(self.ok, q) * 1e3

    @property
    def max_ms(self) -> float:
        return max(self.ok) * 1e3 if self.ok else math.nan


@dataclass
class Step:
    """What the server and this process did during one step: the server's loop lag (from its
    histogram), its CPU, Redis's CPU, this process's loop lag, and the server's log."""

    lag: Lag | None = None
    seconds: float = 0.0
    server_cpu: float = 0.0
    redis_cpu: float = 0.0
    loadgen_late: list[float] = field(default_factory=list)
    logged: LogSlice = field(default_factory=LogSlice)

    def add(self, other: Step) -> None:
        if other.lag is not None:
            self.lag = other.lag if self.lag is None else self.lag + other.lag
        self.seconds += other.seconds
        self.server_cpu += other.server_cpu
        self.redis_cpu += other.redis_cpu
        self.loadgen_late += other.loadgen_late
        self.logged.errors += other.logged.errors
        self.logged.too_many += other.logged.too_many
        self.logged.tracebacks += other.logged.tracebacks
        self.logged.late_ms += other.logged.late_ms
        self.logged.first_error = self.logged.first_error or other.logged.first_error

    def lag_p99_ms(self) -> float:
        return self.lag.quantile(0.99) * 1e3 if self.lag is not None and self.lag.ticks else math.nan

    def late_100(self) -> int:
        return self.lag.later_than(0.1) if self.lag is not None and 0.1 in self.lag.bounds else 0

    def worst_logged_ms(self) -> float:
        return float(max(self.logged.late_ms)) if self.logged.late_ms else math.nan

    def loadgen_ms(self, q: float) -> float:
        return percentile(self.loadgen_late, q) * 1e3


@dataclass
class Condition:
    """Nobody watching, or one viewer and a scrape a second."""

    trips: Trips = field(default_factory=Trips)
    step: Step = field(default_factory=Step)
    frames: int = 0
    built: int = 0
    frame_bytes: int = 0
    largest_frame: int = 0
    viewer_closed: int = 0
    scrapes: int = 0
    scrapes_failed: int = 0
    scrape_s: list[float] = field(default_factory=list)


@dataclass
class Leaving:
    how: str
    offline_s: float = math.nan  # until every node is offline in Redis (nan: not within the limit)
    not_offline: int = 0  # node records still not offline at the end
    step: Step = field(default_factory=Step)


@dataclass
class Storm:
    concurrency: int = 0
    left_online: int = 0  # nodes the leaving before left online (their close not taken)
    offline_after_s: float = math.nan  # until those went offline by their leases, before the storm
    ready_s: float = math.nan  # until every node that came back is ready in Redis
    acks_s: float = math.nan  # until the last node read its ack
    ready: int = 0
    refused: int = 0
    unreachable: int = 0
    gone: int = 0  # sockets the server closed after the ack, during the storm
    trips: Trips = field(default_factory=Trips)
    step: Step = field(default_factory=Step)


@dataclass
class Watched:
    nodes: int
    rate: float = 0.0
    repeat: int = 0  # calls per figure of the in-process reads
    reads: dict[int, dict[str, fleet_read.Timed]] = field(default_factory=dict)  # fleet size → read → figures
    register_s: float = math.nan
    register: Step = field(default_factory=Step)
    conditions: dict[str, Condition] = field(default_factory=lambda: {"unwatched": Condition(), "watched": Condition()})
    leavings: list[Leaving] = field(default_factory=list)
    storm: Storm = field(default_factory=Storm)
    fleet_closed: int = 0  # fleet sockets the server closed, or that could not be opened
    pairs_reopened: int = 0
    profile: Any = None  # (profile.Profile, Trips) of a watched window under py-spy
    profile_why: str = ""

    def ratio(self, name: str) -> float:
        unwatched, watched = self.conditions["unwatched"].trips, self.conditions["watched"].trips
        if name == "max":
            return watched.max_ms / unwatched.max_ms
        return watched.ms(0.99) / unwatched.ms(0.99)

    def read_ratio(self, read: str) -> float:
        sizes = sorted(self.reads)
        if len(sizes) < 2:
            return math.nan
        return self.reads[sizes[-1]][read][0] / self.reads[sizes[0]][read][0]

    def missed(self) -> list[str]:
        found = []
        if not self.ratio("p99") <= P99_RATIO:
            found.append(f"round-trip p99 watched {self.ratio('p99'):.2f}× unwatched")
        if not self.ratio("max") <= MAX_RATIO:
            found.append(f"round-trip max watched {self.ratio('max'):.2f}× unwatched")
        for read in ("dashboard frame", "scrape read"):
            if not self.read_ratio(read) <= READ_RATIO:
                found.append(f"{read} CPU at {self.nodes:,} nodes {self.read_ratio(read):.2f}× at 10")
        return found


# --- Measuring ---------------------------------------------------------------------------------


class Probe:
    """The server's lag histogram, its CPU, Redis's CPU, this process's loop and the server's
    log, read at both ends of a step."""

    def __init__(self, bench: Bench) -> None:
        server = bench.stacks["full"].server
        self.port, self.process, self.client = server.port, server.process, bench.client
        self.log = ServerLog(server.process.log_path)

    async def begin(self) -> Measuring:
        lag = await server_lag(self.port, self.process.pid)
        self.log.mark()
        return Measuring(self, lag, self.process.cpu(), RedisSnapshot.take(self.client), time.monotonic(),
                         LoopTicker().start())

    async def around(self, work: Any) -> tuple[Any, Step]:
        """Run the awaitable ``work`` as one step; its result and the step's figures."""
        measuring = await self.begin()
        result = await work
        return result, await measuring.end()


@dataclass
class Measuring:
    """A step begun: ``stop`` ends its clock (CPU, Redis, this process's loop) where the step
    ends; ``end`` (which stops it if not yet) waits for the server's next lag histogram and
    reads its log."""

    probe: Probe
    lag: Lag | None
    cpu: float
    redis: RedisSnapshot
    started: float
    ticker: LoopTicker
    step: Step | None = None

    async def stop(self) -> None:
        if self.step is not None:
            return
        step = Step(loadgen_late=await self.ticker.stop())
        step.seconds = time.monotonic() - self.started
        step.server_cpu = self.probe.process.cpu() - self.cpu
        step.redis_cpu = RedisSnapshot.take(self.probe.client).minus(self.redis).cpu
        self.step = step

    async def end(self) -> Step:
        await self.stop()
        assert self.step is not None
        await asyncio.sleep(PUBLISHED_S)
        lag = await server_lag(self.probe.port, self.probe.process.pid)
        self.step.lag = lag - self.lag if lag is not None and self.lag is not None else None
        self.step.logged = self.probe.log.read()
        return self.step


def key(bench: Bench, *parts: str) -> str:
    """A key of the full path's live state (``dispatch/keys.py`` names them)."""
    return ":".join((f"{bench.prefix}-full", *parts))


def ready_count(bench: Bench) -> int:
    return int(bench.client.scard(key(bench, "pool", FLEET_POOL)))


def connected(bench: Bench, node_ids: list[str]) -> int:
    """Nodes among ``node_ids`` that hold a lease (connected: not offline), a slice at a time."""
    count = 0
    for start in range(0, len(node_ids), 2000):
        scores = bench.client.zmscore(key(bench, "leases"), node_ids[start : start + 2000])
        count += sum(1 for score in scores if score is not None)
    return count


async def until_offline(bench: Bench, node_ids: list[str], started: float, limit_s: float) -> float:
    """Seconds from ``started`` until none of ``node_ids`` is connected (nan: not within the limit)."""
    while time.perf_counter() - started < limit_s:
        if connected(bench, node_ids) == 0:
            return time.perf_counter() - started
        await asyncio.sleep(0.2)
    return math.nan


def not_offline(bench: Bench, node_ids: list[str]) -> int:
    """Node records among ``node_ids`` whose status is not offline, read a slice at a time."""
    count = 0
    for start in range(0, len(node_ids), 500):
        pipe = bench.client.pipeline(transaction=False)
        for node_id in node_ids[start : start + 500]:
            pipe.hget(key(bench, "node", node_id), "status")
        count += sum(1 for status in pipe.execute() if status and status != "offline")
    return count


async def reads(bench: Bench, found: Watched) -> None:
    """Step 1: a frame's and a scrape's CPU at 10 and N nodes, in-process."""
    from django.conf import settings

    kept = settings.SCHEDULER_REDIS_PREFIX
    try:
        for size in (10, found.nodes):
            prefix = f"{bench.prefix}-reads{size}"
            try:
                found.reads[size] = await fleet_read.measure_fleet(size, prefix, bench.params.fleet_repeat)
            finally:
                delete_matching(bench.client, f"{prefix}:*")
            frame, scrape = found.reads[size]["dashboard frame"], found.reads[size]["scrape read"]
            log(f"  {size} nodes: frame {frame[0] * 1e3:.2f} ms CPU, scrape read {scrape[0] * 1e3:.2f} ms CPU")
    finally:
        settings.SCHEDULER_REDIS_PREFIX = kept


async def pair_ready(bench: Bench, pair: ApartPair | None, found: Watched) -> ApartPair:
    """The pair, opened again if the server closed it."""
    if pair is not None and not pair.closed and pair.sim_browser.ws is not None and pair.sim_node.ws is not None:
        return pair
    if pair is not None:
        found.pairs_reopened += 1
        await pair.close()
    return await ApartPair().open(bench.stacks["full"].ws)  # type: ignore[return-value]


async def first_frame(viewer: Viewer) -> None:
    """Until the viewer has its first page (a busy machine's slow worker: it watches anyway)."""
    try:
        await asyncio.wait_for(viewer.first.wait(), 30)
    except TimeoutError:
        log(f"  the dashboard showed no built page within 30 s ({viewer.frames} frames, {viewer.closed} closed)")


async def conditions(bench: Bench, found: Watched, probe: Probe, pair: ApartPair, cookie: str) -> ApartPair:
    """Step 3: the conditions take turns, ``HALVES`` windows each."""
    params, port = bench.params, probe.port
    seconds = params.watched_s / HALVES
    for half in range(HALVES):
        for name in ("unwatched", "watched"):
            condition = found.conditions[name]
            pair = await pair_ready(bench, pair, found)
            viewer = scraper = None
            if name == "watched":
                viewer, scraper = Viewer(port, cookie).start(), Scraper(port).start()
                await first_frame(viewer)
                frames0 = viewer.count()
            window, step = await probe.around(loadgen.open_loop(
                [pair], rate=params.watched_rate, warmup=0.5, seconds=seconds, probe=dict,
            ))
            condition.trips.add(window)
            condition.step.add(step)
            if viewer is not None and scraper is not None:
                await asyncio.gather(viewer.stop(), scraper.stop())
                condition.frames += viewer.frames - frames0[0]
                condition.built += viewer.built - frames0[1]
                condition.frame_bytes += viewer.bytes - frames0[2]
                condition.largest_frame = max(condition.largest_frame, viewer.largest)
                condition.viewer_closed += viewer.closed
                condition.scrapes += scraper.done
                condition.scrapes_failed += scraper.failed
                condition.scrape_s += scraper.seconds
            trips = condition.trips
            log(f"  {name} {half + 1}/{HALVES}: {len(window.ok)} round trips, p99 {percentile([s.latency for s in window.ok], 0.99) * 1e3:.2f} ms, "
                f"max {max((s.latency for s in window.ok), default=math.nan) * 1e3:.2f} ms; server loop lag p99 "
                f"{step.lag_p99_ms():.0f} ms; so far p99 {trips.ms(0.99):.2f} ms, max {trips.max_ms:.2f} ms")
    return pair


async def profile_watched(bench: Bench, found: Watched, pair: ApartPair, cookie: str) -> None:
    """One more watched window with py-spy on the server."""
    server = bench.stacks["full"].server
    seconds = max(4.0, min(15.0, bench.params.watched_s / HALVES))
    output = LOG_DIR / "profile-fleet-watched.txt"
    output.unlink(missing_ok=True)
    viewer, scraper = Viewer(server.port, cookie).start(), Scraper(server.port).start()
    try:
        await first_frame(viewer)
        recorder = profile.record(server.process.pid, seconds, output, rate=50, native=True)
        if recorder is None:
            found.profile = (profile.Profile(error="py-spy is not installed (pip install -r requirements-test.txt)"), Trips())
            return
        window = await loadgen.open_loop([pair], rate=bench.params.watched_rate, warmup=0.0, seconds=seconds, probe=dict)
        _, stderr = await asyncio.to_thread(recorder.communicate)
    finally:
        await asyncio.gather(viewer.stop(), scraper.stop())
    result = profile.summarise(output)
    if not result.samples:
        result.error = stderr.decode(errors="replace")[-500:]
    trips = Trips()
    trips.add(window)
    found.profile = (result, trips)


async def leave(bench: Bench, found: Watched, probe: Probe, fleet: Fleet, how: str) -> None:
    """Steps 4 and 6: every node leaves at once; how long until all are offline in Redis."""
    leaving = Leaving(how=how)
    node_ids = [node.node_id for node in fleet.nodes if node.node_id]

    async def all_offline() -> float:
        started = time.perf_counter()
        closing = asyncio.ensure_future(fleet_close(fleet, at_once=True)) if how == "close" else None
        if closing is None:
            fleet_cut(fleet)
        try:
            return await until_offline(bench, node_ids, started, LEAVE_LIMIT_S)
        finally:
            if closing is not None:
                await closing

    leaving.offline_s, leaving.step = await probe.around(all_offline())
    leaving.not_offline = not_offline(bench, node_ids)
    found.leavings.append(leaving)
    log(f"  {how}: every node offline in {leaving.offline_s:.2f} s ({leaving.not_offline} not); "
        f"{leaving.step.logged.errors} ERROR lines, {leaving.step.logged.too_many} MaxConnectionsError")


async def storm(bench: Bench, found: Watched, probe: Probe, fleet: Fleet, pair: ApartPair) -> None:
    """Step 5: every node back at once, the pair's round trips going on meanwhile."""
    result = found.storm
    result.concurrency = bench.params.storm_concurrency
    expected = len(fleet.nodes)
    fleet.refused = fleet.unreachable = 0
    stop = asyncio.Event()
    # The storm starts with every node offline: any the leaving left online go by their leases.
    node_ids = [node.node_id for node in fleet.nodes if node.node_id]
    result.left_online = connected(bench, node_ids)
    if result.left_online:
        log(f"  {result.left_online} nodes still online: waiting for their leases to run out")
        result.offline_after_s = await until_offline(bench, node_ids, time.perf_counter(), 2 * LEAVE_LIMIT_S)

    measuring = await probe.begin()
    driving = asyncio.ensure_future(loadgen.paced_until([pair], rate=bench.params.watched_rate, stop=stop))
    started = time.perf_counter()
    coming = asyncio.ensure_future(fleet_reconnect(fleet, concurrency=result.concurrency))
    try:
        while time.perf_counter() - started < READY_LIMIT_S:
            ready = ready_count(bench)
            if ready >= expected or (coming.done() and ready >= len(fleet.nodes) - len(fleet.gone)):
                result.ready_s, result.ready = time.perf_counter() - started, ready
                break
            await asyncio.sleep(0.05)
        result.acks_s = await coming
    finally:
        stop.set()
        await measuring.stop()  # the storm is over: what comes next is the pair's last answers
    window = await driving
    result.step = await measuring.end()
    result.trips.add(window)
    result.refused, result.unreachable, result.gone = fleet.refused, fleet.unreachable, len(fleet.gone)
    log(f"  storm: {result.ready} of {expected} ready in {result.ready_s:.2f} s (last ack {result.acks_s:.2f} s); "
        f"round trips p50 {result.trips.ms(0.5):.2f} ms, p99 {result.trips.ms(0.99):.2f} ms, max {result.trips.max_ms:.2f} ms")


async def measure(bench: Bench) -> None:
    params = bench.params
    found = Watched(nodes=params.fleet_nodes, rate=params.watched_rate, repeat=params.fleet_repeat)
    bench.report.results[PHASE.name] = found
    await reads(bench, found)
    stack = bench.stacks["full"]
    probe = Probe(bench)
    cookie, forget = await asyncio.to_thread(staff_session)
    pair: ApartPair | None = await ApartPair().open(stack.ws)  # type: ignore[assignment]
    fleet: Fleet | None = None
    try:
        fleet, found.register = await probe.around(
            fleet_connect(stack.ws, params.fleet_nodes, concurrency=params.fleet_concurrency, full=True)
        )
        found.register_s = fleet.seconds
        log(f"  {len(fleet.nodes)} nodes registered in {fleet.seconds:.1f} s, {params.fleet_concurrency} at a time")
        pair = await conditions(bench, found, probe, pair, cookie)  # type: ignore[arg-type]
        missed = [m for m in found.missed() if "round-trip" in m]
        stalls = sum(found.conditions[name].step.late_100() for name in ("unwatched", "watched"))
        if stalls:
            missed.append(f"{stalls} tick{'' if stalls == 1 else 's'} of the server's loop more than 100 ms late in the windows")
        if params.profile == "always" or (params.profile == "auto" and missed):
            found.profile_why = "always" if params.profile == "always" else "; ".join(missed)
            log(f"  profiling a watched window with py-spy ({found.profile_why})")
            pair = await pair_ready(bench, pair, found)
            await profile_watched(bench, found, pair, cookie)
        await leave(bench, found, probe, fleet, "close")
        pair = await pair_ready(bench, pair, found)
        await storm(bench, found, probe, fleet, pair)
        await leave(bench, found, probe, fleet, "cut")
    finally:
        if fleet is not None:
            found.fleet_closed = fleet.closed
            await fleet_close(fleet)
        if pair is not None:
            await pair.close()
        await asyncio.to_thread(forget)


def watched(report: Report) -> Watched | None:
    result: Watched | None = report.results.get(PHASE.name)
    return result


def section(report: Report) -> list[str]:
    from bench.fleet_watched_report import section as render

    found = watched(report)
    return render(found, report) if found is not None else []


PHASE = Phase(
    name="fleet-watched",
    title=lambda bench: f"the fleet watched: {bench.params.fleet_nodes} idle nodes, a dashboard viewer and a "
    "scrape a second; the storm; everything leaving at once",
    needs="servers",  # its own pair; the load generator's pairs closed
    measure=measure,
    section=section,
    place=25,
)
