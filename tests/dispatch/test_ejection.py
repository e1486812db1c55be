"""Failing nodes step aside (outlier ejection), in-process through ``dispatch.jobs`` and
``dispatch.nodes`` against the real Redis: the count of failures in a row, the doubling and its
cap, a success ending both, the half-of-a-pool rule, the last resort, and ending an ejection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from dispatch import (
    fleet,
    fleet_summary,
    jobs,
    keys,
    loop_lag,
    metrics,
    nodes,
    outbox,
    protocol,
    selectors,
    sessions,
    store,
)
from dispatch.protocol import ErrorCode
from tests.clients import AUDIO_B64, register_frame

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = sessions.SessionSpec(
    session_id="s-eject001", trace_id="t-eject", channel="test.session!eject", need="zh>en", auto_pool="auto:zh-en",
    src_lang="zh", tgt_lang="en", dialect=None, features={}, mode="one_way", lang_a=None, lang_b=None,
    auto_langs=None, enable_streaming_asr=False,
)


@pytest.fixture
def short(settings: Any) -> Any:
    settings.SCHEDULER_EJECT_AFTER = 3
    settings.SCHEDULER_EJECT_BASE_S = 1.0
    settings.SCHEDULER_EJECT_MAX_S = 2.5
    settings.SCHEDULER_DISPATCH_WAIT_S = 0.3
    return settings


async def register(count: int, langs: list[str] | None = None) -> list[str]:
    frame = protocol.decode_node_frame(json.dumps(register_frame(langs or ["zh", "en"], slots=4)).encode())
    ids = []
    for _ in range(count):
        registered = await nodes.node_register(
            frame=frame, token="open", channel="test.node!eject", current_id=None  # type: ignore[arg-type]
        )
        ids.append(registered.node_id)
    return ids


async def submit(index: int) -> jobs.Dispatched:
    cut = jobs.Cut(
        utterance_index=index, audio_b64=AUDIO_B64, audio_format="opus", sample_rate=16000,
        pipeline={"use_asr": True}, turn_id="", manual=True, timeout=False, max_duration=False,
        cut_ms=outbox.now_ms(),
    )

    async def dispatched(_job: Any) -> None:
        return None

    return await jobs.job_submit(spec=SPEC, cut=cut, on_dispatched=dispatched)


def result(job_id: str, node_id: str, code: str | None = None) -> protocol.JobResult:
    frame: dict[str, Any] = {
        "type": "job_result", "job_id": job_id, "attempt_id": 1, "node_id": node_id,
        "session_id": SPEC.session_id, "utterance_index": 0, "success": code is None, "text_asr": "a",
        "text_translated": "b", "trace_id": None,
    }
    if code is not None:
        frame["error"] = {"code": code, "message": "broken"}
    return protocol.decode_node_frame(json.dumps(frame).encode())  # type: ignore[return-value]


async def holder(job_id: str) -> str:
    job = await selectors.job_routing(job_id)
    return job["node"] if job else ""


async def run_job(index: int, failing: set[str], code: str = "PROCESSING_ERROR") -> list[str]:
    """One job to its end: every node in ``failing`` that gets it fails it, any other answers.
    Returns the nodes it went to, in order."""
    job = await submit(index)
    went = []
    while node_id := await holder(job.job_id):
        went.append(node_id)
        await jobs.job_finish(node_id=node_id, result=result(job.job_id, node_id, code if node_id in failing else None))
    return went


async def jobs_on(node_id: str, times: int, failing: set[str], code: str = "PROCESSING_ERROR") -> None:
    """Run jobs until ``node_id`` has had ``times`` of them (random picks decide where each
    goes); the nodes in ``failing`` fail theirs."""
    had = 0
    for index in range(300):
        had += (await run_job(index, failing, code)).count(node_id)
        if had >= times:
            assert had == times
            return
    raise AssertionError(f"{node_id} got no job")


async def fail_on(bad: str, times: int, code: str = "PROCESSING_ERROR") -> None:
    await jobs_on(bad, times, {bad}, code)


def record(node_id: str) -> dict[str, str]:
    return selectors.node_record(node_id)


def ejected_for_ms(node_id: str) -> int:
    fields = record(node_id)
    if "eject_until" not in fields:
        return 0
    return int(fields["eject_until"]) - int(fields["ejected_ms"])


async def redis_now_ms() -> int:
    seconds, micros = await store.async_client().time()
    return int(seconds) * 1000 + int(micros) // 1000


async def wait_out(node_id: str) -> None:
    """Until the node's ejection has passed (Redis clock)."""
    left_ms = int(record(node_id)["eject_until"]) - await redis_now_ms()
    await asyncio.sleep(max(0, left_ms + 20) / 1000)


async def test_three_failures_in_a_row_eject_then_each_ejection_doubles_up_to_the_cap(published, short):
    bad, *good = await register(3)
    await fail_on(bad, 2)
    assert "eject_until" not in record(bad)
    await fail_on(bad, 1)
    fields = record(bad)
    assert ejected_for_ms(bad) == 1000
    assert (fields["eject_reason"], fields["eject_code"], fields["eject_count"]) == ("error", "PROCESSING_ERROR", "1")
    # ejected: no new job goes there
    index = 0
    while await redis_now_ms() < int(fields["eject_until"]) - 100:
        assert bad not in await run_job(index, {bad})
        index += 1
    assert index > 3
    await wait_out(bad)
    await fail_on(bad, 3)
    assert ejected_for_ms(bad) == 2000
    await wait_out(bad)
    await fail_on(bad, 3)
    assert ejected_for_ms(bad) == 2500  # SCHEDULER_EJECT_MAX_S
    await fleet_summary.summary_compute("test")  # the worker's once-a-second pass
    (summary, live), lags = await fleet.fleet_scrape(), await loop_lag.loop_lags()
    text = metrics.metrics_text(summary, live, lags)
    assert 'scheduler_node_ejections_total{reason="error"} 3' in text
    assert "scheduler_nodes_ejected 1" in text


async def test_a_success_ends_the_run_of_failures_and_the_doubling(published, short):
    bad, _good = await register(2)
    await fail_on(bad, 2)
    await jobs_on(bad, 1, failing=set())  # it answers one
    assert record(bad)["fails_in_row"] == "0"
    await fail_on(bad, 2)
    assert "eject_until" not in record(bad)
    await fail_on(bad, 1)
    assert ejected_for_ms(bad) == 1000
    await wait_out(bad)
    await jobs_on(bad, 1, failing=set())  # back, and it answers
    await fail_on(bad, 3)
    assert ejected_for_ms(bad) == 1000, "a success after the ejection starts the doubling over"


async def test_timeouts_count_and_model_not_available_does_not(published, short):
    short.SCHEDULER_MODEL_BLOCK_S = 0  # so the node keeps getting jobs of its pool
    bad, _good = await register(2)
    await fail_on(bad, 5, code=ErrorCode.MODEL_NOT_AVAILABLE)
    assert "eject_until" not in record(bad) and record(bad).get("fails_in_row", "0") == "0"
    for index in range(300):
        job = await submit(index)
        if job.node_id == bad:
            attempt = await store.async_client().hget(keys.job(job.job_id), "attempt")
            assert await jobs.job_reassign(job_id=job.job_id, reason="timeout", attempt=attempt)
            if record(bad).get("eject_until"):
                break
        other = await holder(job.job_id)
        await jobs.job_finish(node_id=other, result=result(job.job_id, other))
    assert (record(bad)["eject_reason"], record(bad)["eject_code"]) == ("timeout", "JOB_TIMEOUT")
    assert int(record(bad)["jobs_failed"]) == 8


async def test_at_most_half_of_a_pools_ready_nodes_are_ejected(published, short):
    ids = await register(2)
    for index in range(20):
        await run_job(index, set(ids))  # each fails every job it gets
    ejected = [node_id for node_id in ids if "eject_until" in record(node_id)]
    assert len(ejected) == 1, "one of two may step aside, never both"
    (kept,) = set(ids) - set(ejected)
    assert kept in selectors.pool_members("auto:zh-en")
    assert int(record(kept)["jobs_failed"]) >= 6
    stories = [await selectors.job_story(job_id) for job_id in await selectors.session_job_ids(SPEC.session_id)]
    refused = [
        event for story in stories if story for event in json.loads(story.get("events") or "[]")
        if event["event"] == "not_ejected"
    ]
    assert refused and {event["node"] for event in refused} == {kept}
    assert refused[0]["pool"] in json.loads(record(kept)["pools"])


async def test_the_last_ready_node_of_a_pool_is_never_ejected(published, short):
    (only,) = await register(1)
    for index in range(7):
        assert await run_job(index, {only}) == [only]
    assert "eject_until" not in record(only)
    assert int(record(only)["jobs_failed"]) == 7


async def test_a_pool_left_with_only_ejected_nodes_still_gets_them(published, short, settings):
    settings.SCHEDULER_EJECT_BASE_S = settings.SCHEDULER_EJECT_MAX_S = 30
    bad, good = await register(2)
    await fail_on(bad, 3)
    assert ejected_for_ms(bad) == 30_000
    await nodes.node_offline(node_id=good, channel="test.node!eject")
    job = await submit(1000)
    assert job.node_id == bad
    story = await selectors.job_story(job.job_id)
    assert story is not None
    assert json.loads(story["attempts"])[0]["looked"][0]["candidates"] == [f"{bad}=ejected"]


async def test_ending_an_ejection_lets_the_node_take_jobs_at_once(published, short, settings):
    settings.SCHEDULER_EJECT_BASE_S = settings.SCHEDULER_EJECT_MAX_S = 30
    bad, _good = await register(2)
    await fail_on(bad, 3)
    assert await store.async_client().zscore(keys.ejected("auto:zh-en"), bad)
    assert await nodes.node_eject_end(node_id=bad) is True
    assert "eject_until" not in record(bad) and record(bad)["eject_count"] == "0"
    assert await store.async_client().zscore(keys.ejected("auto:zh-en"), bad) is None
    assert await nodes.node_eject_end(node_id=bad) is False
    await jobs_on(bad, 1, failing=set())  # it gets jobs again
    with pytest.raises(nodes.UnknownNode):
        await nodes.node_eject_end(node_id="node-00000000")
