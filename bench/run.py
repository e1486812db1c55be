"""``make bench``: the stack's own floors and our full path, measured in one run, on one machine
and one Redis; prints a table and writes ``BENCHMARKS.md``.

Floors (``bench/floor_*.py``, under the same daphne entry conditions as ours): a daphne echo, and
the bare relay of one job (browser socket → consumer → ``channel_layer.send`` → node consumer →
node, and back) built the naive Channels way, through the default Redis layer, the layer we ship
(pub/sub) and the in-memory layer. Full path: real ``schedulerproj.server`` and
``scheduler_worker`` processes; an ``utterance`` in, ``job_assign`` at the node, ``job_result``
back, ``translation_result`` at the browser. See ``bench/README.md`` for the knobs.

This module is the order of the phases and what they need started; each phase is a module of
its own (``bench/phase_*.py``, see ``bench/phases.py``), and ``bench/report.py`` writes the report.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
import uuid

from bench import (
    configs,
    phase_fleet_watched,
    phase_idle_fleet,
    phase_latency,
    phase_pick,
    phase_profile,
    phase_redis_commands,
    phase_saturation,
    phase_stages,
    procs,
    report,
)
from bench.knobs import BASE_DIR, Params
from bench.phases import Bench, Phase, Report, log

# In the order they run. A phase that needs only Redis runs before any server starts; the
# servers start before the first that needs them, the pairs open before the first that needs
# them and close before the first that does not.
PHASES: tuple[Phase, ...] = (
    phase_pick.PHASE,
    phase_saturation.PHASE,
    phase_latency.PHASE,  # at half the default relay's saturation rate: after saturation
    phase_stages.PHASE,
    phase_redis_commands.PHASE,
    phase_profile.PHASE,  # when a target is missed so far
    phase_idle_fleet.PHASE,
    phase_fleet_watched.PHASE,
)


def chosen(params: Params) -> tuple[Phase, ...]:
    """The phases ``BENCH_PHASES`` names (``-`` or ``_``), in their order; every one when unset."""
    if not params.phases:
        return PHASES
    names = {phase.name.replace("-", "_"): phase for phase in PHASES}
    unknown = [name for name in params.phases if name not in names]
    if unknown:
        sys.exit(f"BENCH_PHASES: no phase {', '.join(unknown)}; the phases are {', '.join(names)}")
    return tuple(phase for phase in PHASES if phase.name.replace("-", "_") in params.phases)


async def measure(bench: Bench, child_env: dict[str, str], phases: tuple[Phase, ...]) -> None:
    bench.report.redis_version = str(bench.client.info("server").get("redis_version", "?"))
    steps = len(phases) + 1  # and starting the servers
    step = 0
    pairs_open = False
    try:
        for phase in phases:
            if phase.needs != "redis" and not bench.floors:
                step += 1
                log(f"[{step}/{steps}] starting servers: three floor servers, the scheduler (+ worker)")
                configs.start(bench, child_env)
            if phase.needs == "pairs" and not pairs_open:
                await configs.open_pairs(bench)
                pairs_open = True
            elif phase.needs != "pairs" and pairs_open:
                await configs.close_pairs(bench)
                pairs_open = False
            step += 1
            log(f"[{step}/{steps}] {phase.title(bench)}")
            await phase.measure(bench)
        if pairs_open:
            await configs.close_pairs(bench)
    finally:
        configs.stop(bench)
        procs.delete_matching(bench.client, f"{bench.prefix}-*")


def main() -> None:
    if not os.environ.get("REDIS_URL"):
        sys.exit("REDIS_URL is unset: run `make bench` (it starts a private Redis) or set REDIS_URL.")
    child_env = dict(os.environ)  # what the servers get: this process changes its own below
    params = Params.from_env()
    phases = chosen(params)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    (BASE_DIR / "var" / "bench").mkdir(parents=True, exist_ok=True)
    migrate = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput", "-v", "0"],
        cwd=BASE_DIR, env=configs.full_env(child_env, f"{prefix}-migrate", {}), capture_output=True, text=True,
    )
    if migrate.returncode != 0:
        sys.exit(f"migrate failed:\n{migrate.stderr[-2000:]}")
    # This process hosts the load generator and the in-process pick test: quiet logs, own prefix.
    os.environ.update(
        DJANGO_SETTINGS_MODULE="schedulerproj.settings", SCHEDULER_REDIS_PREFIX=f"{prefix}-pick",
        SCHEDULER_NODE_AUTH="open", DATABASE_URL=configs.bench_database_url(), LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.conf import settings

    settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"{prefix}-pick:layer"
    import uvloop

    from schedulerproj import gc_policy

    # The load generator holds as many sockets as the server it measures (10,000 fleet nodes):
    # with Python's default collector its own loop stalled up to 453 ms in a watched window, and
    # the round trips it timed took the stall for the server's.
    gc_policy.settle()

    found = Report(params=params, started=datetime.datetime.now(datetime.UTC), load_before=report.load_average(),
                   ran=[phase.name for phase in phases])
    bench = Bench(params=params, prefix=prefix, client=procs.redis_client(), report=found)
    started = time.monotonic()
    uvloop.run(measure(bench, child_env, phases))
    found.seconds = time.monotonic() - started
    found.load_after = report.load_average()
    params.out.write_text(report.render(found, phases))
    print(report.console_table(found))
    print(f"\nwrote {params.out}")


if __name__ == "__main__":
    main()
