"""The only writers of live state, and the only code that sends to a socket's channel.

Every change is one Lua script call (``dispatch/scripts``); consumers parse a frame, call one
function here and send the reply. Functions are keyword-only and named ``<entity>_<action>``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from dispatch import history, keys, protocol, selectors, store
from dispatch.protocol import ErrorCode, JobResult, NodeHeartbeat, NodeRegister
from pools.rules import NodeCaps, PoolConfig, node_pools, ready_services

log = logging.getLogger("dispatch")

NODE_ID = re.compile(r"^node-[0-9a-fA-F]{8}$")
OFFLINE_KEEP_S = 15 * 60
CAPABILITY_FIELDS = ("language_capabilities", "capability_by_type", "installed_services")
STALE_RETRIES = 20


def now_ms() -> int:
    return int(time.time() * 1000)


def lease_ms() -> int:
    return int(3 * settings.SCHEDULER_HEARTBEAT_INTERVAL_S * 1000)


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _canonical(value: Any) -> str:
    """A capability field as stored: same content, same text (so heartbeats compare cheaply)."""
    return json.dumps(msgspec.to_builtins(value), sort_keys=True, separators=(",", ":"))


async def _send(channel: str, message: dict[str, Any]) -> None:
    if channel:
        await get_channel_layer().send(channel, message)


def _send_sync(channel: str, message: dict[str, Any]) -> None:
    if channel:
        async_to_sync(get_channel_layer().send)(channel, message)


# --- Pool configuration → live state -------------------------------------------------------


def caps_from_fields(fields: dict[str, Any]) -> NodeCaps:
    """Derive what matters for pools from the raw capability fields of a node."""
    langs = fields.get("language_capabilities") or {}
    return NodeCaps(
        asr=frozenset(langs.get("asr_languages") or ()),
        tts=frozenset(langs.get("tts_languages") or ()),
        semantic=frozenset(langs.get("semantic_languages") or ()),
        services=ready_services(fields.get("capability_by_type"), fields.get("installed_services")),
    )


def pools_publish() -> PoolConfig:
    """Publish the database's pool configuration and re-pool every live node.

    Memberships are recomputed here and applied node by node with a check of the node's
    capability version, so a heartbeat that lands in between is never undone."""
    from pools.config import load_config

    config = load_config()
    route_args: list[str] = []
    from pools.rules import routes

    for need, route in routes(config).items():
        route_args += [need, _json([list(entry) for entry in route])]
    store.run_sync(
        "config_publish",
        config.version,
        config.to_json(),
        "1" if config.auto else "0",
        _json(dict(config.slot_overrides)),
        secrets.token_hex(8),
        *route_args,
    )
    client = store.sync_client()
    for node_id in sorted(store.decoded(client.smembers(keys.nodes()))):
        _node_repool_sync(node_id, config)
    log.info("pool configuration published", extra={"pool": config.version})
    return config


def _node_repool_sync(node_id: str, config: PoolConfig) -> None:
    client = store.sync_client()
    for _ in range(STALE_RETRIES):
        caps_raw, capver = store.decoded(client.hmget(keys.node(node_id), "caps", "capver"))
        if caps_raw is None:
            return
        pools = node_pools(config, NodeCaps.from_json(json.loads(caps_raw)))
        outcome = store.run_sync("node_pools", node_id, capver, config.version, _json(pools), "")
        if outcome != "stale":
            return


def pools_ensure_published() -> None:
    """On process start: publish when Redis lacks the database's current configuration."""
    from pools.config import load_config

    current = store.decoded(store.sync_client().hget(keys.config(), "version"))
    if current != load_config().version:
        pools_publish()


STORE_WATCH_S = 1.0


async def store_watch() -> None:
    """Runs in every server process, once a second.

    - Redis came back empty (the epoch written with the configuration is missing or new):
      republish the pools, close this process's node sockets with 1012 so nodes register
      again, and end its sessions' unfinished jobs (``store_lost``).
    - Redis was unreachable, or restarted with its data (a new run id): frames sent on the
      pub/sub layer meanwhile may be lost, so sessions look their jobs' endings up
      (``store_back``)."""
    from channels.db import database_sync_to_async

    from dispatch.sockets import sockets_notify

    seen_epoch: bytes | str | None = None
    seen_run: str | None = None
    was_down = False
    while True:
        await asyncio.sleep(STORE_WATCH_S)
        client = store.async_client()
        try:
            run_id = (await client.info("server"))["run_id"]
            epoch = await client.hget(keys.config(), "epoch")
            if epoch is None:
                log.warning("store came back empty: republishing the pool configuration")
                await database_sync_to_async(pools_publish)()
                epoch = await client.hget(keys.config(), "epoch")
        except (redis.ConnectionError, redis.TimeoutError):
            if not was_down:
                log.warning("store unreachable")
            was_down = True
            continue
        except Exception:
            log.exception("store watch failed")
            continue
        if seen_epoch is not None and epoch != seen_epoch:
            log.warning("live state was lost: nodes must register again, unfinished jobs end")
            await sockets_notify("store_lost")
        elif was_down or (seen_run is not None and run_id != seen_run):
            log.warning("store reachable again: sessions look up endings they may have missed")
            await sockets_notify("store_back")
        seen_epoch, seen_run, was_down = epoch, run_id, False


async def _current_config() -> PoolConfig:
    raw = await store.async_client().hget(keys.config(), "json")
    if raw is None:
        from channels.db import database_sync_to_async

        return await database_sync_to_async(pools_publish)()
    return PoolConfig.from_json(raw)


# --- Nodes ---------------------------------------------------------------------------------


class NodeTaken(Exception):
    """Another token's live node holds this id (close 4409)."""


@dataclass(frozen=True)
class Registered:
    node_id: str
    status: str
    replaced_channel: str


def _register_fields(frame: NodeRegister | NodeHeartbeat) -> dict[str, str]:
    """The capability fields a frame carries, canonical JSON, absent ones left out."""
    return {
        name: _canonical(getattr(frame, name))
        for name in CAPABILITY_FIELDS
        if getattr(frame, name) is not None
    }


def _node_info(frame: NodeRegister) -> str:
    return _json(
        {
            name: getattr(frame, name)
            for name in (
                "version",
                "capability_schema_version",
                "platform",
                "hardware",
                "installed_models",
                "features_supported",
                "advanced_features",
                "accept_public_jobs",
            )
        }
    )


async def node_register(*, frame: NodeRegister, token: str, channel: str, current_id: str | None) -> Registered:
    """Bind a node id to this socket, store its capabilities, put it in its pools.

    The id is the one the node sent when it looks like ours (``node-`` + 8 hex digits), this
    socket's own id on a second register, else a new one."""
    fresh = current_id is None and not (frame.node_id is not None and NODE_ID.match(frame.node_id))
    node_id = current_id or ("node-" + secrets.token_hex(4) if fresh else str(frame.node_id))
    fields = {name: "null" for name in CAPABILITY_FIELDS} | _register_fields(frame)
    caps = caps_from_fields({name: json.loads(raw) for name, raw in fields.items()})
    slots = frame.max_concurrent_jobs
    if slots is None or slots < 1:
        slots = settings.SCHEDULER_DEFAULT_NODE_SLOTS
    for _ in range(STALE_RETRIES):
        config = await _current_config()
        reply = await store.run(
            "node_register",
            node_id,
            token,
            channel,
            config.version,
            _json(caps.to_json()),
            _json(node_pools(config, caps)),
            slots,
            _node_info(frame),
            lease_ms(),
            fields["language_capabilities"],
            fields["capability_by_type"],
            fields["installed_services"],
            "1" if fresh else "0",
        )
        if reply[0] == "taken":
            raise NodeTaken(node_id)
        if reply[0] == "collision":
            node_id = "node-" + secrets.token_hex(4)
        elif reply[0] != "stale":
            status, replaced, *held = reply
            if replaced:
                await _send(replaced, {"type": "node.close", "code": protocol.CloseCode.TAKEN_OVER})
                await _jobs_move_on(node_id, held)
            log.info("node registered", extra={"node_id": node_id, "code": status})
            return Registered(node_id=node_id, status=status, replaced_channel=replaced)
    raise RuntimeError("the pool configuration kept changing during registration")


async def node_heartbeat(*, node_id: str, channel: str, frame: NodeHeartbeat) -> str:
    """Refresh the lease and store the load; recompute pools when capabilities changed.

    Returns ``ok``, or why the socket must close: ``replaced``, ``offline``, ``revoked``."""
    load = msgspec.to_builtins(frame.resource_usage) if frame.resource_usage else {}
    fields = _register_fields(frame)
    flat = [item for pair in fields.items() for item in pair]
    outcome = await store.run("node_heartbeat", node_id, channel, _json(load), lease_ms(), *flat)
    if outcome == "changed":
        await _node_update_caps(node_id, fields)
        return "ok"
    return str(outcome)


async def _node_update_caps(node_id: str, fields: dict[str, str]) -> None:
    client = store.async_client()
    for _ in range(STALE_RETRIES):
        stored = await client.hmget(keys.node(node_id), "capver", *CAPABILITY_FIELDS)
        capver, merged_raw = stored[0], dict(zip(CAPABILITY_FIELDS, stored[1:], strict=True))
        merged_raw |= fields
        caps = caps_from_fields({name: json.loads(raw or "null") for name, raw in merged_raw.items()})
        config = await _current_config()
        flat = [item for pair in fields.items() for item in pair]
        outcome = await store.run(
            "node_pools", node_id, capver, config.version, _json(node_pools(config, caps)),
            _json(caps.to_json()), *flat,
        )
        if outcome != "stale":
            log.info("node capabilities changed", extra={"node_id": node_id, "code": outcome})
            return


async def node_offline(*, node_id: str, channel: str, move_jobs: bool = True) -> list[str]:
    """The node's socket closed: out of every pool at once, and its jobs move on. With
    ``move_jobs=False`` the caller moves them later (:func:`node_jobs_move_on`); returns them."""
    reply = await store.run("node_offline", node_id, channel, OFFLINE_KEEP_S)
    if reply[0] != "offline":
        return []
    log.info("node offline", extra={"node_id": node_id})
    if move_jobs:
        await _jobs_move_on(node_id, reply[1:])
    return list(reply[1:])


async def node_jobs_move_on(*, node_id: str, job_ids: list[str]) -> None:
    """The jobs an offline node held go elsewhere (see :func:`node_offline`)."""
    await _jobs_move_on(node_id, job_ids)


async def _jobs_move_on(node_id: str, job_ids: list[str]) -> None:
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
        await _send(channel, {"type": "node.close", "code": protocol.CloseCode.RECONNECT})
        await _jobs_move_on(node_id, job_ids)
    return expired


async def jobs_handle_due() -> int:
    """Worker: attempts past their timeout move on (``job_cancel timeout`` to their node);
    jobs waiting for a node try again. Returns how many were handled."""
    reply = await store.run("jobs_due", 100, 5000)
    for index in range(0, len(reply), 3):
        job_id, attempt, state = reply[index : index + 3]
        await job_reassign(
            job_id=job_id, reason="retry" if state == "waiting" else "timeout", attempt=attempt
        )
    return len(reply) // 3


def node_token_revoked(*, token_id: str) -> int:
    """A token was revoked: its live nodes are closed with 4401 (their next heartbeat is
    refused too, in case this message is lost). Returns how many were told."""
    channels = store.run_sync("token_revoke", token_id, 0)
    for channel in channels:
        _send_sync(channel, {"type": "node.close", "code": protocol.CloseCode.UNAUTHORIZED})
    return len(channels)


async def tokens_enforce_revoked() -> int:
    """Worker: close (again) the live nodes of tokens revoked within the last two heartbeat
    intervals: the first close message travels at most once and may be lost."""
    window_ms = int(2 * settings.SCHEDULER_HEARTBEAT_INTERVAL_S * 1000)
    channels = await store.run("token_revoke", "", window_ms)
    for channel in channels:
        await _send(channel, {"type": "node.close", "code": protocol.CloseCode.UNAUTHORIZED})
    return len(channels)


# --- Sessions and jobs ---------------------------------------------------------------------


@dataclass(frozen=True)
class SessionSpec:
    """What a session's jobs carry; built once at ``session_init``."""

    session_id: str
    trace_id: str
    channel: str
    need: str
    auto_pool: str
    src_lang: str
    tgt_lang: str
    dialect: str | None
    features: dict[str, Any]
    mode: str
    lang_a: str | None
    lang_b: str | None
    auto_langs: list[str] | None
    enable_streaming_asr: bool


@dataclass(frozen=True)
class Cut:
    """One utterance, ready to become a job."""

    utterance_index: int
    audio_b64: str
    audio_format: str
    sample_rate: int
    pipeline: dict[str, bool]
    turn_id: str
    manual: bool
    timeout: bool
    max_duration: bool
    cut_ms: int


@dataclass(frozen=True)
class Dispatched:
    job_id: str
    node_id: str
    pool: str


class NoAvailableNode(Exception):
    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


async def session_open(*, trace_id: str, channel: str, session_id: str | None = None) -> str:
    """Record a session (a new id unless ``session_id`` is given, when it opens again after the
    store was lost); returns its id. Ids are unique: a clash makes another."""
    while True:
        candidate = session_id or new_session_id()
        reply = await store.run(
            "session_open", candidate, trace_id, channel, history.job_index_keep_s(), lease_ms()
        )
        if reply == "ok":
            return candidate
        if session_id is not None:
            raise RuntimeError(f"session {session_id} belongs to another socket")


SESSION_CLOSED = _json({"kind": "cancelled", "reason": "session_closed"})


async def session_close(*, session_id: str) -> None:
    """The session is gone: its unfinished jobs are cancelled on their nodes, found in its job
    index (so a job placed while the session was closing is found too)."""
    reply = await store.run(
        "session_close", session_id, settings.SCHEDULER_JOB_HISTORY_S, SESSION_CLOSED,
        int(history.job_deadline_s() * 1000),
    )
    await _jobs_cancelled(reply)


async def _jobs_cancelled(flat: list[str]) -> None:
    """Tell each node holding a job of a closed session that it is no longer wanted."""
    for i in range(0, len(flat), 4):
        job_id, channel, trace_id, drained = flat[i : i + 4]
        frame = protocol.job_cancel(job_id, "session_closed", trace_id or None)
        await _send(channel, {"type": "job.cancel", "text": _json(frame)})
        await _tell_drained(drained)


SESSIONS_PER_CALL = 500  # bounds one sessions_alive.lua call


async def sessions_renew(session_ids: list[str]) -> list[str]:
    """Renew the leases of this process's open sessions (every heartbeat interval); returns the
    ids of those the store no longer has open."""
    gone: list[str] = []
    for i in range(0, len(session_ids), SESSIONS_PER_CALL):
        gone += await store.run("sessions_alive", lease_ms(), *session_ids[i : i + SESSIONS_PER_CALL])
    return gone


async def sessions_expire() -> int:
    """Close the sessions whose process died without closing them (the worker, every pass):
    their unfinished jobs are cancelled on their nodes."""
    expired, cancelled = await store.run(
        "sessions_expired", 100, settings.SCHEDULER_JOB_HISTORY_S, SESSION_CLOSED,
        int(history.job_deadline_s() * 1000),
    )
    for session_id in expired:
        log.warning("session lease expired", extra={"session_id": session_id})
    await _jobs_cancelled(cancelled)
    return len(expired)


def new_session_id() -> str:
    return "s-" + secrets.token_hex(4)


def new_trace_id() -> str:
    return str(uuid.uuid4())


def _job_body(spec: SessionSpec, cut: Cut, job_id: str) -> str:
    """The ``job_assign`` frame without ``type`` and ``attempt_id`` (added per attempt)."""
    return _json(
        {
            "job_id": job_id,
            "session_id": spec.session_id,
            "utterance_index": cut.utterance_index,
            "src_lang": spec.src_lang,
            "tgt_lang": spec.tgt_lang,
            "dialect": spec.dialect,
            "features": spec.features,
            "pipeline": cut.pipeline,
            "audio": cut.audio_b64,
            "audio_format": cut.audio_format,
            "sample_rate": cut.sample_rate,
            "mode": spec.mode,
            "lang_a": spec.lang_a,
            "lang_b": spec.lang_b,
            "auto_langs": spec.auto_langs,
            "enable_streaming_asr": spec.enable_streaming_asr,
            "trace_id": spec.trace_id,
            "turn_id": cut.turn_id,
            "is_manual_cut": cut.manual,
            "is_timeout_triggered": cut.timeout,
            "is_max_duration_triggered": cut.max_duration,
        }
    )


def assign_frame(body: str, attempt_id: int) -> str:
    return f'{{"type":"job_assign","attempt_id":{attempt_id:d},{body[1:]}'


async def job_submit(
    *,
    spec: SessionSpec,
    cut: Cut,
    on_dispatched: Callable[[Dispatched], Awaitable[None]],
) -> Dispatched:
    """Place one utterance: one script call picks a node and reserves its slot when one is
    free; otherwise retry with a short backoff until ``SCHEDULER_DISPATCH_WAIT_S``, then
    ``NoAvailableNode``. ``on_dispatched`` runs before the frame goes to the node."""
    job_id = "job-" + secrets.token_hex(16)
    body = _job_body(spec, cut, job_id)
    give_up = time.monotonic() + settings.SCHEDULER_DISPATCH_WAIT_S
    backoff = 0.02
    first_pool = ""
    while True:
        reply = await store.run(
            "job_submit",
            job_id,
            spec.need,
            spec.auto_pool,
            random.randrange(1, 2**31 - 1),
            spec.session_id,
            spec.channel,
            spec.trace_id,
            cut.utterance_index,
            cut.cut_ms,
            body,
            int(settings.SCHEDULER_JOB_TIMEOUT_S * 1000),
            history.job_index_keep_s(),
        )
        if reply[0] == "ok":
            _, node_id, node_channel, pool, strategy = reply
            dispatched = Dispatched(job_id=job_id, node_id=node_id, pool=pool)
            await on_dispatched(dispatched)
            await _send(node_channel, {"type": "job.assign", "text": assign_frame(body, 1)})
            log.debug(
                "job dispatched",
                extra={"job_id": job_id, "node_id": node_id, "pool": pool, "session_id": spec.session_id},
            )
            return dispatched
        if reply[0] == "dup":
            job_id = "job-" + secrets.token_hex(16)
            body = _job_body(spec, cut, job_id)
            continue
        first_pool = reply[1]
        remaining = give_up - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(backoff, remaining))  # the last try comes at the deadline, not before
        backoff = min(backoff * 2, 0.5)
    route = await selectors.route_of(spec.need, spec.auto_pool)
    await store.run(
        "job_unplaced",
        job_id,
        spec.session_id,
        spec.trace_id,
        cut.utterance_index,
        spec.need,
        _json(route),
        first_pool,
        cut.cut_ms,
        _json({"kind": "error", "code": ErrorCode.NO_AVAILABLE_NODE}),
        settings.SCHEDULER_JOB_HISTORY_S,
        history.job_index_keep_s(),
    )
    log.warning(
        "no available node", extra={"job_id": job_id, "session_id": spec.session_id, "pool": first_pool}
    )
    raise NoAvailableNode(job_id)


ERROR_SENTENCES = {
    ErrorCode.JOB_TIMEOUT: "Translating this utterance took too long, so it was given up. Please try again.",
    ErrorCode.NO_AVAILABLE_NODE: "No translation node is free for this language pair right now; please try again.",
    ErrorCode.INTERNAL_ERROR: "The scheduler hit an internal problem with this utterance; please try again.",
}


def _error_sentence(code: str, node_message: str | None = None) -> str:
    if code in ERROR_SENTENCES:
        return ERROR_SENTENCES[ErrorCode(code)]
    detail = f" ({node_message})" if node_message else ""
    return f"The translation node could not process this utterance{detail}. Please try again."


def _ending(result: JobResult, node_id: str) -> dict[str, Any]:
    """How a node's answer ends its job, as the story keeps it (no audio)."""
    if not result.success:
        return {
            "kind": "error",
            "code": (result.error.code if result.error else None) or ErrorCode.PROCESSING_ERROR,
            "message": result.error.message if result.error else None,
            "node": node_id,
            "attempt_id": result.attempt_id,
        }
    kind = "missing" if protocol.is_empty_result(result) else "result"
    fields = msgspec.structs.asdict(result)
    fields.pop("tts_audio", None)
    return {"kind": kind, "node": node_id, "attempt_id": result.attempt_id, "result": fields}


def ending_frames(
    ending: dict[str, Any],
    *,
    job_id: str,
    session_id: str,
    utterance_index: int,
    trace_id: str,
    elapsed_ms: int,
    now: int,
    result: JobResult | None = None,
) -> list[dict[str, Any]]:
    """The frames a browser gets when its job ends. ``result`` is the node's own frame when at
    hand (it carries the synthesised audio); otherwise the story's copy is used."""
    common: dict[str, Any] = {
        "trace_id": trace_id,
        "session_id": session_id,
        "job_id": job_id,
        "utterance_index": utterance_index,
        "elapsed_ms": elapsed_ms,
    }
    if ending["kind"] == "error":
        code = ending["code"]
        return [
            protocol.ui_event(**common, event="ERROR", status="error", error_code=code),
            protocol.error_frame(
                code,
                _error_sentence(code, ending.get("message")),
                trace_id=trace_id,
                utterance_index=utterance_index,
                job_id=job_id,
            ),
        ]
    if ending["kind"] == "missing":
        return [
            protocol.missing_result(
                session_id=session_id, utterance_index=utterance_index, trace_id=trace_id, created_at_ms=now
            )
        ]
    if result is None:
        result = msgspec.convert(ending["result"], JobResult)
    return [
        protocol.ui_event(**common, event="ASR_FINAL"),
        protocol.ui_event(**common, event="NMT_DONE"),
        protocol.translation_result(
            result, session_id=session_id, utterance_index=utterance_index, trace_id=trace_id, now_ms=now
        ),
    ]


async def _send_frames(channel: str, job_id: str, frames: list[dict[str, Any]], *, ended: bool) -> None:
    await _send(
        channel,
        {"type": "job.ended" if ended else "job.event", "job_id": job_id, "frames": [_json(f) for f in frames]},
    )


async def _tell_drained(channel: str) -> None:
    if channel:
        await _send(channel, {"type": "node.control", "text": _json(protocol.node_control("drained"))})


async def job_finish(*, node_id: str, result: JobResult) -> bool:
    """A node's answer. A success ends the job (one script call: the first ending wins) and
    its frames go to the session; a failure of the current attempt moves the job on.
    Returns False when the answer was dropped (late, twice, or not this node's)."""
    ending = _ending(result, node_id)
    if ending["kind"] == "error":
        block_s = settings.SCHEDULER_MODEL_BLOCK_S if ending["code"] == ErrorCode.MODEL_NOT_AVAILABLE else 0
        return await job_reassign(
            job_id=result.job_id, reason="failed", node_id=node_id, code=ending["code"],
            block_s=block_s, message=ending["message"],
        )
    processing = "" if result.processing_time_ms is None else str(int(result.processing_time_ms))
    reply = await store.run(
        "job_finish",
        result.job_id,
        node_id,
        ending["kind"],
        _json(ending),
        settings.SCHEDULER_JOB_HISTORY_S,
        processing,
    )
    if reply[0] != "ended":
        return False
    _, session_channel, session_id, utt, trace_id, cut_ms, _current, cancel_channel, now, drained = reply
    frames = ending_frames(
        ending,
        job_id=result.job_id,
        session_id=session_id,
        utterance_index=int(utt),
        trace_id=trace_id,
        elapsed_ms=max(0, int(now) - int(cut_ms)),
        now=int(now),
        result=result,
    )
    await _send_frames(session_channel, result.job_id, frames, ended=True)
    if cancel_channel:
        frame = protocol.job_cancel(result.job_id, "completed", trace_id)
        await _send(cancel_channel, {"type": "job.cancel", "text": _json(frame)})
    await _tell_drained(drained)
    log.debug("job ended", extra={"job_id": result.job_id, "node_id": node_id, "code": ending["kind"]})
    return True


async def job_reassign(
    *,
    job_id: str,
    reason: str,
    code: str = ErrorCode.JOB_TIMEOUT,
    attempt: str = "",
    node_id: str = "",
    block_s: float = 0,
    message: str | None = None,
) -> bool:
    """Move a job on from its current attempt (``timeout``, ``lost`` node, ``failed`` result,
    ``retry`` of a waiting job, or ``expire`` to end it): the next attempt goes to a node that
    has not had it, else the job ends with this attempt's error. Returns False when there was
    nothing to do (already ended, or moved by someone else)."""
    reply = await store.run(
        "job_reassign",
        job_id,
        reason,
        random.randrange(1, 2**31 - 1),
        attempt,
        node_id,
        int(settings.SCHEDULER_JOB_TIMEOUT_S * 1000),
        settings.SCHEDULER_MAX_ATTEMPTS,
        str(code),
        settings.SCHEDULER_JOB_HISTORY_S,
        int(settings.SCHEDULER_DISPATCH_WAIT_S * 1000),
        block_s,
        message or "",
    )
    kind = reply[0]
    if kind in ("gone", "stale"):
        return False
    if kind == "moved":
        _, new_node, new_channel, new_attempt, body, old_channel, drained = reply
        await _send(new_channel, {"type": "job.assign", "text": assign_frame(body, int(new_attempt))})
        log.info("job reassigned", extra={"job_id": job_id, "node_id": new_node, "attempt_id": new_attempt, "code": reason})
    elif kind == "waiting":
        _, old_channel, drained = reply
    else:
        _, session_channel, session_id, utt, trace_id, cut_ms, end_code, old_channel, drained, now, said = reply
        frames = ending_frames(
            {"kind": "error", "code": end_code, "message": said or None},
            job_id=job_id,
            session_id=session_id,
            utterance_index=int(utt),
            trace_id=trace_id,
            elapsed_ms=max(0, int(now) - int(cut_ms)),
            now=int(now),
        )
        await _send_frames(session_channel, job_id, frames, ended=True)
        log.info("job failed", extra={"job_id": job_id, "code": end_code})
    if reason == "timeout" and old_channel:
        await _send(old_channel, {"type": "job.cancel", "text": _json(protocol.job_cancel(job_id, "timeout", None))})
    await _tell_drained(drained)
    return True


async def job_recover(*, job_id: str) -> list[dict[str, Any]]:
    """A session's deadline for a job passed with no ending received (a frame lost on the
    channel layer): the ending from the job's story, or, when it never ended, end it now with
    JOB_TIMEOUT. Returns the frames for the browser ([] if the ending cannot be known)."""
    story = await selectors.job_story(job_id)
    if story is None:
        return []
    if not story.get("ending"):
        reply = await store.run(
            "job_reassign", job_id, "expire", 1, "", "", 0, 0, str(ErrorCode.JOB_TIMEOUT),
            settings.SCHEDULER_JOB_HISTORY_S, 0, 0, "",
        )
        if reply[0] == "ended":
            old_channel, drained = reply[7], reply[8]
            if old_channel:
                frame = protocol.job_cancel(job_id, "timeout", story.get("trace"))
                await _send(old_channel, {"type": "job.cancel", "text": _json(frame)})
            await _tell_drained(drained)
        story = await selectors.job_story(job_id) or story
        if not story.get("ending"):
            return []
    await _count("recovered")
    now = now_ms()
    return ending_frames(
        json.loads(story["ending"]),
        job_id=job_id,
        session_id=story["session"],
        utterance_index=int(story["utt"]),
        trace_id=story["trace"],
        elapsed_ms=max(0, now - int(story["cut_ms"])),
        now=now,
    )


async def job_progress(*, node_id: str, job_id: str, state: str) -> bool:
    """``job_ack`` / ``job_started`` from the node that holds the job; an ack becomes a
    ``ui_event NODE_ACCEPTED``. Returns False when the job is not this node's."""
    reply = await store.run("job_progress", job_id, node_id, state)
    if reply is None:
        return False
    if state == "accepted":
        session_channel, session_id, utt, trace_id, cut_ms = reply
        frame = protocol.ui_event(
            trace_id=trace_id,
            session_id=session_id,
            job_id=job_id,
            utterance_index=int(utt),
            event="NODE_ACCEPTED",
            elapsed_ms=max(0, now_ms() - int(cut_ms)),
        )
        await _send(session_channel, {"type": "job.event", "job_id": job_id, "frames": [_json(frame)]})
    return True


async def job_partial(*, node_id: str, job_id: str, text: str, is_final: bool) -> bool:
    """Relay a node's partial recognition to the job's browser (only from the job's node)."""
    job = await selectors.job_routing(job_id)
    if job is None or job["node"] != node_id:
        return False
    common: dict[str, Any] = {
        "session_id": job["session"],
        "utterance_index": int(job["utt"]),
        "job_id": job_id,
        "trace_id": job["trace"],
    }
    frames = [
        protocol.ui_event(**common, event="ASR_PARTIAL", elapsed_ms=max(0, now_ms() - int(job["cut_ms"]))),
        protocol.asr_partial(**common, text=text, is_final=is_final),
    ]
    await _send(
        job["schan"], {"type": "job.event", "job_id": job_id, "frames": [_json(frame) for frame in frames]}
    )
    return True


# --- Counters (observations for /metrics, not state) ---------------------------------------

IGNORED_FAMILIES = ("room_", "webrtc_")


async def _count(field: str) -> None:
    try:
        await store.async_client().hincrby(keys.metrics(), field, 1)
    except redis.RedisError:
        log.debug("counter not written: store unreachable", extra={"code": field})


async def frame_rejected(*, code: ErrorCode) -> None:
    await _count(f"rejected:{code}")


async def frame_ignored(*, frame_type: str) -> None:
    """Count a frame the protocol lets pass unused; client-made type names are folded into
    their family (``room_*``) so a client cannot grow the label set."""
    for family in IGNORED_FAMILIES:
        if frame_type.startswith(family):
            frame_type = family + "*"
    await _count(f"ignored:{frame_type}")


# --- Draining --------------------------------------------------------------------------------


class UnknownNode(Exception):
    pass


async def node_drain(*, node_id: str, drain: bool, reason: str | None = None) -> str:
    """Drain (no new jobs, running ones finish) or resume a node; it is told with
    ``node_control``, and ``drained`` follows at once when it holds no job."""
    reply = await store.run("node_drain", node_id, "1" if drain else "0")
    if reply[0] == "unknown":
        raise UnknownNode(node_id)
    status, channel, used = reply
    await _send(channel, {"type": "node.control", "text": _json(protocol.node_control("drain" if drain else "resume", reason))})
    if drain and int(used) == 0:
        await _send(channel, {"type": "node.control", "text": _json(protocol.node_control("drained"))})
    log.info("node drained" if drain else "node resumed", extra={"node_id": node_id, "code": status})
    return str(status)
