"""A py-spy profile of the full path's server at saturation, when a target is missed
(``BENCH_PROFILE=auto``), always, or never: where a round trip's server CPU goes, by part of the
stack (``bench/profile.py`` records and sums up).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from bench import loadgen, profile, targets
from bench.phases import Bench, Config, Phase, Report, log, make_probe, window_figures
from bench.procs import LOG_DIR

ROOT_FRAMES = profile.ROOT_FRAMES


def reason(bench: Bench) -> str:
    """Why the profile is taken; empty when it is not."""
    if bench.params.profile == "always":
        return "always"
    missed = targets.missed(bench.report)
    if bench.params.profile == "auto" and missed:
        return "missed: " + "; ".join(missed)
    return ""


async def profile_one(config: Config, bench: Bench) -> tuple[profile.Profile, dict[str, float]]:
    output = LOG_DIR / f"profile-{config.key.replace(':', '-')}.txt"
    output.unlink(missing_ok=True)
    probe = make_probe(config, bench.client)
    recorder = profile.record(config.processes[0].pid, bench.params.profile_s, output)
    if recorder is None:
        return profile.Profile(error="py-spy is not installed (pip install -r requirements-test.txt)"), {}
    window = await loadgen.closed_loop(config.pairs, warmup=0.2, seconds=bench.params.profile_s, probe=probe)
    _, stderr = await asyncio.to_thread(recorder.communicate)
    result = profile.summarise(output)
    if not result.samples:
        result.error = stderr.decode(errors="replace")[-500:]
    return result, window_figures(window, config)


async def measure(bench: Bench) -> None:
    why = reason(bench)
    if not why:
        return
    bench.report.results[PHASE.name] = why
    fulls = [config for config in bench.configs if not config.floor]
    for config in {fulls[0].key: fulls[0], fulls[-1].key: fulls[-1]}.values():  # shipped, last variant
        log(f"  profiling {config.key} at saturation with py-spy ({bench.params.profile_s:.0f} s)")
        config.profile = await profile_one(config, bench)


def section(report: Report) -> list[str]:
    profiled = [c for c in report.configs if c.profile is not None]
    if not profiled:
        return []
    lines = ["## Profile of the scheduler server at saturation (py-spy)", "",
             f"Taken because: {report.results[PHASE.name]}.", ""]
    add = lines.append
    for config in profiled:
        prof: Any
        prof, figures = config.profile
        if not prof.samples:
            add(f"- {config.label}: no profile ({prof.error.strip()})")
            continue
        cpu_ms = figures.get("server_cpu_ms", math.nan)
        add(f"**{config.label}**: {prof.samples:,} samples over {report.params.profile_s:g} s at "
            f"{figures.get('rate', math.nan):.0f} jobs/s, {cpu_ms:.3f} ms server CPU per job. Where it goes "
            "(each sample charged to the innermost frame of a known part):")
        add("")
        add("| part | share of samples | ms of CPU per job |")
        add("|---|---|---|")
        for part, n in prof.parts.most_common():
            add(f"| {part} | {n / prof.samples:.1%} | {cpu_ms * n / prof.samples:.3f} |")
        add("")
        add("Functions by inclusive share (top 30; the process's root frames left out):")
        add("")
        add("| function | inclusive | ms per job |")
        add("|---|---|---|")
        shown = 0
        for name, n in prof.inclusive.most_common():
            if name.startswith(ROOT_FRAMES):
                continue
            add(f"| `{name}` | {n / prof.samples:.1%} | {cpu_ms * n / prof.samples:.3f} |")
            shown += 1
            if shown >= 30:
                break
        add("")
        add("Hottest leaves (self time, top 12): " + "; ".join(
            f"`{name}` {n / prof.samples:.1%}" for name, n in prof.leaf.most_common(12)) + ".")
        add("")
    return lines


PHASE = Phase(
    name="profile",
    title=lambda bench: f"py-spy profile of the full path at saturation: {reason(bench) or 'not needed'}",
    needs="pairs",
    measure=measure,
    section=section,
    place=60,
)
