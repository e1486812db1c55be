"""What a phase of the bench is, and what it is given.

A phase (``bench/phase_*.py``, one module each) exports ``PHASE``: its name, the line the run logs
when it starts, what it ``needs`` ready, ``measure`` (which fills the report) and ``section`` (its
part of ``BENCHMARKS.md``). ``bench/run.py`` lists the phases in the order they run; adding one
is adding its module and one line there.

Phases that measure every configuration under test (the floors and the full path) do it in rounds,
the configurations taking turns (``Bench.take_turns``); each figure is then the median of the
rounds (``Config.figure``). Phases with one result keep it in ``Report.results`` under their name.
"""

from __future__ import annotations

import datetime
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import redis

from bench import procs
from bench.knobs import Params

# What the orchestrator has ready before a phase runs: Redis only (no server started yet), the
# servers, or the servers with every configuration's pairs of sockets open.
Needs = Literal["redis", "servers", "pairs"]

# Where a phase's section stands in BENCHMARKS.md: by increasing place, after the targets and the
# table of floors and the full path, before "How to read and rerun". Taken so far: 10 one at a
# time, 20 the idle fleet, 25 the fleet watched, 30 pick-and-reserve, 40 Redis commands, 45 the
# ceiling of one Redis (the report's own), 50 the variants (the report's own), 60 the profile.
LAST_PLACE = 90


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def med(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


@dataclass
class Config:
    """One configuration under test: a floor or a full-path stack, and the pairs (browser and
    node) the load generator drives against it."""

    key: str
    label: str
    kind: Any  # a loadgen Pair class
    base: str
    processes: list[procs.Process]  # server first (and the worker for the full path)
    floor: bool
    pairs: list[Any] = field(default_factory=list)
    windows: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # phase → figures per round
    monitor: Any = None  # phase_redis_commands.JobCommands
    counted: float = 0.0  # round trips under MONITOR
    profile: Any = None  # (profile.Profile, window figures)

    def figure(self, phase: str, name: str) -> float:
        """The median over the rounds of one figure of a phase."""
        return med([window[name] for window in self.windows.get(phase, [])])


@dataclass
class Report:
    params: Params
    started: datetime.datetime
    load_before: str
    configs: list[Config] = field(default_factory=list)
    rate: float = math.nan  # the latency phase's offered load: half the default relay's saturation
    results: dict[str, Any] = field(default_factory=dict)  # phase name → what it measured
    load_after: str = ""
    seconds: float = 0.0
    redis_version: str = ""
    ran: list[str] = field(default_factory=list)  # the phases run (BENCH_PHASES), by name; all when empty

    def config(self, key: str) -> Config:
        return next(c for c in self.configs if c.key == key)


@dataclass
class Bench:
    """What every phase is given: the knobs, the run's key prefix (every key of the run starts
    with it and is deleted at the end), a Redis client, the report it fills, and the servers
    once they are started."""

    params: Params
    prefix: str
    client: redis.Redis
    report: Report
    floors: dict[str, procs.Server] = field(default_factory=dict)  # by channel layer
    stacks: dict[str, procs.FullStack] = field(default_factory=dict)  # "full", "full:<variant>"

    @property
    def configs(self) -> list[Config]:
        return self.report.configs

    async def take_turns(
        self, phase: str, one: Callable[[Config], Awaitable[dict[str, float]]],
        describe: Callable[[dict[str, float]], str], keys: tuple[str, ...] = (),
    ) -> None:
        """Rounds in which the configurations (those of ``keys`` when given) take turns, each
        measured by ``one``; its figures are kept per round under ``phase``."""
        chosen = [c for c in self.configs if not keys or c.key in keys]
        for round_index in range(self.params.rounds):
            for config in chosen:
                figures = await one(config)
                config.windows.setdefault(phase, []).append(figures)
                log(f"  round {round_index + 1} {config.key:<16} {describe(figures)}")


@dataclass(frozen=True)
class Phase:
    name: str
    title: Callable[[Bench], str]  # logged when it starts
    needs: Needs
    measure: Callable[[Bench], Awaitable[None]]
    section: Callable[[Report], list[str]] | None = None  # its lines of BENCHMARKS.md
    place: int = LAST_PLACE


# --- Figures of a measured window (saturation, fixed load, profile) --------------------------


def make_probe(config: Config, client: redis.Redis) -> Callable[[], dict[str, Any]]:
    """What a window reads at its edges: the configuration's processes' CPU, Redis's counters,
    and this process's CPU (the load generator's)."""

    def probe() -> dict[str, Any]:
        return {
            "cpu": [process.cpu() for process in config.processes],
            "redis": procs.RedisSnapshot.take(client),
            "loadgen": time.process_time(),
        }

    return probe


def window_figures(window: Any, config: Config) -> dict[str, float]:
    """A loadgen ``Window`` as figures: per round trip, per second and per core."""
    before, after = window.probes["before"], window.probes["after"]
    n = len(window.samples)
    per = max(1, n)
    cpu = [a - b for a, b in zip(after["cpu"], before["cpu"], strict=True)]
    redis_delta = after["redis"].minus(before["redis"])
    return {
        "rate": n / window.seconds,
        "p50": window.percentile(0.50) * 1e3,
        "p99": window.percentile(0.99) * 1e3,
        "server_cpu_ms": cpu[0] / per * 1e3,
        "server_cores": cpu[0] / window.seconds,
        "worker_cpu_ms": cpu[1] / per * 1e3 if len(cpu) > 1 else math.nan,
        "redis_cpu_ms": redis_delta.cpu / per * 1e3,
        "redis_cores": redis_delta.cpu / window.seconds,
        "redis_calls": redis_delta.total_calls / per,
        "redis_usec": redis_delta.total_usec / per,
        "loadgen_cores": (after["loadgen"] - before["loadgen"]) / window.seconds,
        "failed": float(window.failed),
        "samples": float(n),
    }
