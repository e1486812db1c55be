"""What turn affinity and outlier ejection cost, in-process against real Redis.

Run alone (about a minute on 2 cores; a private Redis when ``REDIS_URL`` is unset):
``.venv/bin/python -m schedulerproj.launch exec -- .venv/bin/python -m bench.eject``.
Knobs: ``BENCH_PICK_NODES`` (1000), ``BENCH_PICK_JOBS`` (1000), ``BENCH_EJECTIONS`` (200).

- pick-and-reserve (``job_submit.lua``) per job at 10 and N live nodes of 14 languages (273
  pools each), as ``bench/phase_pick.py`` measures it: each utterance a turn of its own (the turn's
  node is looked up and not found), and each a piece of one long turn (the turn's node takes
  it). Redis time per job from ``INFO commandstats`` (script internals included);
- a failed attempt that ejects its node (the half-of-a-pool check over the node's 273 pools,
  then the node added to each pool's ejected set), against one that does not
  (``SCHEDULER_EJECT_AFTER=0``), and ``node_eject_end`` (out of the 273 sets again).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from dataclasses import replace
from typing import Any

from bench import loadgen
from bench.phase_pick import FleetFigures, ScriptTimer, _cut, _session, register_fleet, use_prefix
from bench.procs import RedisSnapshot, delete_matching, redis_client
from bench.run import BASE_DIR, bench_database_url


def ms(values: list[float], q: float = 50) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


async def submit_rounds(fleet: FleetFigures, jobs: int, *, pieces: bool) -> tuple[float, float, float, float]:
    """``jobs`` × (``job_submit``, ``job_finish``): p50 and p99 of the ``job_submit.lua`` calls
    (ms), Redis µs and Redis commands per job (both scripts, their internals included).
    ``pieces``: every job a length cut of one turn."""
    from dispatch import protocol
    from dispatch.jobs import job_finish, job_submit

    use_prefix(fleet.prefix)
    client = redis_client()
    spec = replace(_session(), session_id=f"s-{uuid.uuid4().hex[:8]}")

    async def dispatched(_job: Any) -> None:
        return None

    before = RedisSnapshot.take(client)
    with ScriptTimer() as timer:
        for index in range(jobs):
            cut = replace(_cut(index), manual=not pieces, max_duration=pieces)
            if not pieces:
                cut = replace(cut, turn_id=uuid.uuid4().hex)
            job = await job_submit(spec=spec, cut=cut, on_dispatched=dispatched)
            assign = {"job_id": job.job_id, "attempt_id": 1, "session_id": spec.session_id,
                      "utterance_index": index, "trace_id": spec.trace_id}
            result = protocol.decode_node_frame(loadgen.result_frame(assign, job.node_id))
            await job_finish(node_id=job.node_id, result=result)  # type: ignore[arg-type]
    delta = RedisSnapshot.take(client).minus(before)
    submits = timer.durations["job_submit"]
    return ms(submits), ms(submits, 99), delta.usec.get("evalsha", 0) / jobs, delta.total_calls / jobs


async def failure_rounds(fleet: FleetFigures, count: int, *, eject: bool) -> dict[str, list[float]]:
    """``count`` × (a job placed, its attempt failed: with ``eject`` the node is ejected, then
    its ejection ended). Seconds per call, and Redis µs per call, by script."""
    from django.conf import settings

    from dispatch import store
    from dispatch.jobs import job_reassign, job_submit
    from dispatch.nodes import node_eject_end

    use_prefix(fleet.prefix)
    settings.SCHEDULER_EJECT_AFTER = 1 if eject else 0
    settings.SCHEDULER_EJECT_BASE_S = settings.SCHEDULER_EJECT_MAX_S = 600
    client = redis_client()
    spec = replace(_session(), session_id=f"s-{uuid.uuid4().hex[:8]}")
    found: dict[str, list[float]] = {"reassign": [], "reassign_usec": [], "eject_end": [], "eject_end_usec": []}

    async def dispatched(_job: Any) -> None:
        return None

    for index in range(count):
        job = await job_submit(spec=spec, cut=_cut(index), on_dispatched=dispatched)
        before = RedisSnapshot.take(client)
        started = time.perf_counter()
        await job_reassign(job_id=job.job_id, reason="failed", node_id=job.node_id, code="PROCESSING_ERROR")
        found["reassign"].append(time.perf_counter() - started)
        found["reassign_usec"].append(RedisSnapshot.take(client).minus(before).usec.get("evalsha", 0))
        ejected = await store.async_client().hexists(f"{fleet.prefix}:node:{job.node_id}", "eject_until")
        if eject and not ejected:
            raise RuntimeError("the failure did not eject its node")
        await store.async_client().delete(f"{fleet.prefix}:job:{job.job_id}")  # the job itself is not measured
        if eject:
            before = RedisSnapshot.take(client)
            started = time.perf_counter()
            await node_eject_end(node_id=job.node_id)
            found["eject_end"].append(time.perf_counter() - started)
            found["eject_end_usec"].append(RedisSnapshot.take(client).minus(before).usec.get("evalsha", 0))
    return found


async def measure(prefix: str, nodes: int, jobs: int, ejections: int) -> None:
    fleets = [FleetFigures(nodes=n, prefix=f"{prefix}-eject{n}") for n in (10, nodes)]
    for fleet in fleets:
        delete_matching(redis_client(), f"{fleet.prefix}:*")
        await register_fleet(fleet)
        print(f"registered {fleet.nodes} nodes in {fleet.register_s:.1f} s", flush=True)
    try:
        for fleet in fleets:
            await submit_rounds(fleet, 50, pieces=False)  # warm
        rows = {}
        for pieces in (False, True):
            for fleet in fleets:
                rows[(fleet.nodes, pieces)] = await submit_rounds(fleet, jobs, pieces=pieces)
        print("\njob_submit.lua per job (each followed by job_finish.lua; slots free)")
        print(f"{'utterances':<22}{'nodes':>7}{'p50 ms':>9}{'p99 ms':>9}{'Redis µs/job':>14}{'commands/job':>14}")
        for (count, pieces), (p50, p99, usec, calls) in rows.items():
            label = "pieces of one turn" if pieces else "each its own turn"
            print(f"{label:<22}{count:>7}{p50:>9.3f}{p99:>9.3f}{usec:>14.1f}{calls:>14.1f}")
        small = fleets[0]
        if not ejections:
            return
        plain = await failure_rounds(small, ejections, eject=False)
        ejecting = await failure_rounds(small, ejections, eject=True)
        print(f"\na failed attempt, job_reassign.lua ({small.nodes} nodes of 273 pools each; p50)")
        print(f"  not ejecting: {ms(plain['reassign']):.3f} ms, Redis {statistics.median(plain['reassign_usec']):.0f} µs")
        print(f"  ejecting:     {ms(ejecting['reassign']):.3f} ms, Redis {statistics.median(ejecting['reassign_usec']):.0f} µs")
        print(f"node_eject_end.lua: {ms(ejecting['eject_end']):.3f} ms, Redis {statistics.median(ejecting['eject_end_usec']):.0f} µs")
    finally:
        for fleet in fleets:
            delete_matching(redis_client(), f"{fleet.prefix}:*")


def main() -> None:
    if not os.environ.get("REDIS_URL"):
        sys.exit("REDIS_URL is unset: run under `python -m schedulerproj.launch exec --` (a private Redis).")
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    (BASE_DIR / "var" / "bench").mkdir(parents=True, exist_ok=True)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="schedulerproj.settings", SCHEDULER_REDIS_PREFIX=prefix,
        SCHEDULER_NODE_AUTH="open", DATABASE_URL=bench_database_url(), LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)

    settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"{prefix}:layer"
    nodes = int(os.environ.get("BENCH_PICK_NODES", "1000"))
    jobs = int(os.environ.get("BENCH_PICK_JOBS", "1000"))
    ejections = int(os.environ.get("BENCH_EJECTIONS", "200"))
    asyncio.run(measure(prefix, nodes, jobs, ejections))


if __name__ == "__main__":
    main()
