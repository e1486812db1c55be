"""Saturation: every configuration's pairs in a closed loop (each browser sends its next utterance
when the last is answered), round trips per second and what each costs the server and Redis.

It also fixes the latency phase's offered load: half the default-layer relay's saturation rate.
"""

from __future__ import annotations

from bench import loadgen
from bench.phases import Bench, Config, Phase, make_probe, window_figures


async def measure(bench: Bench) -> None:
    params = bench.params

    async def one(config: Config) -> dict[str, float]:
        window = await loadgen.closed_loop(
            config.pairs, warmup=params.sat_warmup_s, seconds=params.sat_s, probe=make_probe(config, bench.client)
        )
        return window_figures(window, config)

    await bench.take_turns(
        PHASE.name, one,
        lambda f: f"{f['rate']:8.0f}/s server {f['server_cpu_ms']:.3f} ms CPU per round trip, failed {f['failed']:.0f}",
    )
    bench.report.rate = bench.report.config("relay-default").figure(PHASE.name, "rate") / 2


PHASE = Phase(
    name="sat",
    title=lambda bench: f"saturation: {bench.params.pairs} pairs in closed loop, {bench.params.rounds} round(s)",
    needs="pairs",
    measure=measure,
)
