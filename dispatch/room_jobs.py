"""Jobs of a room: a member's utterance becomes one job per language group among the other
members, all placed by one script call (``room_submit.lua``, which picks and reserves as
``job_submit.lua`` does). They are jobs of the speaker's session like any other (their endings
reach the speaker's socket, its recovery deadlines cover them, its close cancels them); the
speaker's socket then hands each ending to its language group, resolved from the room's members
as they are when it ends (``room_deliver.lua``).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from dispatch import history, outbox, room_selectors, store
from dispatch.jobs import Cut, Dispatched, QuotaExceeded, assign_frame, job_body
from dispatch.outbox import json_text
from dispatch.sessions import SessionSpec
from pools.rules import auto_pool_name, one_way_need

log = logging.getLogger("dispatch.rooms")


@dataclass(frozen=True)
class RoomJob:
    """A job the speaker's socket placed for its room."""

    room_code: str
    group: str  # the language whose members get its ending ('': the speaker's own job)
    source: str  # the speaker's language, whose members get the utterance's transcript ('': none)
    utterance_index: int


@dataclass(frozen=True)
class Plan:
    groups: list[str]  # the other members' languages, other than the speaker's source language
    transcript: bool  # some other member's language is the speaker's source language
    source: str


def source_language(spec: SessionSpec) -> str:
    """The language a member speaks, when known before recognition ('' for a two-way session)."""
    return "" if spec.mode == "two_way_auto" else spec.src_lang


async def room_plan(*, room_code: str, spec: SessionSpec) -> Plan | None:
    """What an utterance of this member becomes, from the room's members now; None when it is
    not a member (any more)."""
    entries = await room_selectors.room_member_entries(room_code)
    if not any(entry["session_id"] == spec.session_id for entry in entries):
        return None
    source = source_language(spec)
    others = {entry["lang"] for entry in entries if entry["session_id"] != spec.session_id}
    return Plan(groups=sorted(others - {source}), transcript=source in others, source=source)


def group_spec(spec: SessionSpec, language: str) -> SessionSpec:
    """The speaker's session as a job for one language group sees it: a one-way speaker's job
    goes from its source language to the group's; a two-way speaker's keeps its own route."""
    if spec.mode == "two_way_auto":
        return dataclasses.replace(spec, tgt_lang=language)
    need = one_way_need(spec.src_lang, language)
    return dataclasses.replace(spec, tgt_lang=language, need=need, auto_pool=auto_pool_name(need))


async def room_submit(
    *,
    spec: SessionSpec,
    cut: Cut,
    room_code: str,
    groups: list[str],
    on_dispatched: Callable[[Dispatched, str], Awaitable[None]],
) -> bool:
    """Place one utterance as one job per group in one script call. A group whose route has no
    free node now gets a waiting job (the worker retries it; it ends alone with
    NO_AVAILABLE_NODE when the dispatch wait is over). ``on_dispatched`` runs for each job (a
    waiting one has no node) before any frame goes to a node. False when the speaker is not a
    member of the room (any more); ``QuotaExceeded`` when the jobs would take the speaker's
    tenant past its audio quota (nothing placed)."""
    while True:
        bodies: dict[str, str] = {}
        groups_of: dict[str, str] = {}
        args: list[Any] = []
        for language in groups:
            job_id = "job-" + secrets.token_hex(16)
            target = group_spec(spec, language)
            bodies[job_id], groups_of[job_id] = job_body(target, cut, job_id), language
            args += [job_id, language, target.need, target.auto_pool, bodies[job_id]]
        reply = await store.run(
            "room_submit",
            room_code,
            spec.session_id,
            spec.channel,
            spec.trace_id,
            cut.utterance_index,
            cut.cut_ms,
            random.randrange(1, 2**31 - 1),
            int(settings.SCHEDULER_JOB_TIMEOUT_S * 1000),
            history.job_index_keep_s(),
            int(settings.SCHEDULER_DISPATCH_WAIT_S * 1000),
            spec.tenant,
            cut.audio_ms,
            *args,
        )
        if reply[0] == "gone":
            return False
        if reply[0] == "quota":
            raise QuotaExceeded(spec.session_id)
        if reply[0] == "ok":
            break
    placed = [reply[index : index + 4] for index in range(1, len(reply), 4)]
    for job_id, node_id, _channel, pool in placed:
        await on_dispatched(Dispatched(job_id=job_id, node_id=node_id, pool=pool), groups_of[job_id])
    for job_id, node_id, channel, pool in placed:
        if node_id:
            await outbox.send(channel, {"type": "job.assign", "text": assign_frame(bodies[job_id], 1)})
        else:
            log.info("room job waits for a node", extra={"job_id": job_id, "pool": pool, "room": room_code})
    return True


async def room_deliver(
    *, job: RoomJob, speaker: str, texts: list[str], transcript: dict[str, Any] | None = None
) -> None:
    """Send a room job's ending frames to the members of its group, and ``transcript`` (the
    utterance's first result, as same-language members get it) to the members who speak the
    speaker's language. Nobody gets them when the room is gone."""
    reply = await store.run("room_deliver", job.room_code, speaker, job.group, job.source if transcript else "")
    if not reply:
        return
    group, heard = reply
    if texts:
        for index in range(0, len(group), 2):
            await outbox.send_room_frames(group[index + 1], group[index], texts)
    if transcript is not None:
        text = json_text(transcript)
        for index in range(0, len(heard), 2):
            await outbox.send_room_frames(heard[index + 1], heard[index], [text])
