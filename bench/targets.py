"""The targets the bench judges (and figures shown beside them): the full path against the
floors' throughput and latency, one script call to pick and one to finish per job,
pick-and-reserve at 10,000 nodes against 10, and the fleet watched (``fleet_watched_report``)."""

from __future__ import annotations

from bench import phase_idle_fleet, phase_pick
from bench.phase_redis_commands import per_job
from bench.phases import Report
from fleetsim.stats import percentile

P50_RATIO, P99_RATIO = 1.2, 2.0

Row = tuple[str, str, bool | None]  # target, what was measured, met (None: shown beside, not judged)


def rows(report: Report) -> list[Row]:
    """The targets of the phases that ran (every phase when ``report.ran`` is empty)."""
    from bench.fleet_watched_report import target_rows

    ran = set(report.ran)
    found: list[Row] = []
    if not ran or {"sat", "lat", "commands"} <= ran:
        found += path_rows(report)
    if not ran or "pick" in ran:
        found += pick_rows(report)
    return found + target_rows(report)


def path_rows(report: Report) -> list[Row]:
    full, default = report.config("full"), report.config("relay-default")
    memory, shipped = report.config("relay-memory"), report.config("relay-pubsub")
    found: list[Row] = []
    f_rate, d_rate, m_rate = full.figure("sat", "rate"), default.figure("sat", "rate"), memory.figure("sat", "rate")
    found.append((
        "full path jobs/s at saturation ≥ 3× the default-layer bare relay",
        f"{f_rate:.0f} / {d_rate:.0f} = {f_rate / d_rate:.2f}×", f_rate >= 3 * d_rate,
    ))
    found.append((
        "stretch: full path jobs/s ≥ the in-memory layer's bare relay",
        f"{f_rate:.0f} / {m_rate:.0f} = {f_rate / m_rate:.2f}×", f_rate >= m_rate,
    ))
    f_p50, s_p50 = full.figure("lat", "p50"), shipped.figure("lat", "p50")
    found.append((
        f"round-trip p50 ≤ 1.3× the shipped layer's bare relay p50 (at {report.rate:.0f}/s)",
        f"{f_p50:.2f} / {s_p50:.2f} ms = {f_p50 / s_p50:.2f}×", f_p50 <= 1.3 * s_p50,
    ))
    c_p50 = report.config("relay-calls").figure("lat", "p50")
    found.append((
        "beside it: the same relay with the design's two script calls and nothing else, against the shipped relay; "
        "the full path against it",
        f"{c_p50:.2f} / {s_p50:.2f} ms = {c_p50 / s_p50:.2f}×; {f_p50:.2f} / {c_p50:.2f} ms = {f_p50 / c_p50:.2f}×",
        None,
    ))
    submit, finish = per_job(full, "evalsha job_submit"), per_job(full, "evalsha job_finish")
    found.append((
        "one script call to pick and reserve, one to finish, per job (slots free)",
        f"{submit:.2f} job_submit.lua + {finish:.2f} job_finish.lua per job",
        abs(submit - 1) < 0.01 and abs(finish - 1) < 0.01,
    ))
    return found


def pick_rows(report: Report) -> list[Row]:
    found: list[Row] = []
    small, large = phase_pick.fleets(report)[0], phase_pick.fleets(report)[-1]
    for q, limit, label in ((0.5, P50_RATIO, "p50"), (0.99, P99_RATIO, "p99")):
        a, b = percentile(small.submit, q) * 1e3, percentile(large.submit, q) * 1e3
        found.append((
            f"pick-and-reserve {label} at {large.nodes:,} nodes ≤ {limit}× at {small.nodes}",
            f"{b:.3f} / {a:.3f} ms = {b / a:.2f}×", b <= limit * a,
        ))
    found.append((
        "CPU per heartbeat, beside it",
        f"{small.nodes} nodes: {small.heartbeat_cpu_s * 1e3:.3f} ms Python + {small.heartbeat_redis_usec:.0f} µs Redis; "
        f"{large.nodes:,}: {large.heartbeat_cpu_s * 1e3:.3f} ms + {large.heartbeat_redis_usec:.0f} µs"
        + (f"; over a socket: {phase_idle_fleet.fleets(report)[1].heartbeat_cpu_ms:.3f} ms server CPU"
           if phase_idle_fleet.PHASE.name in report.results else ""),
        None,
    ))
    return found


def missed(report: Report) -> list[str]:
    """Targets missed so far (a phase still to run only reports beside them)."""
    try:
        judged = [row for row in rows(report) if row[2] is not None]
    except (StopIteration, ZeroDivisionError, IndexError, KeyError):
        return []
    return [f"{name} ({measured})" for name, measured, met in judged if met is False]
