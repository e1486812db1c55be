"""Where a round trip's time goes: round trips one at a time (the pairs taking turns), so each
stage is timed on a quiet server without queueing — the browser's frame until the node reads its
job (forward), the node's answer until the browser reads the result (back) — for the no-hop relay,
the relay with the design's two script calls, and the full path.
"""

from __future__ import annotations

import math
from typing import Any

from bench import loadgen, phase_pick
from bench.markdown import fmt
from bench.phases import Bench, Config, Phase, Report
from fleetsim.stats import percentile

CONFIGS = ("relay-pubsub-nohop", "relay-calls", "full")


def figures(samples: list[Any], lost: int) -> dict[str, float]:
    """Medians of a one-at-a-time run: the browser's frame to the node (forward), the node's
    answer to the browser (back), and the whole round trip, in ms."""
    ok = [s for s in samples if s.ok and not math.isnan(s.assigned)]
    return {
        "forward": percentile([s.assigned - s.started for s in ok], 0.5) * 1e3,
        "back": percentile([s.ended - s.answered for s in ok], 0.5) * 1e3,
        "node": percentile([s.answered - s.assigned for s in ok], 0.5) * 1e3,
        "p50": percentile([s.latency for s in ok], 0.5) * 1e3,
        "lost": float(lost),
    }


async def measure(bench: Bench) -> None:
    async def one(config: Config) -> dict[str, float]:
        samples, lost = await loadgen.one_at_a_time(config.pairs, count=bench.params.seq_jobs)
        return figures(samples, lost)

    await bench.take_turns(
        PHASE.name, one,
        lambda f: f"to the node {f['forward']:.3f} ms, back {f['back']:.3f} ms, whole {f['p50']:.3f} ms",
        keys=CONFIGS,
    )


def section(report: Report) -> list[str]:
    seq = [report.config(key) for key in CONFIGS]
    if not all(c.windows.get(PHASE.name) for c in seq):
        return []
    nohop, calls, full = seq
    lines = [
        "## Where a round trip's time goes: one at a time",
        "",
        f"{report.params.seq_jobs:,} round trips per configuration and round, one after another (the pairs taking "
        "turns), so each stage is timed on a quiet server without queueing: from the browser's frame to the node "
        "reading its job, and from the node's answer to the browser reading the result (the load generator's clock).",
        "",
        f"| | {nohop.label} | {calls.label} | {full.label} | full path − relay with calls |",
        "|---|---|---|---|---|",
    ]
    for name, label in (("forward", "browser's frame → the node has the job (ms)"),
                        ("back", "node's answer → the browser has the result (ms)"),
                        ("p50", "whole round trip (ms)")):
        a, b, c = (x.figure(PHASE.name, name) for x in seq)
        lines.append(f"| {label} | {fmt(a, 3)} | {fmt(b, 3)} | {fmt(c, 3)} | {c - b:+.3f} |")
    small = phase_pick.fleets(report)[0]
    empty = percentile(small.empty_call, 0.5) * 1e3
    submit, finish = percentile(small.submit, 0.5) * 1e3, percentile(small.finish, 0.5) * 1e3
    lines += [
        "",
        f"The two script calls, timed in-process in the pick-and-reserve phase ({small.nodes} nodes, p50): an empty "
        f"script with the job's audio as its argument {empty:.3f} ms; `job_submit.lua` {submit:.3f} ms "
        f"({submit - empty:+.3f}); `job_finish.lua` {finish:.3f} ms ({finish - empty:+.3f}). So of the full path's "
        f"{full.figure(PHASE.name, 'p50') - calls.figure(PHASE.name, 'p50'):+.3f} ms over the relay with calls, about "
        f"{submit + finish - 2 * empty:.3f} ms is the scripts' own work (routing, the job record and its story, "
        "the dispatch observations, the lookup index); the rest is the three frames the protocol adds per job "
        "(`ui_event` DISPATCHED before the node is sent its job, ASR_FINAL and NMT_DONE before the result), "
        "read by the browser too, and our consumers' checks and bookkeeping.",
        "",
    ]
    return lines


PHASE = Phase(
    name="seq",
    title=lambda bench: f"one round trip at a time, {bench.params.seq_jobs} each per round: where the time goes",
    needs="pairs",
    measure=measure,
    section=section,
    place=10,
)
