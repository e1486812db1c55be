"""Browser sessions in live state: open, close, leases renewed by their process, expiry."""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from dispatch import history, outbox, store
from dispatch.outbox import json_text, lease_ms
from dispatch.protocol import ProtocolError, SessionInit
from dispatch.rooms import rooms_tell_left
from pools.rules import auto_pool_name, one_way_need, two_way_need

log = logging.getLogger("dispatch")

SESSIONS_PER_CALL = 500  # bounds one sessions_alive.lua call
SESSION_CLOSED = json_text({"kind": "cancelled", "reason": "session_closed"})


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
    tenant: str = ""
    sub: str = ""  # the ticket's end user
    label: str = ""  # session_init's tenant_id, kept in job stories



def session_need(frame: SessionInit) -> tuple[str, str]:
    """What a ``session_init`` asks for: its need (the route key) and its mode."""
    if frame.src_lang == "auto":
        if not frame.lang_a or not frame.lang_b:
            raise ProtocolError('A two-way session (src_lang "auto") needs lang_a and lang_b.')
        if frame.lang_a == frame.lang_b:
            raise ProtocolError("lang_a and lang_b must be different languages.")
        return two_way_need(frame.lang_a, frame.lang_b), "two_way_auto"
    if frame.src_lang == frame.tgt_lang:
        raise ProtocolError("src_lang and tgt_lang must be different languages.")
    return one_way_need(frame.src_lang, frame.tgt_lang), "one_way"


def session_spec(
    frame: SessionInit, *, session_id: str, trace_id: str, channel: str, need: str, mode: str, tenant: str, sub: str
) -> SessionSpec:
    """What the session's jobs will carry, from its ``session_init``."""
    two_way = mode == "two_way_auto"
    return SessionSpec(
        session_id=session_id,
        trace_id=trace_id,
        channel=channel,
        need=need,
        auto_pool=auto_pool_name(need),
        src_lang=frame.src_lang,
        tgt_lang=frame.tgt_lang,
        dialect=frame.dialect,
        features=frame.features or {},
        mode=mode,
        lang_a=frame.lang_a if two_way else None,
        lang_b=frame.lang_b if two_way else None,
        auto_langs=frame.auto_langs,
        enable_streaming_asr=bool(frame.enable_streaming_asr),
        tenant=tenant,
        sub=sub,
        label=frame.tenant_id or "",
    )


def new_session_id() -> str:
    return "s-" + secrets.token_hex(4)


def new_trace_id() -> str:
    return str(uuid.uuid4())


class SessionRefused(Exception):
    """The tenant's checks refused the session: ``revoked`` (the ticket's key), ``disabled``
    (the tenant) or ``quota`` (its max_sessions)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def session_open(
    *, trace_id: str, channel: str, session_id: str | None = None, tenant: str = "", key_id: str = "",
    sub: str = "", need: str = "",
) -> str:
    """Record a session (a new id unless ``session_id`` is given, when it opens again after the
    store was lost) with what it needs; returns its id. Ids are unique: a clash makes another. The tenant's checks
    (key live, tenant enabled, max_sessions) are made in the same script call; SessionRefused."""
    while True:
        candidate = session_id or new_session_id()
        reply = await store.run(
            "session_open", candidate, trace_id, channel, history.job_index_keep_s(), lease_ms(),
            tenant, key_id, sub, need,
        )
        if reply == "ok":
            return candidate
        if reply != "dup":
            raise SessionRefused(reply)
        if session_id is not None:
            raise RuntimeError(f"session {session_id} belongs to another socket")


async def session_close(*, session_id: str) -> None:
    """The session is gone: its unfinished jobs are cancelled on their nodes, found in its job
    index (so a job placed while the session was closing is found too), and it leaves its room
    (the other members are told)."""
    cancelled, rooms_left = await store.run(
        "session_close", session_id, settings.SCHEDULER_JOB_HISTORY_S, SESSION_CLOSED,
        int(history.job_deadline_s() * 1000),
    )
    await _jobs_cancelled(cancelled)
    await rooms_tell_left(rooms_left)


async def _jobs_cancelled(flat: list[str]) -> None:
    """Tell each node holding a job of a closed session that it is no longer wanted."""
    for i in range(0, len(flat), 4):
        job_id, channel, trace_id, drained = flat[i : i + 4]
        await outbox.send_cancel(channel, job_id, "session_closed", trace_id or None)
        await outbox.tell_drained(drained)


async def sessions_renew(session_ids: list[str]) -> tuple[list[str], list[str]]:
    """Renew the leases of this process's open sessions (every heartbeat interval); returns the
    ids of those the store no longer has open, and of those no longer allowed (their ticket's
    key revoked or their tenant disabled)."""
    gone: list[str] = []
    refused: list[str] = []
    for i in range(0, len(session_ids), SESSIONS_PER_CALL):
        closed, denied = await store.run("sessions_alive", lease_ms(), *session_ids[i : i + SESSIONS_PER_CALL])
        gone += closed
        refused += denied
    return gone, refused


async def sessions_expire() -> int:
    """Close the sessions whose process died without closing them (the worker, every pass):
    their unfinished jobs are cancelled on their nodes, and they leave their rooms."""
    expired, cancelled, rooms_left = await store.run(
        "sessions_expired", 100, settings.SCHEDULER_JOB_HISTORY_S, SESSION_CLOSED,
        int(history.job_deadline_s() * 1000),
    )
    for session_id in expired:
        log.warning("session lease expired", extra={"session_id": session_id})
    await _jobs_cancelled(cancelled)
    await rooms_tell_left(rooms_left)
    return len(expired)
