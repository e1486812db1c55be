"""The staff dashboard: what its page shows (a snapshot of the fleet, a job's story), and its
socket ``/ws/dashboard``, which pushes a snapshot each second and takes drain/resume clicks.

Everything shown is read from Redis by ``dispatch.selectors``; drains go through
``dispatch.node_drain``. Staff only: others get close 4403; only the site's own
origin may open the socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import redis
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from dispatch import selectors
from dispatch.nodes import UnknownNode, node_drain
from dispatch.protocol import CloseCode
from dispatch.sockets import FrameConsumer
from pools.rules import NodeCaps, served_pairs

log = logging.getLogger("nodes.dashboard")

PUSH_EVERY_S = 1.0
STATUSES = ("ready", "registering", "draining", "offline")
PAIRS_LISTED = 6


# --- The fleet snapshot ------------------------------------------------------------------------


def _pairs_text(caps: dict[str, list[str]]) -> tuple[int, str]:
    pairs = sorted(served_pairs(NodeCaps.from_json(caps), with_tts=False))
    if len(pairs) <= PAIRS_LISTED:
        return len(pairs), ", ".join(f"{s}→{t}" for s, t in pairs)
    languages = sorted({lang for pair in pairs for lang in pair})
    return len(pairs), f"{len(pairs)} pairs of {' '.join(languages)}"


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value), 1)
    return None


def _node_row(node: selectors.NodeLoad, now_ms: int) -> dict[str, Any]:
    pair_count, pairs_text = _pairs_text(node.caps)
    admin_pools = [name for name in node.pools if not selectors.is_auto_pool(name)]
    return {
        "id": node.node_id,
        "status": node.status,
        "pools": admin_pools,
        "auto_pools": len(node.pools) - len(admin_pools),
        "pairs": pair_count,
        "pairs_text": pairs_text,
        "services": sorted(node.caps.get("services", [])),
        "used": node.used,
        "slots": node.slots,
        "cpu": _number(node.load.get("cpu_percent")),
        "gpu": _number(node.load.get("gpu_percent")),
        "gpu_mem": _number(node.load.get("gpu_mem_percent")),
        "mem": _number(node.load.get("mem_percent")),
        "running_jobs": node.load.get("running_jobs"),
        "heartbeat_age_s": round(max(0, now_ms - node.last_seen_ms) / 1000, 1) if node.last_seen_ms else None,
        "jobs_done": node.jobs_done,
        "jobs_failed": node.jobs_failed,
        "median_ms": node.median_ms,
    }


def _pool_order(config: Any) -> dict[str, int]:
    """Admin pools first, by priority then name (as routes walk them); then the rest by name."""
    if config is None:
        return {}
    return {pool.name: index for index, pool in enumerate(config.enabled_pools)}


async def dashboard_snapshot(*, pool: str = "", status: str = "") -> dict[str, Any]:
    """What the dashboard shows now, narrowed to one pool and/or one node status."""
    fleet = await selectors.fleet_snapshot()
    (minutes, activity), samples, config = await asyncio.gather(
        selectors.pools_activity(fleet.now_ms), selectors.load_history(fleet.now_ms), selectors.pools_configured()
    )
    counters = fleet.counters
    order = _pool_order(config)
    live = fleet.connected
    names = set(order) | set(activity) | {name for node in live for name in node.pools}
    names |= {name.removeprefix("no_available:") for name in counters if name.startswith("no_available:")}
    last_minute = fleet.now_ms // 60000
    pools = []
    for name in sorted(names, key=lambda n: (order.get(n, len(order)), n)):
        if pool and name != pool:
            continue
        members = [node for node in live if name in node.pools]
        ready = [node for node in members if node.status == "ready"]
        seen = activity.get(name, selectors.PoolActivity(placed_by_minute={}, latencies_ms=[]))
        pools.append(
            {
                "name": name,
                "admin": name in order,
                "members": len(members),
                "ready_nodes": len(ready),
                "free": sum(max(0, node.slots - node.used) for node in ready),
                "total": sum(node.slots for node in ready),
                "jobs_per_min": seen.placed_by_minute.get(last_minute - 1, 0),
                "jobs_15m": seen.placed,
                "p50_ms": seen.percentile_ms(50),
                "p95_ms": seen.percentile_ms(95),
                "no_available": counters.get(f"no_available:{name}", 0),
            }
        )
    tenant_sessions = await selectors.tenant_sessions()  # open sessions per tenant
    nodes = [
        _node_row(node, fleet.now_ms)
        for node in fleet.nodes
        if (not pool or pool in node.pools) and (not status or node.status == status)
    ]
    return {
        "type": "snapshot",
        "now_ms": fleet.now_ms,
        "filters": {"pool": pool, "status": status},
        "pool_names": sorted(names, key=lambda n: (order.get(n, len(order)), n)),
        "totals": {
            "sessions": fleet.sessions,
            "nodes": fleet.by_status(STATUSES),
            "node_count": len(fleet.nodes),
            "jobs_in_flight": fleet.jobs_in_flight,
            "workers_alive": fleet.workers_alive,
            "slots_used": fleet.slots_used,
            "slots_total": fleet.slots_total,
            "cpu": fleet.mean_load("cpu_percent"),
            "jobs_done": counters.get("jobs_result", 0) + counters.get("jobs_missing", 0),
            "jobs_failed": counters.get("jobs_error", 0),
            "jobs_cancelled": counters.get("jobs_cancelled", 0),
        },
        "nodes": nodes,
        "pools": pools,
        "tenant_sessions": tenant_sessions,
        "history": {
            "window_s": selectors.HISTORY_WINDOW_S,
            "load": samples,
            "jobs": [{"t": number * 60000, "placed": count} for number, count in sorted(minutes.items())],
        },
    }


# --- A job's story -----------------------------------------------------------------------------


def _when(ms: int | None) -> str:
    if not ms:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _need_text(need: str) -> str:
    if "~" in need:
        a, b = need.split("~", 1)
        return f"{a} ⇄ {b} (two-way)"
    s, _, t = need.partition(">")
    return f"{s} → {t}"


def _candidates(raw: list[str]) -> list[dict[str, Any]]:
    found = []
    for item in raw:
        node_id, _, free = item.rpartition("=")
        found.append({"node": node_id, "free": int(free) if free.lstrip("-").isdigit() else free})
    return found


def _why(attempt: dict[str, Any], looked: list[dict[str, Any]]) -> str:
    """Why this attempt went where it did, from what the dispatch script saw."""
    reasons = []
    for entry in looked:
        if entry["pool"] == attempt["pool"]:
            break
        if entry["candidates"]:
            checked = ", ".join(f"{c['node']} ({c['free']} free)" for c in entry["candidates"])
            reasons.append(f"pool {entry['pool']} had no ready node with a free slot (checked {checked})")
        else:
            reasons.append(f"pool {entry['pool']} had no ready member")
    chosen = next((entry for entry in looked if entry["pool"] == attempt["pool"]), None)
    candidates = chosen["candidates"] if chosen else []
    free = next((c["free"] for c in candidates if c["node"] == attempt["node"]), None)
    strategy = attempt.get("strategy") or "random"
    if strategy == "sticky" and candidates and candidates[0]["node"] == attempt["node"]:
        pick = "the session's previous node, still ready with a free slot (sticky)"
    elif strategy == "least_loaded":
        pick = f"the most free slots among the {len(candidates)} sampled (least_loaded)"
    elif strategy == "sticky":
        pick = "a random node with a free slot: the session's previous node was not available (sticky)"
    else:
        pick = "the first node with a free slot in a random order (random)"
    if free is not None:
        pick += f", {free} free"
    if attempt.get("attempt", 1) > 1:
        pick += "; nodes that already had the job were skipped"
    reasons.append(f"pool {attempt['pool']}: {pick}")
    return "; ".join(reasons) + "."


EVENT_TEXT = {
    "timeout": "attempt {attempt} on {node} timed out ({code}); job_cancel timeout sent to it",
    "lost": "{node} was lost during attempt {attempt} (socket closed or lease expired)",
    "failed": "attempt {attempt} failed on {node} with {code}",
}


def _ending_text(ending: dict[str, Any], last_node: str | None) -> str:
    kind = ending.get("kind")
    node = ending.get("node")
    if kind == "result":
        text = f"translation_result from {node} (attempt {ending.get('attempt_id')})"
    elif kind == "missing":
        text = f"missing_result: {node} sent an empty result (attempt {ending.get('attempt_id')})"
    elif kind == "cancelled":
        return f"cancelled ({ending.get('reason', 'session closed')}); job_cancel sent to the node that held it"
    elif kind == "error":
        text = f"error {ending.get('code')}"
        if ending.get("message"):
            text += f": {ending['message']}"
        return text
    else:
        return str(kind)
    if node and last_node and node != last_node:
        text += f"; a late answer of an earlier attempt won, job_cancel completed sent to {last_node}"
    return text


def story_told(story: dict[str, str]) -> dict[str, Any]:
    """A job's story (as stored) in the terms the lookup page shows."""
    cut_ms = int(story.get("cut_ms") or 0)

    def after(ms: Any) -> int | None:
        return int(ms) - cut_ms if ms and cut_ms else None

    attempts = []
    for attempt in json.loads(story.get("attempts") or "[]"):
        looked = [
            {"pool": entry.get("pool"), "candidates": _candidates(entry.get("candidates") or [])}
            for entry in attempt.get("looked") or []
        ]
        attempts.append(
            {
                **attempt,
                "looked": looked,
                "why": _why(attempt, looked),
                "at": _when(attempt.get("at_ms")),
                "after_cut_ms": after(attempt.get("at_ms")),
            }
        )
    events = [
        {
            **event,
            "text": EVENT_TEXT.get(event.get("event", ""), "{event} on {node}").format_map(
                {"attempt": "?", "node": "?", "code": "", **event}
            ),
            "after_cut_ms": after(event.get("at_ms")),
        }
        for event in json.loads(story.get("events") or "[]")
    ]
    ending = json.loads(story["ending"]) if story.get("ending") else None
    last_node = attempts[-1]["node"] if attempts else None
    route = json.loads(story.get("route") or "[]")
    return {
        "job_id": story.get("job_id"),
        "session": story.get("session"),
        "trace": story.get("trace"),
        "utterance_index": story.get("utt"),
        "need": story.get("need", ""),
        "pair": _need_text(story.get("need", "")),
        "route": [{"pool": entry[0], "strategy": entry[1]} for entry in route],
        "cut": _when(cut_ms),
        "attempts": attempts,
        "nodes": [attempt["node"] for attempt in attempts],
        "events": events,
        "ending": ending,
        "ending_text": _ending_text(ending, last_node) if ending else "not ended yet",
        "ended": _when(int(story["ended_ms"])) if story.get("ended_ms") else "—",
        "ended_after_ms": after(story.get("ended_ms")),
    }


# --- The socket ----------------------------------------------------------------------------------


def same_origin(scope: dict[str, Any]) -> bool:
    """The request's ``Origin`` is this site: same host and port as its ``Host`` header (that
    host one of ``ALLOWED_HOSTS``), or one of ``CSRF_TRUSTED_ORIGINS`` (a proxy in front that
    rewrites ``Host``), as Django's CSRF check has it. A request without ``Origin`` is refused."""
    headers = dict(scope.get("headers", []))
    origin, host = headers.get(b"origin"), headers.get(b"host")
    if not origin or not host:
        return False
    origin_text, host_text = origin.decode("latin-1").lower(), host.decode("latin-1").lower()
    if origin_text.rstrip("/") in (trusted.lower().rstrip("/") for trusted in settings.CSRF_TRUSTED_ORIGINS):
        return True
    domain, _ = split_domain_port(host_text)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    return urlsplit(origin_text).netloc == host_text


class SameOriginOnly:
    """Refuse (HTTP 403) a WebSocket handshake from another site's page."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if not same_origin(scope):
            return await WebsocketDenier.as_asgi()(scope, receive, send)
        return await self.inner(scope, receive, send)


class DashboardConsumer(FrameConsumer):
    """Pushes ``dashboard_snapshot`` each second; takes ``{"type": "filter", "pool", "status"}``,
    ``{"type": "drain" | "resume", "node_id"}``. The user was read at connect (the one
    database query); handlers read Redis only."""

    ticker: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        if user is None or not (user.is_active and user.is_staff):
            await self.close(code=CloseCode.FORBIDDEN)
            return
        self.staff = str(user.get_username())
        self.filters = {"pool": "", "status": ""}
        self.ticker = asyncio.ensure_future(self.tick())

    async def disconnect(self, code: int) -> None:
        if self.ticker is not None:
            self.ticker.cancel()

    async def tick(self) -> None:
        while True:
            await self.push()
            await asyncio.sleep(PUSH_EVERY_S)

    async def push(self) -> None:
        try:
            frame = await dashboard_snapshot(**self.filters)
        except redis.RedisError:
            frame = {"type": "notice", "level": "error", "message": "Redis is unreachable: the fleet cannot be read."}
        except Exception:  # a bug must not stop the page's updates for good
            log.exception("dashboard snapshot failed")
            frame = {"type": "notice", "level": "error", "message": "The fleet could not be read (see the server log)."}
        await self.send(text_data=json.dumps(frame))

    async def notice(self, message: str, level: str = "info") -> None:
        await self.send(text_data=json.dumps({"type": "notice", "level": level, "message": message}))

    async def receive_frame(self, text: str) -> None:
        if self.ticker is None:
            return  # refused at connect
        try:
            frame = json.loads(text)
        except ValueError:
            frame = None
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "filter":
            self.filters = {
                "pool": str(frame.get("pool") or ""),
                "status": str(frame.get("status") or "") if frame.get("status") in STATUSES else "",
            }
        elif kind in ("drain", "resume") and isinstance(frame.get("node_id"), str):
            try:
                status = await node_drain(
                    node_id=frame["node_id"], drain=kind == "drain", reason=f"by {self.staff} on the dashboard"
                )
            except UnknownNode:
                await self.notice(f"No node {frame['node_id']} is known.", "error")
                return
            except redis.RedisError:
                await self.notice("Redis is unreachable: the node was not changed.", "error")
                return
            log.info("dashboard %s", kind, extra={"node_id": frame["node_id"], "code": status})
            await self.notice(f"{frame['node_id']} is now {status}.")
        else:
            await self.notice("Unknown request: send filter, drain or resume.", "error")
            return
        await self.push()
