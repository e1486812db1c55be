"""Redis commands per round trip: a ``MONITOR`` capture over a fixed number of round trips per
configuration (the echo has none), less the background a capture with no load sees.

``INFO commandstats`` deltas (every command, script internals included) are taken by the
saturation windows; this phase splits top-level calls from what the scripts run inside.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench import loadgen, procs
from bench.phases import Bench, Config, Phase, Report

BACKGROUND_S = 6.0  # MONITOR with no load: what every stack's worker and idle layers send


@dataclass
class JobCommands:
    """A MONITOR capture seen as the round trips' own commands: script calls other than the
    job's (``job_*``; the default layer's own ``eval``) are background (heartbeats of the fake
    nodes, worker ticks) and set apart with what they ran; other top-level commands are
    counted less what a no-load capture saw in as long (health-check pings, idle polls)."""

    top: Counter[str]
    internal: Counter[str]
    by_script: Counter[str]
    set_apart: Counter[str]
    seconds: float


def background_script(name: str) -> bool:
    return name != "eval" and not name.startswith("job_")


def job_commands(count: procs.MonitorCount, background: procs.MonitorCount) -> JobCommands:
    scale = count.seconds / background.seconds if background.seconds else 0.0
    top: Counter[str] = Counter()
    set_apart: Counter[str] = Counter()
    for name, n in count.top.items():
        if name.startswith("evalsha ") and background_script(name[8:]):
            set_apart[name] += n
        elif name.startswith("evalsha ") or name == "eval":
            top[name] += n
        else:
            left = n - background.top.get(name, 0) * scale
            if left > 0.5:
                top[name] = round(left)
    internal: Counter[str] = Counter()
    by_script: Counter[str] = Counter()
    for (script, command), n in count.internal.items():
        if background_script(script):
            continue
        internal[command] += n
        by_script[script] += n
    return JobCommands(top, internal, by_script, set_apart, count.seconds)


def script_shas() -> dict[str, str]:
    from bench.floor_asgi import FLOOR_SHA
    from dispatch.store import SCRIPTS_DIR, script_sha

    return {
        script_sha(path.stem): path.stem for path in SCRIPTS_DIR.glob("*.lua") if not path.stem.startswith("_")
    } | {FLOOR_SHA: "job_floor_call"}


def per_job(config: Config, name: str) -> float:
    """Top-level calls of ``name`` per round trip."""
    if config.monitor is None or not config.counted:
        return math.nan
    return float(config.monitor.top[name] / config.counted)


def top_level(config: Config) -> float:
    """All top-level calls per round trip (none for the echo)."""
    if config.monitor is None or not config.counted:
        return 0.0 if config.key == "echo" else math.nan
    return float(sum(config.monitor.top.values()) / config.counted)


async def measure(bench: Bench) -> None:
    shas = script_shas()
    monitor = procs.Monitor(shas).start()
    await asyncio.sleep(BACKGROUND_S)
    background = monitor.stop()
    for config in bench.configs:
        if config.key == "echo":
            continue
        monitor = procs.Monitor(shas).start()
        config.counted = await loadgen.counted(config.pairs, total=bench.params.count_jobs)
        config.monitor = job_commands(monitor.stop(), background)


def section(report: Report) -> list[str]:
    lines = ["## Redis commands per round trip, by command (MONITOR)", ""]
    for config in report.configs:
        if config.monitor is None:
            continue
        count: Any = config.monitor
        per = max(1.0, config.counted)
        top = ", ".join(f"{name} {n / per:.2f}" for name, n in count.top.most_common() if n / per >= 0.005)
        inside = ", ".join(f"{name} {n / per:.2f}" for name, n in count.internal.most_common() if n / per >= 0.005)
        by_script = ", ".join(f"{name} {n / per:.1f}" for name, n in count.by_script.most_common() if n / per >= 0.05)
        lines.append(f"- **{config.label}** ({config.counted:.0f} round trips in {count.seconds:.1f} s): "
                     f"top-level: {top or 'none'}.")
        if inside:
            lines.append(f"  Inside scripts: {inside} (by script: {by_script}).")
        if count.set_apart:
            lines.append("  Set apart (not per round trip): " + ", ".join(
                f"{name} ×{n}" for name, n in count.set_apart.most_common()) + ".")
    lines += [
        "",
        "Set apart: script calls that are not a job's (the fake nodes' heartbeats every 15 s, every stack's "
        f"worker ticks). Other background (health-check pings, idle polls), captured for {BACKGROUND_S:g} s with "
        "no load, is subtracted pro rata.",
        "",
    ]
    return lines


PHASE = Phase(
    name="commands",
    title=lambda bench: f"Redis commands per round trip: MONITOR over {bench.params.count_jobs} round trips each",
    needs="pairs",
    measure=measure,
    section=section,
    place=40,
)
