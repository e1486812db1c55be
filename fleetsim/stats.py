"""What a simulated fleet saw, counted as the browsers and nodes see it: per language pair, the
utterances said (each one job), how they ended (results, missing results, errors by code), how
long each browser waited for its ending, and how many jobs reached a node on a later attempt
(reassignments); per fleet, the nodes' registrations, drops and closes. It makes the live line,
the summary and its JSON.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleetsim.browser import BrowserObserver, SimBrowser, job_label
from fleetsim.node import NodeObserver, SimNode

RECENT = 500  # waits the live line's percentiles are taken over
RATE_WINDOW_S = 10.0


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (``q`` in 0..1); NaN when there are no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class PairCounts:
    sessions: int = 0
    jobs: int = 0  # utterances said: one job each
    results: int = 0
    missing: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    waits: list[float] = field(default_factory=list)  # s, for results and missing results
    reassignments: int = 0  # job_assign frames with attempt_id > 1, as the nodes saw them
    lost: int = 0  # said, not ended, when the server closed their session's socket
    unended: int = 0  # said, not ended, when the run stopped
    repeated: int = 0  # a second ending, or one for an utterance never said
    refused: collections.Counter[str] = field(default_factory=collections.Counter)  # session_init refusals

    def add(self, other: PairCounts) -> None:
        for name in ("sessions", "jobs", "results", "missing", "reassignments", "lost", "unended", "repeated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.update(other.errors)
        self.refused.update(other.refused)
        self.waits.extend(other.waits)

    def as_json(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions, "jobs": self.jobs, "results": self.results, "missing": self.missing,
            "errors": dict(sorted(self.errors.items())), "ended": self.results + self.missing + sum(self.errors.values()),
            "wait_s": {name: _round(percentile(self.waits, q)) for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}
            | {"max": _round(max(self.waits, default=math.nan))},
            "reassignments": self.reassignments, "lost": self.lost, "unended": self.unended,
            "repeated": self.repeated, "sessions_refused": dict(sorted(self.refused.items())),
        }


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


@dataclass
class NodeCounts:
    simulated: int = 0
    flaky: int = 0
    registrations: int = 0
    reconnects: int = 0  # registrations after the first, with the node's id
    vanished: int = 0  # drops on purpose
    closed: collections.Counter[str] = field(default_factory=collections.Counter)  # by the server, by code
    assigned: int = 0
    answered: int = 0
    failed: int = 0  # answered with a failure on purpose
    kept: int = 0  # never answered on purpose
    cancels: collections.Counter[str] = field(default_factory=collections.Counter)  # job_cancel by reason


class Stats:
    """The counts of one run; its two observers are given to the nodes and the browsers."""

    def __init__(self, *, note: Callable[[str], None] = lambda text: None, story_url: str = "") -> None:
        self.pairs: dict[str, PairCounts] = collections.defaultdict(PairCounts)
        self.nodes = NodeCounts()
        self.refusals: collections.Counter[str] = collections.Counter()  # errors about no utterance
        self.recent_waits: collections.deque[float] = collections.deque(maxlen=RECENT)
        self.said_times: collections.deque[float] = collections.deque()
        self.note, self.story_url = note, story_url
        self.noted: set[str] = set()
        self.up: set[SimNode] = set()
        self.node_observer = _NodeTally(self)
        self.browser_observer = _SessionTally(self)

    def first(self, kind: str, text: str, job_id: str | None) -> None:
        """Tell once of the first job of a kind (a failover, an error code), with its story's address."""
        if kind in self.noted or not job_id:
            return
        self.noted.add(kind)
        self.note(f"{text}: {job_id}" + (f"  (its story: {self.story_url}{job_id}/)" if self.story_url else ""))

    def session_refused(self, browser: SimBrowser, frame: dict[str, Any]) -> None:
        self.pairs[browser.pair.label].refused[str(frame.get("code"))] += 1

    def total(self) -> PairCounts:
        total = PairCounts()
        for counts in self.pairs.values():
            total.add(counts)
        return total

    def live_line(self, elapsed: float) -> str:
        now = time.monotonic()
        while self.said_times and self.said_times[0] < now - RATE_WINDOW_S:
            self.said_times.popleft()
        rate = len(self.said_times) / max(1e-9, min(RATE_WINDOW_S, elapsed))
        total = self.total()
        errors = ", ".join(f"{code} {n}" for code, n in sorted(total.errors.items())) or "0"
        waits = list(self.recent_waits)
        return (
            f"{elapsed:6.0f} s  jobs/s {rate:5.1f}  results {total.results + total.missing}  errors {errors}  "
            f"wait p50 {_seconds(percentile(waits, 0.5))} p95 {_seconds(percentile(waits, 0.95))}  "
            f"nodes up {len(self.up)}/{self.nodes.simulated}"
        )

    def summary(self, *, url: str, seconds: float, plan: dict[str, Any]) -> dict[str, Any]:
        total = self.total()
        nodes = self.nodes
        return {
            "url": url,
            "seconds": round(seconds, 1),
            "plan": plan,
            "pairs": {label: counts.as_json() for label, counts in sorted(self.pairs.items())},
            "total": total.as_json(),
            "nodes": {
                "simulated": nodes.simulated, "flaky": nodes.flaky, "up_at_end": len(self.up),
                "registrations": nodes.registrations, "reconnects": nodes.reconnects, "vanished": nodes.vanished,
                "closed_by_server": dict(sorted(nodes.closed.items())), "jobs_assigned": nodes.assigned,
                "jobs_answered": nodes.answered, "failed_on_purpose": nodes.failed, "kept_on_purpose": nodes.kept,
                "cancels": dict(sorted(nodes.cancels.items())),
            },
            "errors_without_utterance": dict(sorted(self.refusals.items())),
            "exactly_once": total.repeated == 0 and total.lost == 0 and total.unended == 0,
        }


def _seconds(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f} s"


class _NodeTally(NodeObserver):
    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def registered(self, node: SimNode, ack: dict[str, Any], again: bool) -> None:
        self.stats.nodes.registrations += 1
        self.stats.nodes.reconnects += again
        self.stats.up.add(node)

    def assigned(self, node: SimNode, job: dict[str, Any]) -> None:
        self.stats.nodes.assigned += 1
        if job.get("attempt_id", 1) > 1:
            self.stats.pairs[job_label(job)].reassignments += 1
            self.stats.first("failover", "first job moved to another node", job.get("job_id"))

    def answered(self, node: SimNode, job: dict[str, Any], ok: bool, assigned_at: float) -> None:
        self.stats.nodes.answered += 1
        self.stats.nodes.failed += not ok

    def kept(self, node: SimNode, job: dict[str, Any]) -> None:
        self.stats.nodes.kept += 1

    def cancelled(self, node: SimNode, frame: dict[str, Any]) -> None:
        self.stats.nodes.cancels[str(frame.get("reason"))] += 1

    def vanished(self, node: SimNode, jobs: int) -> None:
        self.stats.nodes.vanished += 1
        self.stats.up.discard(node)

    def closed(self, node: SimNode, code: int | None) -> None:
        self.stats.nodes.closed[str(code)] += 1
        self.stats.up.discard(node)


class _SessionTally(BrowserObserver):
    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def opened(self, browser: SimBrowser, ack: dict[str, Any]) -> None:
        self.stats.pairs[browser.pair.label].sessions += 1

    def said(self, browser: SimBrowser, index: int) -> None:
        self.stats.pairs[browser.pair.label].jobs += 1
        self.stats.said_times.append(time.monotonic())

    def ended(self, browser: SimBrowser, index: int, frame: dict[str, Any], waited: float) -> None:
        counts = self.stats.pairs[browser.pair.label]
        kind = frame["type"]
        if kind == "error":
            code = str(frame.get("code"))
            counts.errors[code] += 1
            self.stats.first(f"error:{code}", f"first job that ended with {code}", frame.get("job_id"))
            return
        if kind == "translation_result":
            counts.results += 1
        else:
            counts.missing += 1
        counts.waits.append(waited)
        self.stats.recent_waits.append(waited)

    def repeated(self, browser: SimBrowser, frame: dict[str, Any]) -> None:
        self.stats.pairs[browser.pair.label].repeated += 1

    def refused(self, browser: SimBrowser, frame: dict[str, Any]) -> None:
        self.stats.refusals[str(frame.get("code"))] += 1

    def closed(self, browser: SimBrowser, code: int | None, unended: int) -> None:
        counts = self.stats.pairs[browser.pair.label]
        if browser.closing:
            counts.unended += unended
        else:
            counts.lost += unended


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as a person reads it: a table per pair, then the errors by code and the nodes."""
    rows = [("pair", "sessions", "jobs", "results", "missing", "errors", "reassigned", "wait p50", "p95", "p99")]
    for label, counts in [*summary["pairs"].items(), ("all", summary["total"])]:
        wait = counts["wait_s"]
        rows.append((
            label, str(counts["sessions"]), str(counts["jobs"]), str(counts["results"]), str(counts["missing"]),
            str(sum(counts["errors"].values())), str(counts["reassignments"]),
            *(("-" if wait[q] is None else f"{wait[q]:.2f} s") for q in ("p50", "p95", "p99")),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        f"fleet_simulate: {summary['seconds']:.0f} s against {summary['url']}: {summary['nodes']['simulated']} "
        f"node(s), {summary['total']['sessions']} session(s) opened",
        "",
    ]
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))]
        lines.append("  ".join(cells))
        if n == 0 or n == len(rows) - 2:
            lines.append("  ".join("-" * width for width in widths))
    by_code = [
        f"  {label}: " + ", ".join(f"{code} {n}" for code, n in counts["errors"].items())
        for label, counts in summary["pairs"].items() if counts["errors"]
    ]
    if by_code:
        lines += ["", "errors by code:", *by_code]
    refused = [
        f"  {label}: " + ", ".join(f"{code} {n}" for code, n in counts["sessions_refused"].items())
        for label, counts in summary["pairs"].items() if counts["sessions_refused"]
    ]
    if refused:
        lines += ["", "sessions refused:", *refused]
    nodes = summary["nodes"]
    closed = ", ".join(f"{code} ×{n}" for code, n in nodes["closed_by_server"].items()) or "none"
    lines += [
        "",
        f"nodes: {nodes['up_at_end']} of {nodes['simulated']} up at the end ({nodes['flaky']} flaky); "
        f"{nodes['jobs_assigned']} jobs assigned, {nodes['failed_on_purpose']} failed and "
        f"{nodes['kept_on_purpose']} kept on purpose; {nodes['vanished']} drops, {nodes['reconnects']} reconnects; "
        f"sockets closed by the server: {closed}",
    ]
    total = summary["total"]
    if summary["exactly_once"]:
        lines.append(f"every utterance ended exactly once ({total['jobs']} jobs)")
    if total["unended"] or total["lost"]:
        lines.append(
            f"{total['unended'] + total['lost']} of {total['jobs']} utterances had no ending: {total['unended']} "
            f"still running when the run stopped waiting (--drain), {total['lost']} with a session the server "
            "closed (their jobs were cancelled)"
        )
    if total["repeated"]:
        lines.append(
            f"{total['repeated']} endings came twice for an utterance, or for an utterance never said: "
            "each job should end exactly once"
        )
    if summary["errors_without_utterance"]:
        lines.append("errors about no utterance: " + ", ".join(
            f"{code} {n}" for code, n in summary["errors_without_utterance"].items()
        ))
    return "\n".join(lines)
