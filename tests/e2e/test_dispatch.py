"""The whole loop on real daphne and worker processes: routes, strategies, spread, slots."""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from dispatch import selectors
from pools.config import import_pools
from tests.clients import FakeBrowser, FakeNode, eventually

pytestmark = pytest.mark.e2e


class AnsweringNode:
    """A FakeNode that answers every job at once (or holds them), and records what it got."""

    def __init__(self, node: FakeNode, *, hold: bool = False, slots: int = 4) -> None:
        self.node = node
        self.hold = hold
        self.slots = slots
        self.jobs: list[dict[str, Any]] = []
        self.held: list[dict[str, Any]] = []
        self.most_held = 0
        self.task = asyncio.ensure_future(self.serve())

    async def serve(self) -> None:
        while True:
            frame = await self.node.recv(timeout=3600)
            if frame["type"] != "job_assign":
                continue
            self.jobs.append(frame)
            if self.hold:
                self.held.append(frame)
                self.most_held = max(self.most_held, len(self.held))
            else:
                await self.node.send(self.node.result_for(frame))

    async def release(self) -> None:
        """Answer every held job."""
        held, self.held = self.held, []
        for frame in held:
            await self.node.send(self.node.result_for(frame))

    def stop(self) -> None:
        self.task.cancel()


async def start_node(server: Any, token: str, langs: list[str], **kwargs: Any) -> FakeNode:
    node = await FakeNode.connect(server.ws(), token)
    ack = await node.register(langs=langs, **kwargs)
    assert ack["message"] == "registered"
    return node


async def run_utterances(browser: FakeBrowser, count: int) -> list[dict[str, Any]]:
    """Send ``count`` pre-cut utterances, at most 8 unanswered at a time; every ending."""
    endings: list[dict[str, Any]] = []
    sent = 0
    while len(endings) < count:
        while sent < count and sent - len(endings) < 8:
            await browser.utterance(sent)
            sent += 1
        endings.append(await browser.ending())
    return endings


def used_slots(node_ids: list[str]) -> dict[str, int]:
    return {node_id: int(selectors.node_record(node_id).get("used", 0)) for node_id in node_ids}


async def test_routes_two_way_and_exactly_one_ending(stack, node_token):
    server = stack()
    a = AnsweringNode(await start_node(server, node_token, ["zh", "en"]))
    b = AnsweringNode(await start_node(server, node_token, ["zh", "en", "ja"]))
    c = AnsweringNode(await start_node(server, node_token, ["fr", "de"]))
    nodes = {n.node.node_id: n for n in (a, b, c)}

    sessions = {
        ("zh", "en", None): {a.node.node_id, b.node.node_id},
        ("ja", "zh", None): {b.node.node_id},
        ("fr", "de", None): {c.node.node_id},
        ("auto", "en", ("en", "zh")): {a.node.node_id, b.node.node_id},
    }
    for (src, tgt, two_way), eligible in sessions.items():
        browser = await FakeBrowser.connect(server.ws())
        extra = {"lang_a": two_way[0], "lang_b": two_way[1], "mode": "two_way_auto"} if two_way else {}
        ack = await browser.init(src, tgt, **extra)
        assert ack["type"] == "session_init_ack"
        # streamed utterances (the browser's real path) and pre-cut ones
        for seq in range(3):
            await browser.say(seq=2 * seq)
        endings = [await browser.ending() for _ in range(3)]
        await browser.send({"type": "session_close", "session_id": browser.session_id})
        await browser.expect("session_close_ack")
        await browser.init(src, tgt, **extra)
        endings += await run_utterances(browser, 5)
        assert [e["type"] for e in endings] == ["translation_result"] * 8
        # every job ended exactly once, and only on nodes of the session's route
        assert sorted(e["utterance_index"] for e in endings[:3]) == [0, 1, 2]
        assert sorted(e["utterance_index"] for e in endings[3:]) == [0, 1, 2, 3, 4]
        assert len({e["job_id"] for e in endings}) == 8
        served_by = {e["text_translated"].rsplit(" ", 1)[1] for e in endings}
        assert served_by <= eligible
        late = await browser.silent(0.3)
        assert [f for f in late if f["type"] != "ui_event"] == []
        await browser.close()
    for node in nodes.values():
        for job in node.jobs:
            if job["mode"] == "two_way_auto":
                assert job["src_lang"] == "auto" and {job["lang_a"], job["lang_b"]} == {"en", "zh"}
    await asyncio.sleep(0.2)
    assert used_slots(list(nodes)) == {node_id: 0 for node_id in nodes}
    for node in nodes.values():
        node.stop()


async def test_random_spread_is_uniform(stack, node_token):
    server = stack()
    nodes = [AnsweringNode(await start_node(server, node_token, ["zh", "en"])) for _ in range(3)]
    browsers = []
    for _ in range(3):
        browser = await FakeBrowser.connect(server.ws())
        await browser.init("zh", "en")
        browsers.append(browser)
    per_browser = 100
    results = await asyncio.gather(*(run_utterances(b, per_browser) for b in browsers))
    counts = collections.Counter(e["text_translated"].rsplit(" ", 1)[1] for r in results for e in r)
    total = 3 * per_browser
    print("jobs per node:", dict(counts))
    assert sum(counts.values()) == total
    # Binomial(300, 1/3): sd ≈ 8.2; 40 is about 5 sd, so this fails only if dispatch is skewed.
    for node in nodes:
        assert abs(counts[node.node.node_id] - total / 3) < 40
        assert node.most_held == 0
    await asyncio.sleep(0.2)
    assert set(used_slots([n.node.node_id for n in nodes]).values()) == {0}


async def test_slots_never_exceeded_and_released(stack, node_token):
    server = stack()
    holders = [AnsweringNode(await start_node(server, node_token, ["zh", "en"], slots=2), hold=True) for _ in range(2)]
    browser = await FakeBrowser.connect(server.ws())
    await browser.init("zh", "en")
    for index in range(4):
        await browser.utterance(index)
    for _ in range(4):
        await browser.expect(lambda f: f.get("event") == "DISPATCHED")
    await eventually(lambda: sum(len(h.jobs) for h in holders) == 4)
    ids = [h.node.node_id for h in holders]
    assert used_slots(ids) == {ids[0]: 2, ids[1]: 2}
    await browser.utterance(4)  # every slot is taken: it waits
    await asyncio.sleep(0.5)
    assert sum(len(h.jobs) for h in holders) == 4
    await holders[0].release()
    ending_indexes = {(await browser.ending())["utterance_index"] for _ in range(2)}
    assert ending_indexes <= {0, 1, 2, 3}
    await browser.expect(lambda f: f.get("event") == "DISPATCHED" and f["utterance_index"] == 4)
    for holder in holders:
        holder.hold = False
        await holder.release()
    indexes = ending_indexes | {(await browser.ending())["utterance_index"] for _ in range(3)}
    assert indexes == {0, 1, 2, 3, 4}
    assert max(h.most_held for h in holders) == 2
    await asyncio.sleep(0.2)
    assert used_slots(ids) == {ids[0]: 0, ids[1]: 0}


async def test_fallback_to_next_pool_when_first_is_full(stack, node_token, settings):
    server = stack()
    first = AnsweringNode(
        await start_node(server, node_token, ["zh", "en"], slots=1, services=("asr", "nmt", "tts", "semantic")),
        hold=True,
    )
    second = AnsweringNode(await start_node(server, node_token, ["zh", "en"], slots=1), hold=True)
    await sync_to_async(import_pools)(
        {
            "pools": [
                {"name": "premium", "priority": 20, "required_services": ["asr", "nmt", "tts", "semantic"],
                 "pairs": [["zh", "en"]]},
                {"name": "standard", "priority": 10, "required_services": ["asr", "nmt", "tts"],
                 "pairs": [["zh", "en"]]},
            ]
        }
    )
    assert selectors.pool_members("premium") == [first.node.node_id]
    assert selectors.pool_members("standard") == sorted([first.node.node_id, second.node.node_id])
    browser = await FakeBrowser.connect(server.ws())
    await browser.init("zh", "en")
    await browser.utterance(0)
    await browser.expect(lambda f: f.get("event") == "DISPATCHED")
    await browser.utterance(1)
    await browser.expect(lambda f: f.get("event") == "DISPATCHED")
    await eventually(lambda: len(first.jobs) + len(second.jobs) == 2)
    assert [j["utterance_index"] for j in first.jobs] == [0]
    assert [j["utterance_index"] for j in second.jobs] == [1]
    story = json.loads((await selectors.job_story(first.jobs[0]["job_id"]))["attempts"])
    assert story[0]["pool"] == "premium"
    story = json.loads((await selectors.job_story(second.jobs[0]["job_id"]))["attempts"])
    assert story[0]["pool"] == "standard"


async def test_sticky_keeps_the_session_on_its_node(stack, node_token):
    server = stack()
    nodes = [AnsweringNode(await start_node(server, node_token, ["zh", "en"], slots=1), hold=True) for _ in range(3)]
    await sync_to_async(import_pools)({"pools": [{"name": "sticky-zh-en", "strategy": "sticky", "pairs": [["zh", "en"]]}]})
    browser = await FakeBrowser.connect(server.ws())
    await browser.init("zh", "en")
    await browser.utterance(0)
    await browser.expect(lambda f: f.get("event") == "DISPATCHED")
    await eventually(lambda: any(n.jobs for n in nodes))
    chosen = next(n for n in nodes if n.jobs)
    for index in range(1, 6):
        await chosen.release()
        await browser.ending()
        await browser.utterance(index)
        await browser.expect(lambda f: f.get("event") == "DISPATCHED")
        await eventually(lambda count=index + 1: sum(len(n.jobs) for n in nodes) == count)
    assert [len(n.jobs) for n in nodes if n is not chosen] == [0, 0]
    assert len(chosen.jobs) == 6
    # while the sticky node is busy, the session's next job goes to another node
    await browser.utterance(6)
    await browser.expect(lambda f: f.get("event") == "DISPATCHED" and f["utterance_index"] == 6)
    await eventually(lambda: sum(len(n.jobs) for n in nodes) == 7)
    assert len(chosen.jobs) == 6 and sum(len(n.jobs) for n in nodes) == 7


async def test_least_loaded_takes_the_most_free_slots(stack, node_token):
    server = stack()
    big = AnsweringNode(await start_node(server, node_token, ["zh", "en"], slots=8), hold=True)
    small = [AnsweringNode(await start_node(server, node_token, ["zh", "en"], slots=4), hold=True) for _ in range(2)]
    await sync_to_async(import_pools)({"pools": [{"name": "ll-zh-en", "strategy": "least_loaded", "pairs": [["zh", "en"]]}]})
    browsers = []
    for _ in range(2):
        browser = await FakeBrowser.connect(server.ws())
        await browser.init("zh", "en")
        browsers.append(browser)
    # the 8-slot node has the most free slots until it is down to 4 of them
    for index in range(4):
        await browsers[index % 2].utterance(index // 2)
        await browsers[index % 2].expect(lambda f: f.get("event") == "DISPATCHED")
        await eventually(lambda count=index + 1: len(big.jobs) + sum(len(n.jobs) for n in small) == count)
    assert len(big.jobs) == 4 and [len(n.jobs) for n in small] == [0, 0]
    # now all three have 4 free: ties go at random, and each takes its turn as the others fill
    for index in range(4, 16):
        await browsers[index % 2].utterance(index // 2)
        await browsers[index % 2].expect(lambda f: f.get("event") == "DISPATCHED")
    await eventually(lambda: len(big.jobs) + sum(len(n.jobs) for n in small) == 16)
    assert len(big.jobs) == 8 and [len(n.jobs) for n in small] == [4, 4]
