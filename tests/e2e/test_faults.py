"""Each timeout and ending rule under faults, on real processes (settings shortened)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from dispatch import selectors
from tests.clients import FakeBrowser, FakeNode, eventually
from tests.servers import BASE_DIR

pytestmark = pytest.mark.e2e

FAST = {
    "SCHEDULER_JOB_TIMEOUT_S": 1.5,
    "SCHEDULER_DISPATCH_WAIT_S": 1,
    "SCHEDULER_MAX_ATTEMPTS": 3,
    "SCHEDULER_HEARTBEAT_INTERVAL_S": 1,
}
MARGIN = 1.5  # seconds of slack on every timer: worker ticks, two processes, a busy machine


async def node(server, token, **kwargs) -> FakeNode:
    client = await FakeNode.connect(server.ws(), token)
    await client.register(langs=["zh", "en"], **kwargs)
    return client


async def browser_for(server) -> FakeBrowser:
    browser = await FakeBrowser.connect(server.ws())
    await browser.init("zh", "en")
    return browser


def used(node_id: str) -> int:
    return int(selectors.node_record(node_id).get("used", 0))


async def keep_alive(*nodes: FakeNode) -> None:
    """Heartbeat every 0.5 s so leases (3 × 1 s) do not expire during a test."""
    while True:
        for client in nodes:
            await client.heartbeat()
        await asyncio.sleep(0.5)


async def test_timed_out_attempt_is_cancelled_and_moves_on(stack, node_token):
    server = stack(**FAST)
    frozen = await node(server, node_token)
    alive = asyncio.ensure_future(keep_alive(frozen))
    browser = await browser_for(server)
    await browser.utterance(0)
    first = await frozen.expect("job_assign")
    assigned_at = time.monotonic()
    spare = await node(server, node_token)
    alive.cancel()
    alive = asyncio.ensure_future(keep_alive(frozen, spare))
    cancel = await frozen.expect("job_cancel")
    waited = time.monotonic() - assigned_at
    assert cancel == {"type": "job_cancel", "job_id": first["job_id"], "reason": "timeout"}
    assert 1.5 - 0.1 <= waited <= 1.5 + MARGIN
    second = await spare.expect("job_assign")
    assert second["job_id"] == first["job_id"] and second["attempt_id"] == 2
    assert second["utterance_index"] == 0 and second["audio"] == first["audio"]
    await spare.send(spare.result_for(second))
    result = await browser.ending()
    assert result["type"] == "translation_result" and spare.node_id in result["text_translated"]
    await asyncio.sleep(0.3)
    assert (used(frozen.node_id), used(spare.node_id)) == (0, 0)
    alive.cancel()


async def test_last_attempt_timing_out_ends_with_job_timeout(stack, node_token):
    server = stack(**FAST)
    frozen = await node(server, node_token)
    alive = asyncio.ensure_future(keep_alive(frozen))
    browser = await browser_for(server)
    await browser.utterance(0)
    await frozen.expect("job_assign")
    started = time.monotonic()
    ending = await browser.ending(timeout=10)
    waited = time.monotonic() - started
    assert ending["type"] == "error" and ending["code"] == "JOB_TIMEOUT" and ending["utterance_index"] == 0
    # the attempt's timeout, then the dispatch wait for an untried node
    assert 1.5 + 1 - 0.2 <= waited <= 1.5 + 1 + MARGIN
    assert await frozen.expect("job_cancel")
    assert used(frozen.node_id) == 0
    alive.cancel()


async def test_lost_node_loses_its_jobs_at_once(stack, node_token):
    server = stack(**FAST)
    doomed = await node(server, node_token)
    browser = await browser_for(server)
    await browser.utterance(0)
    first = await doomed.expect("job_assign")
    spare = await node(server, node_token)
    await doomed.close()
    second = await spare.expect("job_assign", timeout=1)  # at once, not after the job timeout
    assert second["job_id"] == first["job_id"] and second["attempt_id"] == 2
    await spare.send(spare.result_for(second))
    assert (await browser.ending())["type"] == "translation_result"
    assert [f for f in await browser.silent(0.5) if f["type"] != "ui_event"] == []
    assert selectors.node_record(doomed.node_id)["status"] == "offline"


async def test_failed_result_moves_on_then_ends_with_the_node_code(stack, node_token):
    server = stack(**FAST)
    a, b = await node(server, node_token), await node(server, node_token)
    browser = await browser_for(server)
    await browser.utterance(0)
    failure = {"success": False, "error": {"code": "PROCESSING_ERROR", "message": "decoder crashed"}}
    holder, other = await first_holder(a, b)
    job = await holder.expect("job_assign")
    await holder.send(holder.result_for(job, **failure))
    retry = await other.expect("job_assign")
    assert retry["attempt_id"] == 2
    await other.send(other.result_for(retry, success=False, error={"code": "MODEL_NOT_AVAILABLE", "message": "no model"}))
    ending = await browser.ending()
    assert ending["type"] == "error" and ending["code"] == "MODEL_NOT_AVAILABLE"
    assert "no model" in ending["message"]
    assert [f["type"] for f in await holder.silent(0.3)] == []  # no cancel follows a failed result
    assert (used(a.node_id), used(b.node_id)) == (0, 0)


async def first_holder(a: FakeNode, b: FakeNode) -> tuple[FakeNode, FakeNode]:
    """Which of two nodes got the first job (it is random): (holder, other); the job_assign
    stays queued on the holder."""
    holder, frame = await asyncio.wait_for(first_assign(a, b), 10)
    holder.backlog.insert(0, frame)
    return holder, (b if holder is a else a)


async def test_model_not_available_keeps_the_node_out_of_the_pool(stack, node_token):
    server = stack(**FAST, SCHEDULER_MODEL_BLOCK_S=30)
    a, b = await node(server, node_token), await node(server, node_token)
    browser = await browser_for(server)
    await browser.utterance(0)
    holder, other = await first_holder(a, b)
    job = await holder.expect("job_assign")
    await holder.send(holder.result_for(job, success=False, error={"code": "MODEL_NOT_AVAILABLE", "message": "x"}))
    retry = await other.expect("job_assign")
    await other.send(other.result_for(retry))
    assert (await browser.ending())["type"] == "translation_result"
    for index in range(1, 9):
        await browser.utterance(index)
        frame = await other.expect("job_assign")
        await other.send(other.result_for(frame))
        assert (await browser.ending())["type"] == "translation_result"
    assert [f for f in await holder.silent(0.3) if f["type"] == "job_assign"] == []


async def test_exactly_one_ending_for_duplicates_and_late_results(stack, node_token):
    server = stack(**FAST)
    slow = await node(server, node_token)
    alive = asyncio.ensure_future(keep_alive(slow))
    browser = await browser_for(server)
    await browser.utterance(0)
    first = await slow.expect("job_assign")
    quick = await node(server, node_token)
    alive.cancel()
    alive = asyncio.ensure_future(keep_alive(slow, quick))
    assert (await slow.expect("job_cancel"))["reason"] == "timeout"
    second = await quick.expect("job_assign")
    # the earlier attempt's late result arrives first: it wins, the current node is cancelled
    await slow.send(slow.result_for(first))
    ending = await browser.ending()
    assert ending["type"] == "translation_result" and slow.node_id in ending["text_translated"]
    assert await quick.expect("job_cancel") == {
        "type": "job_cancel", "job_id": first["job_id"], "reason": "completed", "trace_id": browser.trace_id
    }
    await quick.send(quick.result_for(second))
    await slow.send(slow.result_for(first))  # twice
    assert [f for f in await browser.silent(0.5) if f["type"] != "ui_event"] == []
    assert (used(slow.node_id), used(quick.node_id)) == (0, 0)
    alive.cancel()


async def test_silent_node_lease_expires_closed_1012_and_jobs_move_on(stack, node_token):
    server = stack(**FAST)
    silent = await node(server, node_token)
    browser = await browser_for(server)
    await browser.utterance(0)
    job = await silent.expect("job_assign")
    spare = await node(server, node_token)
    alive = asyncio.ensure_future(keep_alive(spare))
    started = time.monotonic()
    code = await silent.closed(timeout=10)
    assert code == 1012
    assert time.monotonic() - started <= 3 + MARGIN  # lease = 3 × heartbeat interval
    moved = await spare.expect("job_assign")
    assert moved["job_id"] == job["job_id"] and moved["attempt_id"] == 2
    await spare.send(spare.result_for(moved))
    assert (await browser.ending())["type"] == "translation_result"
    alive.cancel()


async def test_reconnect_with_same_id_replaces_old_socket_and_jobs_move_on(stack, node_token):
    server = stack(**FAST)
    old = await node(server, node_token)
    browser = await browser_for(server)
    await browser.utterance(0)
    job = await old.expect("job_assign")
    new = await FakeNode.connect(server.ws(), node_token)
    ack = await new.register(langs=["zh", "en"], node_id=old.node_id)
    assert ack["node_id"] == old.node_id
    alive = asyncio.ensure_future(keep_alive(new))  # FAST leases are short: a busy machine must not end them
    assert await old.closed() == 4409
    spare = await node(server, node_token)
    alive.cancel()
    alive = asyncio.ensure_future(keep_alive(new, spare))
    moved = await spare.expect("job_assign")  # never to the same node twice
    assert moved["job_id"] == job["job_id"] and moved["attempt_id"] == 2
    await spare.send(spare.result_for(moved))
    assert (await browser.ending())["type"] == "translation_result"
    alive.cancel()


def drain_command(stack_env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "node_drain", *args],
        cwd=BASE_DIR, env=stack_env, capture_output=True, text=True, timeout=60,
    )


async def test_drain_finishes_running_jobs_takes_no_new_ones_and_survives_reconnect(stack, node_token):
    server = stack(**FAST)
    drained = await node(server, node_token)
    alive = asyncio.ensure_future(keep_alive(drained))
    browser = await browser_for(server)
    await browser.utterance(0)
    job = await drained.expect("job_assign")
    done = await asyncio.to_thread(drain_command, server.env, drained.node_id, "--reason", "maintenance")
    assert done.returncode == 0 and "draining" in done.stdout
    assert await drained.expect("node_control") == {"type": "node_control", "command": "drain", "reason": "maintenance"}
    other = await node(server, node_token)
    alive.cancel()
    alive = asyncio.ensure_future(keep_alive(drained, other))
    await browser.utterance(1)
    assert (await other.expect("job_assign"))["utterance_index"] == 1
    await drained.send(drained.result_for(job))  # its running job finishes normally
    assert await drained.expect("node_control") == {"type": "node_control", "command": "drained"}
    # the drain survives a reconnect
    await drained.close()
    again = await FakeNode.connect(server.ws(), node_token)
    ack = await again.register(langs=["zh", "en"], node_id=drained.node_id)
    assert ack["status"] == "draining"
    assert selectors.pool_members("auto:zh-en") == [other.node_id]
    resumed = await asyncio.to_thread(drain_command, server.env, drained.node_id, "--resume")
    assert resumed.returncode == 0 and "ready" in resumed.stdout
    assert (await again.expect("node_control"))["command"] == "resume"
    await eventually(lambda: selectors.pool_members("auto:zh-en") == sorted([other.node_id, again.node_id]))
    unknown = await asyncio.to_thread(drain_command, server.env, "node-00000000")
    assert unknown.returncode == 1 and "no node" in unknown.stderr
    alive.cancel()


async def test_node_drains_itself(stack, node_token):
    server = stack(**FAST)
    client = await node(server, node_token)
    await client.send({"type": "node_control", "command": "drain"})
    assert (await client.expect("node_control"))["command"] == "drain"
    assert (await client.expect("node_control"))["command"] == "drained"  # idle: at once
    assert selectors.node_record(client.node_id)["status"] == "draining"
    await client.send({"type": "node_control", "command": "resume"})
    assert (await client.expect("node_control"))["command"] == "resume"
    await eventually(lambda: selectors.node_record(client.node_id)["status"] == "ready")


async def test_frames_lost_on_the_channel_layer_are_recovered(stack, node_token):
    # This server process loses its 1st job_assign and its 2nd job ending on the channel layer.
    server = stack(
        **{**FAST, "SCHEDULER_MAX_ATTEMPTS": 2, "SCHEDULER_DISPATCH_WAIT_S": 0.5},
        server_env={"CHANNEL_LAYER_BACKEND": "tests.lossy_layer.LossyLayer", "LOSSY_DROP": "job.assign:1,job.ended:2"},
    )
    a = await node(server, node_token)
    b = await node(server, node_token)
    alive = asyncio.ensure_future(keep_alive(a, b))
    browser = await browser_for(server)
    await browser.utterance(0)  # its job_assign is lost: the attempt times out and moves on
    assign = await asyncio.wait_for(first_assign(a, b), 10)
    assert assign[1]["attempt_id"] == 2
    await assign[0].send(assign[0].result_for(assign[1]))
    first = await browser.ending()
    assert first["type"] == "translation_result" and first["utterance_index"] == 0
    await browser.utterance(1)  # its result is lost on the way to the browser: recovered
    holder, job = await asyncio.wait_for(first_assign(a, b), 10)
    await holder.send(holder.result_for(job))
    deadline = 0.5 + 2 * (1.5 + 0.5) + 5
    recovered = await browser.ending(timeout=deadline + 5)
    assert recovered["type"] == "translation_result" and recovered["utterance_index"] == 1
    assert recovered["text_translated"] == f"translated 1 by {holder.node_id}"
    alive.cancel()


async def first_assign(a: FakeNode, b: FakeNode):
    while True:
        for client in (a, b):
            try:
                return client, await client.expect("job_assign", timeout=0.1)
            except TimeoutError:
                pass
