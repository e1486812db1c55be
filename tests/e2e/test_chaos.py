"""Chaos: many sessions and nodes, and rooms whose speakers' utterances fan out to language
groups; nodes killed, frozen, flapping, answering twice or late, failing; frames lost on the
channel layer both ways. Every job still ends exactly once, in a room once for each listener."""

from __future__ import annotations

import asyncio
import collections
import random

import pytest

from dispatch import keys, selectors, store
from tests.clients import FakeBrowser, FakeNode
from tests.rooms import create, join, member

pytestmark = pytest.mark.e2e

SETTINGS = {
    "SCHEDULER_JOB_TIMEOUT_S": 2,
    "SCHEDULER_DISPATCH_WAIT_S": 2,
    "SCHEDULER_MAX_ATTEMPTS": 3,
    "SCHEDULER_HEARTBEAT_INTERVAL_S": 1,
}
SESSIONS, UTTERANCES = 6, 15
ROOMS = 2  # each: a zh speaker, an en and a de listener (two jobs per utterance)
BEHAVIOURS = ["normal", "normal", "normal", "frozen", "flapping", "double", "late", "failing", "killed"]


class ChaosNode:
    def __init__(self, base: str, token: str, behaviour: str, rng: random.Random) -> None:
        self.base, self.token, self.behaviour, self.rng = base, token, behaviour, rng
        self.node_id: str | None = None
        self.assigned = 0
        self.task = asyncio.ensure_future(self.run())

    async def connect(self) -> FakeNode:
        client = await FakeNode.connect(self.base, self.token)
        await client.register(langs=["zh", "en", "de"], node_id=self.node_id, slots=2)
        self.node_id = client.node_id
        return client

    async def run(self) -> None:
        client = await self.connect()
        beat = asyncio.ensure_future(self.heartbeats(client))
        started = asyncio.get_running_loop().time()
        try:
            while True:
                now = asyncio.get_running_loop().time()
                if self.behaviour == "killed" and now - started > 4:
                    await client.close()
                    return
                if self.behaviour == "flapping" and now - started > 3:
                    beat.cancel()
                    await client.close()
                    await asyncio.sleep(0.3)
                    client = await self.connect()
                    beat = asyncio.ensure_future(self.heartbeats(client))
                    started = now
                try:
                    frame = await client.recv(timeout=0.5)
                except TimeoutError:
                    continue
                except Exception:
                    continue  # the socket was closed under us (lease, takeover): flap on
                if frame["type"] != "job_assign":
                    continue
                self.assigned += 1
                asyncio.ensure_future(self.answer(client, frame))
        finally:
            beat.cancel()

    async def heartbeats(self, client: FakeNode) -> None:
        while True:
            await client.heartbeat()
            await asyncio.sleep(0.4)

    async def answer(self, client: FakeNode, job: dict) -> None:
        try:
            if self.behaviour == "frozen":
                return
            if self.behaviour == "late":
                await asyncio.sleep(2.5)  # past the attempt timeout
            else:
                await asyncio.sleep(self.rng.uniform(0, 0.1))
            if self.behaviour == "failing" and self.rng.random() < 0.5:
                await client.send(client.result_for(job, success=False, error={"code": "PROCESSING_ERROR"}))
                return
            empty = self.rng.random() < 0.1
            result = client.result_for(job, **({"text_asr": "", "text_translated": ""} if empty else {}))
            await client.send(result)
            if self.behaviour == "double":
                await client.send(result)
        except Exception:
            pass  # the socket went away: that is the point


async def session(base: str, count: int) -> dict[int, list[dict]]:
    browser = await FakeBrowser.connect(base)
    await browser.init("zh", "en")
    endings: dict[int, list[dict]] = collections.defaultdict(list)
    for index in range(count):
        await browser.utterance(index)
        await asyncio.sleep(0.15)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while sum(1 for e in endings.values() if e) < count and loop.time() < deadline:
        frame = await browser.ending(timeout=deadline - loop.time())
        endings[frame["utterance_index"]].append(frame)
    for frame in await browser.silent(3):  # anything more would be a second ending
        if frame["type"] in ("translation_result", "missing_result", "error"):
            endings[frame["utterance_index"]].append(frame)
    await browser.close()
    return endings


async def endings_of(browser: FakeBrowser, count: int, timeout: float = 60) -> dict[int, list[dict]]:
    """The endings a browser gets for utterances 0..count-1, and anything more within 3 s."""
    endings: dict[int, list[dict]] = collections.defaultdict(list)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while sum(1 for e in endings.values() if e) < count and loop.time() < deadline:
        frame = await browser.ending(timeout=deadline - loop.time())
        endings[frame["utterance_index"]].append(frame)
    for frame in await browser.silent(3):  # anything more would be a second ending
        if frame["type"] in ("translation_result", "missing_result", "error"):
            endings[frame["utterance_index"]].append(frame)
    return endings


async def room(base: str, count: int) -> tuple[str, dict[str, dict[int, list[dict]]]]:
    """A room whose zh speaker says ``count`` utterances; its session id, and each listener's
    endings by language (the speaker's own endings under "speaker": there must be none)."""
    speaker = await member(base, "zh", "en")
    listeners = {"en": await member(base, "de", "en"), "de": await member(base, "en", "de")}
    ack, _ = await create(speaker)
    for browser in listeners.values():
        await join(browser, ack["room_code"])
    await asyncio.sleep(0.3)
    heard = {lang: asyncio.ensure_future(endings_of(browser, count)) for lang, browser in listeners.items()}
    for index in range(count):
        await speaker.utterance(index)
        await asyncio.sleep(0.15)
    got = {lang: await task for lang, task in heard.items()}
    got["speaker"] = {i: e for i, e in (await endings_of(speaker, 0, timeout=0)).items()}
    for browser in (speaker, *listeners.values()):
        await browser.close()
    return speaker.session_id, got


async def test_every_job_ends_exactly_once_under_chaos(stack, node_token):
    server = stack(
        **SETTINGS,
        server_env={
            "CHANNEL_LAYER_BACKEND": "tests.lossy_layer.LossyLayer",
            "LOSSY_DROP": "job.assign:5,job.assign:17,job.ended:7,job.ended:23",
        },
    )
    rng = random.Random(7)
    nodes = [ChaosNode(server.ws(), node_token, behaviour, rng) for behaviour in BEHAVIOURS]
    rooms = asyncio.gather(*(room(server.ws(), UTTERANCES) for _ in range(ROOMS)))
    results = await asyncio.gather(*(session(server.ws(), UTTERANCES) for _ in range(SESSIONS)))
    rooms_heard = await rooms
    for node in nodes:
        node.task.cancel()
    await asyncio.sleep(0.5)

    kinds = collections.Counter()
    for endings in results:
        assert sorted(endings) == list(range(UTTERANCES))
        for index, frames in endings.items():
            assert len(frames) == 1, f"utterance {index} ended {len(frames)} times: {frames}"
            frame = frames[0]
            kinds[frame["type"] if frame["type"] != "error" else f"error {frame['code']}"] += 1
    for _, heard in rooms_heard:
        assert heard.pop("speaker") == {}  # the speaker gets ui_events only
        for lang, endings in heard.items():
            assert sorted(endings) == list(range(UTTERANCES)), lang
            for index, frames in endings.items():
                assert len(frames) == 1, f"{lang} heard utterance {index} {len(frames)} times: {frames}"
                kinds[f"room {frames[0]['type']}"] += 1
    # in Redis: each room utterance made two jobs, and every one ended once
    room_jobs = [job_id for speaker, _ in rooms_heard for job_id in await selectors.session_job_ids(speaker)]
    stories = await selectors.job_stories(room_jobs)
    assert len(room_jobs) == ROOMS * UTTERANCES * 2
    assert len(stories) == len(room_jobs) and all(story.get("ending") for story in stories)
    client = store.sync_client()
    metrics = store.decoded(client.hgetall(keys.metrics()))
    ended = sum(int(metrics.get(f"jobs_{outcome}", 0)) for outcome in ("result", "missing", "error", "cancelled"))
    leaked = 0
    for node in nodes:
        record = store.decoded(client.hgetall(keys.node(node.node_id)))
        leaked += int(record.get("used", 0))
    in_flight = sum(1 for _ in client.scan_iter(match=f"{keys.prefix()}:job:*"))
    print(
        f"\nchaos: {SESSIONS * UTTERANCES} session jobs, {2 * ROOMS * UTTERANCES} room jobs; endings {dict(kinds)}; "
        f"reassignments {metrics.get('reassignments', 0)}; recovered endings {metrics.get('recovered', 0)}; "
        f"assigned per node { {f'{i}:{n.behaviour}': n.assigned for i, n in enumerate(nodes)} }; leaked slots {leaked}; "
        f"jobs still in flight {in_flight}"
    )
    assert sum(kinds.values()) == (SESSIONS + 2 * ROOMS) * UTTERANCES
    assert ended == (SESSIONS + 2 * ROOMS) * UTTERANCES  # one ending counted per job
    assert int(metrics.get("reassignments", 0)) > 0
    assert leaked == 0 and in_flight == 0
