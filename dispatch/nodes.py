"""Nodes in live state: registration, heartbeats, going offline, leases, tokens and draining.

Every change is one script call; a node that leaves hands its jobs on (``jobs.job_reassign``).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any

import msgspec
from django.conf import settings

from dispatch import keys, outbox, protocol, store
from dispatch.batches import Batched
from dispatch.config import STALE_RETRIES, config_current, config_known, pools_json
from dispatch.jobs import job_reassign
from dispatch.outbox import json_text, lease_ms
from dispatch.protocol import ErrorCode, NodeHeartbeat, NodeRegister
from pools.rules import NodeCaps, ready_services

log = logging.getLogger("dispatch")

NODE_ID = re.compile(r"^node-[0-9a-fA-F]{8}$")
OFFLINE_KEEP_S = 15 * 60
# Calls made together share script calls (dispatch/batches.py). Nodes of 273 pools take about
# 0.3 ms of Redis each to leave: 64 in one call hold it ~20 ms; a heartbeat takes ~20 µs.
_offline = Batched("node_offline", width=2, most=64)
_heartbeat = Batched("node_heartbeat", width=4, most=256)
CAPABILITY_FIELDS = ("language_capabilities", "capability_by_type", "installed_services")
NODE_INFO_FIELDS = (
    "version",
    "capability_schema_version",
    "platform",
    "hardware",
    "installed_models",
    "features_supported",
    "advanced_features",
    "accept_public_jobs",
)


class NodeTaken(Exception):
    """Another token's live node holds this id (close 4409)."""


class UnknownNode(Exception):
    pass


class ResumeTooSoon(Exception):
    """A node asked to resume itself within the window of its last re-pool."""

    def __init__(self, wait_ms: int) -> None:
        super().__init__(wait_ms)
        self.wait_ms = wait_ms


def repool_window_ms() -> int:
    """A node's own frames move its pool memberships at most once per heartbeat interval."""
    return int(settings.SCHEDULER_HEARTBEAT_INTERVAL_S * 1000)


@dataclass(frozen=True)
class Registered:
    node_id: str
    status: str
    replaced_channel: str


def caps_from_fields(fields: dict[str, Any]) -> NodeCaps:
    """Derive what matters for pools from the raw capability fields of a node."""
    langs = fields.get("language_capabilities") or {}
    return NodeCaps(
        asr=frozenset(langs.get("asr_languages") or ()),
        tts=frozenset(langs.get("tts_languages") or ()),
        semantic=frozenset(langs.get("semantic_languages") or ()),
        services=ready_services(fields.get("capability_by_type"), fields.get("installed_services")),
    )


# Sorted keys, compact: the same text json.dumps(..., sort_keys=True, separators=(",", ":")) gives,
# at a thirteenth of its CPU (every heartbeat of every node carries these fields).
_canonical_encoder = msgspec.json.Encoder(order="sorted")


def _canonical(value: Any) -> str:
    """A capability field as stored: same content, same text (so heartbeats compare cheaply)."""
    return _canonical_encoder.encode(value).decode()


def _capability_fields(frame: NodeRegister | NodeHeartbeat) -> dict[str, str]:
    """The capability fields a frame carries, canonical JSON, absent ones left out."""
    return {
        name: _canonical(getattr(frame, name))
        for name in CAPABILITY_FIELDS
        if getattr(frame, name) is not None
    }


async def node_register(
    *, frame: NodeRegister, token: str, channel: str, current_id: str | None, tenant: str = ""
) -> Registered:
    """Bind a node id to this socket, store its capabilities, put it in its pools.

    The id is the one the node sent when it looks like ours (``node-`` + 8 hex digits), this
    socket's own id on a second register, else a new one. A node whose token belongs to a
    ``tenant`` sits in that tenant's sets of its pools (``pool@tenant``): it serves only it."""
    fresh = current_id is None and not (frame.node_id is not None and NODE_ID.match(frame.node_id))
    node_id = current_id or ("node-" + secrets.token_hex(4) if fresh else str(frame.node_id))
    fields = {name: "null" for name in CAPABILITY_FIELDS} | _capability_fields(frame)
    caps = caps_from_fields({name: json.loads(raw) for name, raw in fields.items()})
    slots = frame.max_concurrent_jobs
    if slots is None or slots < 1:
        slots = settings.SCHEDULER_DEFAULT_NODE_SLOTS
    info = json_text({name: getattr(frame, name) for name in NODE_INFO_FIELDS})
    config = await config_known()  # a storm's nodes ask the store for nothing more
    for _ in range(STALE_RETRIES):
        reply = await store.run(
            "node_register",
            node_id,
            token,
            channel,
            config.version,
            json_text(caps.to_json()),
            pools_json(config, caps, tenant),
            slots,
            info,
            lease_ms(),
            fields["language_capabilities"],
            fields["capability_by_type"],
            fields["installed_services"],
            "1" if fresh else "0",
            repool_window_ms(),
            tenant,
        )
        if reply[0] == "taken":
            raise NodeTaken(node_id)
        if reply[0] == "stale":
            config = await config_current()
        elif reply[0] == "collision":
            node_id = "node-" + secrets.token_hex(4)
        else:
            status, replaced, *held = reply
            if replaced:
                await outbox.send(replaced, {"type": "node.close", "code": protocol.CloseCode.TAKEN_OVER})
                await node_jobs_move_on(node_id=node_id, job_ids=held)
            log.info("node registered", extra={"node_id": node_id, "code": status})
            return Registered(node_id=node_id, status=status, replaced_channel=replaced)
    raise RuntimeError("the pool configuration kept changing during registration")


async def node_heartbeat(*, node_id: str, channel: str, frame: NodeHeartbeat) -> str:
    """Refresh the lease and store the load; recompute pools when capabilities changed.

    A node is re-pooled at most once per heartbeat interval: a change within the window waits
    (the latest one wins) and is applied by the first heartbeat after it.
    Returns ``ok``, or why the socket must close: ``replaced``, ``offline``, ``revoked``."""
    load = msgspec.to_builtins(frame.resource_usage) if frame.resource_usage else {}
    packed = "\n".join(item for pair in _capability_fields(frame).items() for item in pair)
    outcome = await _heartbeat((lease_ms(), repool_window_ms()), node_id, channel, json_text(load), packed)
    if outcome == "changed":
        await _node_repool(node_id)
        return "ok"
    return str(outcome)


async def _node_repool(node_id: str) -> None:
    """Apply the node's waiting capability fields: recompute its pools with them (again if
    they changed meanwhile)."""
    client = store.async_client()
    for _ in range(STALE_RETRIES):
        stored = await client.hmget(keys.node(node_id), "capver", "pending", "tenant", *CAPABILITY_FIELDS)
        capver, pending, tenant = stored[0], json.loads(stored[1] or "{}"), str(stored[2] or "")
        if not pending:
            return
        merged_raw = dict(zip(CAPABILITY_FIELDS, stored[3:], strict=True)) | pending
        caps = caps_from_fields({name: json.loads(raw or "null") for name, raw in merged_raw.items()})
        config = await config_current()
        flat = [item for pair in pending.items() for item in pair]
        outcome = await store.run(
            "node_pools", node_id, capver, config.version, pools_json(config, caps, tenant),
            json_text(caps.to_json()), *flat,
        )
        if outcome != "stale":
            log.info("node capabilities changed", extra={"node_id": node_id, "code": outcome})
            return


async def node_offline(*, node_id: str, channel: str, move_jobs: bool = True) -> list[str]:
    """The node's socket closed: out of every pool at once, and its jobs move on. With
    ``move_jobs=False`` the caller moves them later (:func:`node_jobs_move_on`); returns them.
    Sockets closing together share script calls (a storm: dispatch/batches.py)."""
    reply = await _offline((OFFLINE_KEEP_S,), node_id, channel)
    if reply[0] != "offline":
        return []
    log.info("node offline", extra={"node_id": node_id})
    if move_jobs:
        await node_jobs_move_on(node_id=node_id, job_ids=reply[1:])
    return list(reply[1:])


async def node_jobs_move_on(*, node_id: str, job_ids: list[str]) -> None:
    """A node was lost (socket gone, replaced, or lease expired): its jobs go elsewhere."""
    for job_id in job_ids:
        await job_reassign(job_id=job_id, reason="lost", node_id=node_id, code=ErrorCode.JOB_TIMEOUT)


async def nodes_expire_leases() -> int:
    """Worker: take offline the nodes whose heartbeats stopped (closed with 1012); their jobs
    move on. Returns how many expired."""
    reply = await store.run("leases_expired", 100, OFFLINE_KEEP_S)
    expired = 0
    index = 0
    while index < len(reply):
        node_id, channel = reply[index], reply[index + 1]
        end = reply.index("", index + 2)
        job_ids = reply[index + 2 : end]
        index = end + 1
        expired += 1
        log.warning("node lease expired", extra={"node_id": node_id})
        await outbox.send(channel, {"type": "node.close", "code": protocol.CloseCode.RECONNECT})
        await node_jobs_move_on(node_id=node_id, job_ids=job_ids)
    return expired


def node_token_revoked(*, token_id: str) -> int:
    """A token was revoked: its live nodes are closed with 4401 (their next heartbeat is
    refused too, in case this message is lost). Returns how many were told."""
    channels = store.run_sync("token_revoke", token_id, 0)
    for channel in channels:
        outbox.send_sync(channel, {"type": "node.close", "code": protocol.CloseCode.UNAUTHORIZED})
    return len(channels)


async def tokens_enforce_revoked() -> int:
    """Worker: close (again) the live nodes of tokens revoked within the last two heartbeat
    intervals: the first close message travels at most once and may be lost."""
    window_ms = int(2 * settings.SCHEDULER_HEARTBEAT_INTERVAL_S * 1000)
    channels = await store.run("token_revoke", "", window_ms)
    for channel in channels:
        await outbox.send(channel, {"type": "node.close", "code": protocol.CloseCode.UNAUTHORIZED})
    return len(channels)


async def node_drain(*, node_id: str, drain: bool, reason: str | None = None, by_node: bool = False) -> str:
    """Drain (no new jobs, running ones finish) or resume a node; it is told with
    ``node_control``, and ``drained`` follows at once when it holds no job. A node that resumes
    itself (``by_node``) within the window of its last re-pool is refused (:class:`ResumeTooSoon`)."""
    window = repool_window_ms() if by_node else 0
    reply = await store.run("node_drain", node_id, "1" if drain else "0", window)
    if reply[0] == "unknown":
        raise UnknownNode(node_id)
    if reply[0] == "soon":
        raise ResumeTooSoon(int(reply[1]))
    status, channel, used = reply
    await outbox.send_node_control(channel, "drain" if drain else "resume", reason)
    if drain and int(used) == 0:
        await outbox.tell_drained(channel)
    log.info("node drained" if drain else "node resumed", extra={"node_id": node_id, "code": status})
    return str(status)


async def node_eject_end(*, node_id: str) -> bool:
    """End a node's ejection after failures now (staff): it takes jobs again at once, and its
    next ejection lasts the first span again. Returns whether it was ejected."""
    reply = await store.run("node_eject_end", node_id)
    if reply[0] == "unknown":
        raise UnknownNode(node_id)
    log.info("node ejection ended", extra={"node_id": node_id, "code": reply[0]})
    return bool(reply[0] == "ended")
