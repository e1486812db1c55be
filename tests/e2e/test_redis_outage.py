"""Redis stops under load and comes back: once from its append-only file (data kept) and once
empty. These tests start a private redis-server of their own (the embedded binary), whatever
REDIS_URL says, so they never stop a shared server."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest

from schedulerproj.embedded_redis import EmbeddedRedis
from tests.clients import FakeBrowser, FakeNode, eventually
from tests.traffic import status

pytestmark = pytest.mark.e2e

SETTINGS = {"SCHEDULER_DISPATCH_WAIT_S": 3, "SCHEDULER_HEARTBEAT_INTERVAL_S": 5}
OUTAGE_S = 2.5


@pytest.fixture
def private_redis(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis", append_only=True).start()
    yield server
    server.stop()


async def loaded(server, token, sessions: int = 3):
    """A node holding one job of each of several sessions."""
    node = await FakeNode.connect(server.ws(), token)
    await node.register(langs=["zh", "en"], slots=8)
    browsers, jobs = [], []
    for _ in range(sessions):
        browser = await FakeBrowser.connect(server.ws())
        await browser.init("zh", "en")
        await browser.utterance(0)
        jobs.append(await node.expect("job_assign"))
        browsers.append(browser)
    return node, browsers, jobs


async def test_outage_then_redis_returns_with_its_data(stack, node_token, private_redis):
    server = stack(REDIS_URL=private_redis.url, **SETTINGS)
    node, browsers, jobs = await loaded(server, node_token)
    await asyncio.sleep(OUTAGE_S)  # the processes have watched the store for a while
    private_redis.stop()

    # sockets stay open and answer what needs no store
    for browser in browsers:
        await browser.send({"type": "client_heartbeat", "session_id": browser.session_id, "timestamp": 1})
        assert (await browser.expect("server_heartbeat"))["session_id"] == browser.session_id
    # a newly cut job is answered at once (not after the dispatch wait) that the store is down
    started = time.monotonic()
    await browsers[0].utterance(1)
    error = await browsers[0].expect("error")
    assert error["code"] == "INTERNAL_ERROR" and error["utterance_index"] == 1
    assert "store" in error["message"] and "Traceback" not in error["message"]
    assert time.monotonic() - started < SETTINGS["SCHEDULER_DISPATCH_WAIT_S"]
    assert await asyncio.to_thread(status, f"{server.http()}/healthz") == 200
    assert await asyncio.to_thread(status, f"{server.http()}/readyz") == 503
    await asyncio.sleep(OUTAGE_S)

    private_redis.start()  # from its append-only file
    await eventually(lambda: status(f"{server.http()}/readyz") == 200, timeout=15)
    # jobs dispatched before the outage end normally
    for job in jobs:
        await node.send(node.result_for(job))
    for browser in browsers:
        result = await browser.ending()
        assert result["type"] == "translation_result" and result["utterance_index"] == 0
    # and service resumes by itself, without restarting anything
    await browsers[1].utterance(1)
    job = await node.expect("job_assign", timeout=15)
    await node.send(node.result_for(job))
    assert (await browsers[1].ending())["type"] == "translation_result"


async def test_redis_returns_empty_nodes_register_again_and_jobs_end(stack, node_token, private_redis):
    server = stack(REDIS_URL=private_redis.url, **SETTINGS)
    node, browsers, jobs = await loaded(server, node_token)
    node_id = node.node_id
    await asyncio.sleep(OUTAGE_S)
    private_redis.stop()
    shutil.rmtree(private_redis.directory)
    await asyncio.sleep(OUTAGE_S)
    private_redis.start()  # empty

    # the node is told to register again; the sessions' unfinished jobs end
    assert await node.closed(timeout=15) == 1012
    for browser in browsers:
        error = await browser.expect("error", timeout=15)
        assert error["code"] == "INTERNAL_ERROR" and error["utterance_index"] == 0
    again = await FakeNode.connect(server.ws(), node_token)
    ack = await again.register(langs=["zh", "en"], node_id=node_id)
    assert ack == {"type": "node_register_ack", "node_id": node_id, "message": "registered", "status": "ready"}
    for index, browser in enumerate(browsers):
        await browser.utterance(1)
        job = await again.expect("job_assign", timeout=15)
        assert job["session_id"] == browser.session_id and job["attempt_id"] == 1
        await again.send(again.result_for(job))
        result = await browser.ending()
        assert result["type"] == "translation_result" and result["utterance_index"] == 1, index
    # a late answer for a job the store forgot reaches no one
    await again.send(again.result_for(jobs[0]))
    assert [f for f in await browsers[0].silent(0.5) if f["type"] != "ui_event"] == []
