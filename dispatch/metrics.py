"""``/metrics``: Prometheus text, fleet-wide whichever process is scraped.

Every number is read from Redis: the scripts' counters, the workers' liveness, the fleet
summary the worker computes once per interval (nodes by status, slots), and each server
process's published event-loop lag. So two processes scraped after the same traffic answer the
same, and a scrape reads O(counters + processes), never every node.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.http import HttpRequest, HttpResponse

from dispatch import fleet, loop_lag, selectors

# Upper bounds of the dispatch latency buckets, ms; the Lua side (_lib.lua DISPATCH_LE_MS)
# counts into the same ones.
DISPATCH_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
JOB_OUTCOMES = ("result", "missing", "error", "cancelled")
NODE_STATUSES = ("registering", "ready", "draining", "offline")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float | int]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels} {value}" for labels, value in samples]
    return lines


def _by_prefix(counters: dict[str, int], prefix: str, label: str) -> list[tuple[str, int]]:
    return [
        (f'{{{label}="{_label(name.removeprefix(prefix))}"}}', value)
        for name, value in sorted(counters.items())
        if name.startswith(prefix)
    ]


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g}"


def _tenant_jobs(counters: dict[str, int]) -> list[tuple[str, int]]:
    samples = []
    for name, value in sorted(counters.items()):
        if name.startswith("tenant_jobs:"):
            tenant, _, outcome = name.removeprefix("tenant_jobs:").rpartition(":")
            samples.append((f'{{tenant="{_label(tenant)}",outcome="{_label(outcome)}"}}', value))
    return samples


def _lag_family(lags: dict[str, loop_lag.LagHistogram]) -> list[str]:
    name = "scheduler_event_loop_lag_seconds"
    lines = [
        f"# HELP {name} How late each tick of a server process's event loop ran"
        f" (a {loop_lag.TICK_S * 1000:g} ms timer), by process.",
        f"# TYPE {name} histogram",
    ]
    for process, histogram in sorted(lags.items()):
        label = f'process="{_label(process)}"'
        lines += [f'{name}_bucket{{{label},le="{le}"}} {count}' for le, count in histogram.cumulative()]
        lines += [f"{name}_sum{{{label}}} {histogram.sum_s:g}", f"{name}_count{{{label}}} {histogram.count}"]
    return lines


def metrics_text(
    summary: fleet.Summary, live: fleet.Live, lags: dict[str, loop_lag.LagHistogram],
    tenant_sessions: dict[str, int] | None = None,
) -> str:
    """The fleet in Prometheus text format (0.0.4)."""
    counters = live.counters
    buckets, cumulative = [], 0
    for bound in DISPATCH_BUCKETS_MS:
        cumulative += counters.get(f"dispatch_le:{bound}", 0)
        buckets.append((f'_bucket{{le="{_seconds(bound)}"}}', cumulative))
    cumulative += counters.get("dispatch_le:inf", 0)
    buckets.append(('_bucket{le="+Inf"}', cumulative))
    statuses = {status: summary.node_counts().get(status, 0) for status in NODE_STATUSES}
    lines = [
        "# HELP scheduler_dispatch_seconds Time from an utterance's cut to its job being placed on a node"
        " (measured as the slot is reserved; its job_assign is sent right after).",
        "# TYPE scheduler_dispatch_seconds histogram",
        *(f"scheduler_dispatch_seconds{suffix} {value}" for suffix, value in buckets),
        f"scheduler_dispatch_seconds_sum {_seconds(counters.get('dispatch_sum_ms', 0))}",
        f"scheduler_dispatch_seconds_count {cumulative}",
    ]
    lines += _family(
        "scheduler_jobs_total", "counter", "Jobs ended, by how they ended.",
        [(f'{{outcome="{outcome}"}}', counters.get(f"jobs_{outcome}", 0)) for outcome in JOB_OUTCOMES],
    )
    lines += _family(
        "scheduler_reassignments_total", "counter", "Jobs moved to another node after an attempt ended without a result.",
        [("", counters.get("reassignments", 0))],
    )
    lines += _family(
        "scheduler_no_available_node_total", "counter",
        "Jobs that found no ready node with a free slot, by the first pool of their route (none: empty route).",
        _by_prefix(counters, "no_available:", "pool"),
    )
    lines += _family(
        "scheduler_nodes", "gauge", "Nodes by status (offline ones for 15 minutes after they leave).",
        [(f'{{status="{_label(status)}"}}', count) for status, count in statuses.items()],
    )
    lines += _family(
        "scheduler_slots", "gauge", "Job slots of connected nodes: in use, and in all.",
        [('{state="used"}', summary.totals.get("slots_used", 0)), ('{state="total"}', summary.totals.get("slots_total", 0))],
    )
    lines += _family(
        "scheduler_node_full_total", "counter", "Dispatches that took a node's last free slot.",
        [("", counters.get("node_full", 0))],
    )
    lines += _family(
        "scheduler_node_ejections_total", "counter",
        "Nodes ejected (no new job for a while) after failed attempts in a row, by the last one: error or timeout.",
        _by_prefix(counters, "ejections:", "reason"),
    )
    lines += _family(
        "scheduler_nodes_ejected", "gauge", "Connected nodes ejected after failures right now.",
        [("", summary.totals.get("ejected", 0))],
    )
    lines += _family(
        "scheduler_frames_rejected_total", "counter", "Frames answered with an error, by error code.",
        _by_prefix(counters, "rejected:", "code"),
    )
    lines += _family(
        "scheduler_frames_ignored_total", "counter", "Frames the protocol lets pass unused, by type.",
        _by_prefix(counters, "ignored:", "type"),
    )
    lines += _family(
        "scheduler_workers_alive", "gauge", "scheduler_worker copies that reported in the last few seconds.",
        [("", live.workers_alive)],
    )
    lines += _family("scheduler_sessions", "gauge", "Open browser sessions.", [("", live.sessions)])
    lines += _family(
        "scheduler_jobs_in_flight", "gauge", "Jobs placed or waiting for a node, not yet ended.",
        [("", live.jobs_in_flight)],
    )
    lines += _lag_family(lags)
    lines += _family("scheduler_rooms", "gauge", "Open rooms.", [("", counters.get("rooms", 0))])
    lines += _family(
        "scheduler_room_members", "gauge", "Members of open rooms.", [("", counters.get("room_members", 0))]
    )
    lines += _family(
        "scheduler_tenant_sessions", "gauge", "Open browser sessions per tenant.",
        [(f'{{tenant="{_label(name)}"}}', count) for name, count in sorted((tenant_sessions or {}).items())],
    )
    lines += _family(
        "scheduler_tenant_audio_seconds_total", "counter", "Audio placed on nodes per tenant (its quota counts this).",
        [
            (f'{{tenant="{_label(name.removeprefix("tenant_audio_ms:"))}"}}', value / 1000)
            for name, value in sorted(counters.items())
            if name.startswith("tenant_audio_ms:")
        ],
    )
    lines += _family(
        "scheduler_tenant_jobs_total", "counter", "Jobs ended per tenant, by how they ended.", _tenant_jobs(counters)
    )
    return "\n".join(lines) + "\n"


async def metrics(request: HttpRequest) -> HttpResponse:
    (summary, live), lags = await fleet.fleet_scrape(), await loop_lag.loop_lags()
    tenants = await selectors.tenant_sessions()
    return HttpResponse(metrics_text(summary, live, lags, tenants), content_type=CONTENT_TYPE)
