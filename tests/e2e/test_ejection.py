"""Failing nodes step aside, on real processes: a node that fails every job is ejected after
three failures in a row, gets nothing while ejected, comes back, and is ejected for twice as long
on its next failures; staff can end an ejection; the last ready node of a pool is never ejected."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from typing import Any

import pytest
import websockets

from dispatch import selectors, store
from tests.clients import FakeBrowser, FakeNode, eventually
from tests.servers import BASE_DIR

pytestmark = pytest.mark.e2e

FAILURE = {"success": False, "error": {"code": "PROCESSING_ERROR", "message": "decoder crashed"}}
SHORT = {"SCHEDULER_EJECT_AFTER": 3, "SCHEDULER_EJECT_BASE_S": 2, "SCHEDULER_EJECT_MAX_S": 60,
         "SCHEDULER_DISPATCH_WAIT_S": 0.5, "SCHEDULER_RATE_LIMIT_PER_S": 1000}


class Answering:
    """A node that answers every job at once, with a result or (``failing``) an error."""

    def __init__(self, node: FakeNode, *, failing: bool) -> None:
        self.node, self.failing = node, failing
        self.jobs: list[dict[str, Any]] = []
        self.task = asyncio.ensure_future(self.serve())

    async def serve(self) -> None:
        try:
            while True:
                frame = await self.node.recv(timeout=3600)
                if frame["type"] == "job_assign":
                    self.jobs.append(frame)
                    await self.node.send(self.node.result_for(frame, **(FAILURE if self.failing else {})))
        except websockets.ConnectionClosed:
            pass


async def start(server: Any, token: str, *, failing: bool) -> Answering:
    node = await FakeNode.connect(server.ws(), token)
    await node.register(langs=["zh", "en"])
    return Answering(node, failing=failing)


class Speaker:
    def __init__(self, browser: FakeBrowser) -> None:
        self.browser = browser
        self.index = 0
        self.job_ids: list[str] = []

    async def say(self) -> dict[str, Any]:
        """One utterance to its ending."""
        await self.browser.utterance(self.index)
        self.index += 1
        ending = await self.browser.ending()
        self.job_ids.append(ending["job_id"])
        return ending


async def speaker_for(server: Any) -> Speaker:
    browser = await FakeBrowser.connect(server.ws())
    await browser.init("zh", "en")
    return Speaker(browser)


def record(node_id: str) -> dict[str, str]:
    return selectors.node_record(node_id)


async def redis_now_ms() -> int:
    seconds, micros = await store.async_client().time()
    return int(seconds) * 1000 + int(micros) // 1000


async def until_it_fails(speaker: Speaker, bad: Answering, count: int) -> None:
    """Utterances until ``bad`` has had ``count`` more jobs; each still ends with a result
    (the job moves on to the good node)."""
    target = len(bad.jobs) + count
    for _ in range(100):
        assert (await speaker.say())["type"] == "translation_result"
        if len(bad.jobs) >= target:
            assert len(bad.jobs) == target
            return
    raise AssertionError("the failing node got no job")


async def nothing_while_ejected(speaker: Speaker, bad: Answering) -> int:
    """Utterances until shortly before the ejection ends: none reaches ``bad``. Returns how many."""
    until, had, sent = int(record(bad.node.node_id)["eject_until"]), len(bad.jobs), 0
    while await redis_now_ms() < until - 300:
        ending = await speaker.say()
        assert ending["type"] == "translation_result"
        sent += 1
        await asyncio.sleep(0.02)
    assert len(bad.jobs) == had
    return sent


def metrics_page(server: Any) -> str:
    with urllib.request.urlopen(f"{server.http()}/metrics", timeout=5) as response:
        return str(response.read().decode())


def ejected_for_ms(node_id: str) -> int:
    fields = record(node_id)
    return int(fields["eject_until"]) - int(fields["ejected_ms"])


async def test_a_failing_node_is_ejected_comes_back_and_is_ejected_twice_as_long(stack, node_token):
    server = stack(**SHORT)
    bad = await start(server, node_token, failing=True)
    good = await start(server, node_token, failing=False)
    speaker = await speaker_for(server)
    await until_it_fails(speaker, bad, 2)
    assert "eject_until" not in record(bad.node.node_id)
    await until_it_fails(speaker, bad, 1)
    fields = record(bad.node.node_id)
    assert ejected_for_ms(bad.node.node_id) == 2000
    assert (fields["eject_reason"], fields["eject_code"], fields["eject_count"]) == ("error", "PROCESSING_ERROR", "1")
    story = await selectors.job_story(speaker.job_ids[-1])
    assert story is not None
    assert [event["event"] for event in json.loads(story["events"])] == ["failed", "ejected"]
    first = len(speaker.job_ids)
    assert await nothing_while_ejected(speaker, bad) >= 3
    during = speaker.job_ids[first:]
    # it comes back once the ejection is over; three more failures eject it for twice as long
    left_ms = int(fields["eject_until"]) - await redis_now_ms()
    await asyncio.sleep(max(0, left_ms + 50) / 1000)
    await until_it_fails(speaker, bad, 3)
    assert ejected_for_ms(bad.node.node_id) == 4000
    assert record(bad.node.node_id)["eject_count"] == "2"
    page = await asyncio.to_thread(metrics_page, server)
    assert 'scheduler_node_ejections_total{reason="error"} 2' in page
    assert "scheduler_nodes_ejected 1" in page
    first = len(speaker.job_ids)
    assert await nothing_while_ejected(speaker, bad) >= 3
    during += speaker.job_ids[first:]
    # the stories of jobs placed meanwhile name it when the pick looked at it (two members: the
    # random order puts it first half the time)
    looked = [
        candidate
        for story in [await selectors.job_story(job_id) for job_id in during]
        for attempt in json.loads((story or {}).get("attempts") or "[]")
        for entry in attempt["looked"]
        for candidate in entry["candidates"]
    ]
    assert f"{bad.node.node_id}=ejected" in looked
    assert all(candidate.startswith(good.node.node_id) or candidate.endswith("=ejected") for candidate in looked)


def eject_end_command(env: dict[str, str], node_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "node_eject_end", node_id],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )


async def test_staff_end_an_ejection_from_the_command_line(stack, node_token):
    server = stack(**SHORT | {"SCHEDULER_EJECT_BASE_S": 120})
    bad = await start(server, node_token, failing=True)
    await start(server, node_token, failing=False)
    speaker = await speaker_for(server)
    await until_it_fails(speaker, bad, 3)
    until = int(record(bad.node.node_id)["eject_until"])
    done = await asyncio.to_thread(eject_end_command, server.env, bad.node.node_id)
    assert done.returncode == 0 and done.stdout.strip() == f"{bad.node.node_id}: ejection ended"
    await until_it_fails(speaker, bad, 1)  # long before its ejection would have ended
    assert await redis_now_ms() < until
    missing = await asyncio.to_thread(eject_end_command, server.env, "node-00000000")
    assert missing.returncode != 0 and "no node node-00000000" in missing.stderr


async def test_the_last_ready_node_of_a_pool_is_never_ejected(stack, node_token):
    server = stack(**SHORT)
    only = await start(server, node_token, failing=True)
    speaker = await speaker_for(server)
    for _ in range(4):
        ending = await speaker.say()
        assert (ending["type"], ending["code"]) == ("error", "PROCESSING_ERROR")
    await eventually(lambda: len(only.jobs) == 4)
    assert "eject_until" not in record(only.node.node_id)
    story = await selectors.job_story(speaker.job_ids[2])
    assert story is not None
    events = json.loads(story["events"])
    assert [event["event"] for event in events] == ["failed", "not_ejected"]
    assert events[1]["node"] == only.node.node_id and events[1]["pool"].startswith("auto:")
