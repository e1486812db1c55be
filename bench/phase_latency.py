"""Latency at a fixed offered load (half the default-layer relay's saturation rate in the same
run): round trips start on a fixed schedule, round-robin over the pairs, and each is measured from
its scheduled start, so a late sender is not hidden.
"""

from __future__ import annotations

from bench import loadgen
from bench.phases import Bench, Config, Phase, make_probe, window_figures


async def measure(bench: Bench) -> None:
    params = bench.params

    async def one(config: Config) -> dict[str, float]:
        window = await loadgen.open_loop(
            config.pairs, rate=bench.report.rate, warmup=params.lat_warmup_s, seconds=params.lat_s,
            probe=make_probe(config, bench.client),
        )
        return window_figures(window, config)

    await bench.take_turns(
        PHASE.name, one, lambda f: f"p50 {f['p50']:.2f} ms  p99 {f['p99']:.2f} ms, failed {f['failed']:.0f}"
    )


PHASE = Phase(
    name="lat",
    title=lambda bench: f"latency at a fixed {bench.report.rate:.0f} round trips/s "
    "(half the default-layer relay's saturation)",
    needs="pairs",
    measure=measure,
)
