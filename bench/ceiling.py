"""The ceiling of one Redis primary, computed from what the run measured: Redis CPU per job (the
scripts, and the channel layer when a job's frames cross processes), what an idle fleet costs
Redis meanwhile, and so how many jobs per second one primary carries and how many server
processes that takes. A section of ``BENCHMARKS.md`` (``docs/deployment.md`` says what a
deployment does past it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.markdown import fmt
from bench.phase_fleet_watched import watched
from bench.phases import Report

PLACE = 45
PLAIN = "full:plain-pubsub"


@dataclass
class Ceiling:
    scripts_ms: float  # Redis CPU per job, one server process (no frame crosses processes)
    scripts_usec: float  # the same in commandstats (time inside commands)
    layer_ms: float  # more per job when every frame of it crosses processes (the plain pub/sub layer)
    per_process: float  # jobs/s one server process carries at saturation, its frames crossing processes
    per_process_alone: float  # the same with every frame in-process
    idle_cores: float  # Redis cores an idle fleet of ``nodes`` uses (heartbeats, the summary, the worker)
    nodes: int

    @property
    def job_ms(self) -> float:
        return self.scripts_ms + (self.layer_ms if not math.isnan(self.layer_ms) else 0.0)

    @property
    def jobs_per_s(self) -> float:
        """On one Redis core, saturated, beside the idle fleet."""
        idle = self.idle_cores if not math.isnan(self.idle_cores) else 0.0
        return (1 - idle) / (self.job_ms / 1000)

    @property
    def processes(self) -> float:
        return self.jobs_per_s / self.per_process


def ceiling(report: Report) -> Ceiling | None:
    if report.ran and "sat" not in report.ran:
        return None
    full = report.config("full")
    plain = next((c for c in report.configs if c.key == PLAIN), None)
    scripts_ms = full.figure("sat", "redis_cpu_ms")
    if math.isnan(scripts_ms):
        return None
    layer_ms = plain.figure("sat", "redis_cpu_ms") - scripts_ms if plain is not None else math.nan
    idle_cores, nodes = math.nan, 0
    found = watched(report)
    if found is not None and found.conditions["unwatched"].step.seconds:
        step, trips = found.conditions["unwatched"].step, found.conditions["unwatched"].trips
        # less the pair's own round trips in that window
        idle_cores = max(0.0, step.redis_cpu - len(trips.ok) * scripts_ms / 1000) / step.seconds
        nodes = found.nodes
    return Ceiling(
        scripts_ms=scripts_ms, scripts_usec=full.figure("sat", "redis_usec"), layer_ms=layer_ms,
        per_process=plain.figure("sat", "rate") if plain is not None else full.figure("sat", "rate"),
        per_process_alone=full.figure("sat", "rate"), idle_cores=idle_cores, nodes=nodes,
    )


def section(report: Report) -> list[str]:
    found = ceiling(report)
    if found is None:
        return []
    layer = "" if not math.isnan(found.layer_ms) else " (no plain pub/sub variant in this run: the layer left out)"
    idle = (f"an idle fleet of {found.nodes:,} nodes" if found.nodes else "an idle fleet (not measured in this run)")
    lines = [
        "## The ceiling of one Redis primary",
        "",
        "Redis runs every script and every cross-process frame on one core. Computed from this run's figures:",
        "",
        "| | figure | from |",
        "|---|---|---|",
        f"| Redis CPU per job, the scripts (`job_submit` + `job_finish`) | {fmt(found.scripts_ms, 3)} ms "
        f"({fmt(found.scripts_usec, 0)} µs inside commands) | the full path at saturation, one process: `INFO cpu` "
        "(`commandstats`) |",
        f"| Redis CPU per job, the channel layer when its frames cross processes | {fmt(found.layer_ms, 3)} ms "
        "| the plain pub/sub variant (every frame through Redis) less the shipped stack |",
        f"| Redis CPU per job, both{layer} | **{fmt(found.job_ms, 3)} ms** | |",
        f"| Redis CPU of {idle} (heartbeats every 15 s, the worker's summary each second, its ticks) "
        f"| {fmt(found.idle_cores, 3)} cores | the fleet watched, nobody watching, less the pair's round trips |",
        f"| jobs per second one Redis primary carries, its core saturated | **{fmt(found.jobs_per_s, 0)}** "
        "| (1 core − the idle fleet) ÷ Redis CPU per job |",
        f"| jobs per second one server process carries at saturation, its frames crossing processes "
        f"| {fmt(found.per_process, 0)} ({fmt(found.per_process_alone, 0)} when all in one process) "
        "| the plain pub/sub variant (the shipped stack) |",
        f"| server processes one Redis primary serves, each as loaded as Redis | **{fmt(found.processes, 1)}** | "
        "the two above |",
        "",
        f"So at about {fmt(found.processes, 0)} server processes (one core each) Redis's core is as busy as theirs; "
        "run both well below saturation (half is a fair planning figure: the ratio is the same). Past that "
        "ceiling, `docs/deployment.md` (\"Past one Redis\"): the channel layer on its own Redis first (it takes the "
        f"layer's {fmt(found.layer_ms, 3)} ms per job off the primary), then cells by region or tenant, each with "
        "its own primary and Sentinel.",
        "",
    ]
    return lines
