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


def new_session_id() -> str:
    return "s-" + secrets.token_hex(4)


def new_trace_id() -> str:
    return str(uuid.uuid4())


async def session_open(*, trace_id: str, channel: str, need: str, session_id: str | None = None) -> str:
    """Record a session (a new id unless ``session_id`` is given, when it opens again after the
    store was lost) with what it needs; returns its id. Ids are unique: a clash makes another."""
    while True:
        candidate = session_id or new_session_id()
        reply = await store.run(
            "session_open", candidate, trace_id, channel, history.job_index_keep_s(), lease_ms(), need
        )
        if reply == "ok":
            return candidate
        if session_id is not None:
            raise RuntimeError(f"session {session_id} belongs to another socket")


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
        await outbox.send_cancel(channel, job_id, "session_closed", trace_id or None)
        await outbox.tell_drained(drained)


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
