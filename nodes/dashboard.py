"""The staff dashboard's fleet page: what one frame shows, and its socket ``/ws/dashboard``,
which pushes a frame each second and takes the page's view choices and drain/resume clicks.

A frame costs O(pools + rows shown) whatever the fleet's size: totals and pools come from the
fleet summary the worker computes once per interval, the node table is one page of a view the
worker keeps sorted (``dispatch.fleet``), and only that page's nodes are read. Drains go through
``dispatch.nodes.node_drain``. Staff only: others get close 4403; only the site's own origin
may open the socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import msgspec
import redis
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from dispatch import fleet, room_selectors, selectors
from dispatch.nodes import UnknownNode, node_drain, node_eject_end
from dispatch.outbox import json_text
from dispatch.protocol import CloseCode
from dispatch.sockets import FrameConsumer
from pools.rules import NodeCaps, served_pairs

log = logging.getLogger("nodes.dashboard")

PUSH_EVERY_S = 1.0
PUSH_SOON_S = 0.25  # while the worker has not written the view asked for yet
PAIRS_LISTED = 6
SUMMARY_STALE_S = 5  # older than this, the page says no worker seems to be running


# --- One frame -----------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _pairs_text(asr: tuple[str, ...], semantic: tuple[str, ...]) -> tuple[int, str]:
    """How many pairs a node serves, and them in words (alike nodes: computed once)."""
    pairs = sorted(served_pairs(NodeCaps.from_json({"asr": asr, "semantic": semantic}), with_tts=False))
    if len(pairs) <= PAIRS_LISTED:
        return len(pairs), ", ".join(f"{s}→{t}" for s, t in pairs)
    languages = sorted({lang for pair in pairs for lang in pair})
    return len(pairs), f"{len(pairs)} pairs of {' '.join(languages)}"


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value), 1)
    return None


@lru_cache(maxsize=256)
def _admin_pools(pools: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in pools if not selectors.is_auto_pool(name))


def _node_row(node: selectors.NodeLoad, now_ms: int) -> dict[str, Any]:
    pair_count, pairs_text = _pairs_text(tuple(node.caps.get("asr", ())), tuple(node.caps.get("semantic", ())))
    admin_pools = _admin_pools(node.pools)
    return {
        "id": node.node_id,
        "status": node.status,
        "pools": list(admin_pools),
        "auto_pools": len(node.pools) - len(admin_pools),
        "pairs": pair_count,
        "pairs_text": pairs_text,
        "services": sorted(node.caps.get("services", [])),
        "used": node.used,
        "slots": node.slots,
        "free": node.free,
        "cpu": _number(node.load.get("cpu_percent")),
        "gpu": _number(node.load.get("gpu_percent")),
        "gpu_mem": _number(node.load.get("gpu_mem_percent")),
        "mem": _number(node.load.get("mem_percent")),
        "running_jobs": node.load.get("running_jobs"),
        "heartbeat_age_s": round(max(0, now_ms - node.last_seen_ms) / 1000, 1) if node.last_seen_ms else None,
        "jobs_done": node.jobs_done,
        "jobs_failed": node.jobs_failed,
        "median_ms": node.median_ms,
        "ejected_s": round(node.ejected_for_ms(now_ms) / 1000, 1) or None,
        "eject_reason": f"{node.eject_reason} {node.eject_code}".strip() if node.ejected_for_ms(now_ms) else None,
    }


def _summary_note(summary: fleet.Summary, now_ms: int) -> str:
    if not summary.at_ms:
        return "No fleet summary yet: node and pool figures appear once a scheduler_worker runs."
    age_s = (now_ms - summary.at_ms) / 1000
    if age_s > SUMMARY_STALE_S:
        return f"The fleet summary is {age_s:.0f} s old: is a scheduler_worker running?"
    return ""


async def dashboard_frame(view: fleet.View) -> dict[str, Any]:
    """What the dashboard shows now: totals, pools (one pool when the view names one), one page
    of the node table as the view sorts and filters it, and the last 15 minutes."""
    read = await fleet.dashboard_read(view)
    rows = await selectors.nodes_load(read.page.node_ids)
    summary, live, now_ms = read.summary, read.live, read.live.now_ms
    totals, counters = summary.totals, live.counters
    # the worker's JSON as it is, unless one pool is looked at (a frame is sent as msgspec encodes it)
    pools = [pool for pool in summary.pools if pool["name"] == view.pool] if view.pool else msgspec.Raw(summary.pools_json)
    return {
        "type": "snapshot",
        "now_ms": now_ms,
        "summary_at_ms": summary.at_ms,
        "summary_note": _summary_note(summary, now_ms),
        "view": view.echo(),
        "page": {
            "index": view.page,
            "size": view.size,
            "rows": read.page.rows,
            "pages": -(-read.page.rows // view.size),
            "built": read.page.built,
        },
        "pool_names": msgspec.Raw(summary.pool_names_json),
        "totals": {
            "sessions": live.sessions,
            "nodes": summary.node_counts(),
            "node_count": totals.get("node_count", 0),
            "jobs_in_flight": live.jobs_in_flight,
            "workers_alive": live.workers_alive,
            "slots_used": totals.get("slots_used", 0),
            "slots_total": totals.get("slots_total", 0),
            "cpu": totals.get("cpu"),
            "jobs_done": counters.get("jobs_result", 0) + counters.get("jobs_missing", 0),
            "jobs_failed": counters.get("jobs_error", 0),
            "jobs_cancelled": counters.get("jobs_cancelled", 0),
        },
        "nodes": [_node_row(node, now_ms) for node in rows],
        "pools": pools,
        "rooms": await room_selectors.rooms_snapshot(now_ms),
        "tenant_sessions": await selectors.tenant_sessions(),  # open sessions per tenant
        "history": {
            "window_s": selectors.HISTORY_WINDOW_S,
            "load": read.samples,
            "jobs": [{"t": number * 60000, "placed": count} for number, count in summary.minutes],
        },
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
    """Pushes ``dashboard_frame`` each second; takes ``{"type": "view", "page", "size", "sort",
    "order", "status", "pool", "node", "pair"}`` (``fleet.View``) and ``{"type": "drain" |
    "resume" | "eject_end", "node_id"}``. The user was read at connect (the one database query);
    handlers read Redis only."""

    ticker: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        if user is None or not (user.is_active and user.is_staff):
            await self.close(code=CloseCode.FORBIDDEN)
            return
        self.staff = str(user.get_username())
        self.view = fleet.DEFAULT_VIEW
        self.ticker = asyncio.ensure_future(self.tick())

    async def disconnect(self, code: int) -> None:
        if self.ticker is not None:
            self.ticker.cancel()

    async def tick(self) -> None:
        while True:
            built = await self.push()
            await asyncio.sleep(PUSH_EVERY_S if built else PUSH_SOON_S)

    async def push(self) -> bool:
        """Send a frame; whether its view was there (else the next one comes sooner)."""
        try:
            frame = await dashboard_frame(self.view)
        except redis.RedisError:
            frame = {"type": "notice", "level": "error", "message": "Redis is unreachable: the fleet cannot be read."}
        except Exception:  # a bug must not stop the page's updates for good
            log.exception("dashboard snapshot failed")
            frame = {"type": "notice", "level": "error", "message": "The fleet could not be read (see the server log)."}
        await self.send(text_data=json_text(frame))  # msgspec: a fifth of json.dumps's CPU
        return bool(frame.get("page", {}).get("built", True))

    async def notice(self, message: str, level: str = "info") -> None:
        await self.send(text_data=json_text({"type": "notice", "level": level, "message": message}))

    async def receive_frame(self, text: str) -> None:
        if self.ticker is None:
            return  # refused at connect
        try:
            frame = json.loads(text)
        except ValueError:
            frame = None
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "view":
            self.view = fleet.View.parse(frame)
        elif kind == "eject_end" and isinstance(frame.get("node_id"), str):
            try:
                ended = await node_eject_end(node_id=frame["node_id"])
            except UnknownNode:
                await self.notice(f"No node {frame['node_id']} is known.", "error")
                return
            except redis.RedisError:
                await self.notice("Redis is unreachable: the node was not changed.", "error")
                return
            log.info("dashboard eject_end", extra={"node_id": frame["node_id"], "code": str(ended)})
            await self.notice(f"{frame['node_id']} " + ("takes jobs again." if ended else "was not ejected."))
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
            await self.notice("Unknown request: send view, drain, resume or eject_end.", "error")
            return
        await self.push()
