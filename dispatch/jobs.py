"""Jobs in live state: placing an utterance on a node, its ending, moving it on, recovering it.

``job_submit`` picks a node and reserves its slot in one script call; ``job_finish`` ends a
job in one (the first ending wins). The frames go out through ``dispatch.outbox``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from dispatch import history, outbox, protocol, selectors, store
from dispatch.counters import count
from dispatch.endings import ending_frames, ending_of
from dispatch.outbox import json_text, now_ms
from dispatch.protocol import ErrorCode, JobResult
from dispatch.sessions import SessionSpec

log = logging.getLogger("dispatch")


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
    audio_ms: int = 0  # what the tenant's audio quota and usage count


@dataclass(frozen=True)
class Dispatched:
    job_id: str
    node_id: str
    pool: str


class NoAvailableNode(Exception):
    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


class QuotaExceeded(Exception):
    """The utterance would take its tenant past its audio minutes for the UTC day."""


def job_body(spec: SessionSpec, cut: Cut, job_id: str) -> str:
    """The ``job_assign`` frame without ``type`` and ``attempt_id`` (added per attempt)."""
    return json_text(
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


def _turn_keep_s() -> int:
    """How long a turn's node is kept after its latest piece: the next piece is cut at most the
    length limit (or a pause) later, and may wait behind the session's jobs in flight."""
    cut_within_s = (settings.SCHEDULER_MAX_UTTERANCE_MS + settings.SCHEDULER_PAUSE_MS) / 1000
    return int(history.job_deadline_s() + cut_within_s) + 1


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
    ``NoAvailableNode``. ``on_dispatched`` runs before the frame goes to the node. The same
    call checks and counts the tenant's audio quota: ``QuotaExceeded``, nothing placed."""
    job_id = "job-" + secrets.token_hex(16)
    body = job_body(spec, cut, job_id)
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
            cut.turn_id,
            "1" if cut.max_duration else "0",
            _turn_keep_s(),
            spec.tenant,
            cut.audio_ms,
            spec.sub,
            spec.label,
        )
        if reply[0] == "ok":
            _, node_id, node_channel, pool, strategy = reply
            dispatched = Dispatched(job_id=job_id, node_id=node_id, pool=pool)
            await on_dispatched(dispatched)
            await outbox.send(node_channel, {"type": "job.assign", "text": assign_frame(body, 1)})
            log.debug(
                "job dispatched",
                extra={"job_id": job_id, "node_id": node_id, "pool": pool, "session_id": spec.session_id},
            )
            return dispatched
        if reply[0] == "quota":
            raise QuotaExceeded(job_id)
        if reply[0] == "dup":
            job_id = "job-" + secrets.token_hex(16)
            body = job_body(spec, cut, job_id)
            continue
        first_pool = reply[1]
        remaining = give_up - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(backoff, remaining))  # the last try comes at the deadline, not before
        backoff = min(backoff * 2, 0.5)
    route = await selectors.route_of(spec.need, spec.auto_pool, spec.tenant)
    await store.run(
        "job_unplaced",
        job_id,
        spec.session_id,
        spec.trace_id,
        cut.utterance_index,
        spec.need,
        json_text(route),
        first_pool,
        cut.cut_ms,
        json_text({"kind": "error", "code": ErrorCode.NO_AVAILABLE_NODE}),
        settings.SCHEDULER_JOB_HISTORY_S,
        history.job_index_keep_s(),
        spec.tenant,
    )
    log.warning(
        "no available node", extra={"job_id": job_id, "session_id": spec.session_id, "pool": first_pool}
    )
    raise NoAvailableNode(job_id)


async def job_finish(*, node_id: str, result: JobResult) -> bool:
    """A node's answer. A success ends the job (one script call: the first ending wins) and
    its frames go to the session; a failure of the current attempt moves the job on.
    Returns False when the answer was dropped (late, twice, or not this node's)."""
    ending = ending_of(result, node_id)
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
        json_text(ending),
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
    await outbox.send_job_frames(session_channel, result.job_id, frames, ended=True)
    if cancel_channel:
        await outbox.send_cancel(cancel_channel, result.job_id, "completed", trace_id)
    await outbox.tell_drained(drained)
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
        settings.SCHEDULER_EJECT_AFTER,
        int(settings.SCHEDULER_EJECT_BASE_S * 1000),
        int(settings.SCHEDULER_EJECT_MAX_S * 1000),
    )
    kind = reply[0]
    if kind in ("gone", "stale"):
        return False
    if kind == "moved":
        _, new_node, new_channel, new_attempt, body, old_channel, drained = reply
        await outbox.send(new_channel, {"type": "job.assign", "text": assign_frame(body, int(new_attempt))})
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
        await outbox.send_job_frames(session_channel, job_id, frames, ended=True)
        log.info("job failed", extra={"job_id": job_id, "code": end_code})
    if reason == "timeout" and old_channel:
        await outbox.send_cancel(old_channel, job_id, "timeout", None)
    await outbox.tell_drained(drained)
    return True


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
                await outbox.send_cancel(old_channel, job_id, "timeout", story.get("trace"))
            await outbox.tell_drained(drained)
        story = await selectors.job_story(job_id) or story
        if not story.get("ending"):
            return []
    await count("recovered")
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
        await outbox.send_job_frames(session_channel, job_id, [frame], ended=False)
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
    await outbox.send_job_frames(job["schan"], job_id, frames, ended=False)
    return True
