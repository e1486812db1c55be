"""Turn affinity on real processes: the pieces of one long turn (length cuts, then a final) go
to the node that took its first piece, and move only when that node is lost or full; the pool's
strategy still decides each turn's first piece."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
import websockets

from dispatch import selectors
from tests.clients import AUDIO, FakeBrowser, FakeNode, eventually, split_packets

pytestmark = pytest.mark.e2e

# Each 200 ms chunk reaches the length limit: a piece of its turn. No pause cut gets in the way.
TURNS = {"SCHEDULER_MAX_UTTERANCE_MS": 200, "SCHEDULER_PAUSE_MS": 60_000}
PIECE = base64.b64encode(b"".join(split_packets(AUDIO)[:10])).decode()


class TurnNode:
    """A node that holds the jobs it gets or answers them at once (``hold`` may change)."""

    def __init__(self, node: FakeNode, *, hold: bool) -> None:
        self.node, self.hold = node, hold
        self.jobs: list[dict[str, Any]] = []
        self.held: list[dict[str, Any]] = []
        self.task = asyncio.ensure_future(self.serve())

    @property
    def node_id(self) -> str:
        return self.node.node_id

    async def serve(self) -> None:
        try:
            while True:
                frame = await self.node.recv(timeout=3600)
                if frame["type"] != "job_assign":
                    continue
                self.jobs.append(frame)
                if self.hold:
                    self.held.append(frame)
                else:
                    await self.node.send(self.node.result_for(frame))
        except websockets.ConnectionClosed:
            pass

    async def answer(self) -> None:
        """Answer every held job, and the next ones at once."""
        self.hold = False
        held, self.held = self.held, []
        for frame in held:
            await self.node.send(self.node.result_for(frame))

    def has(self, index: int, attempt: int = 1) -> bool:
        return any(job["utterance_index"] == index and job["attempt_id"] == attempt for job in self.jobs)


async def start(server: Any, token: str, count: int, *, hold: bool, slots: int = 4) -> list[TurnNode]:
    nodes = []
    for _ in range(count):
        node = await FakeNode.connect(server.ws(), token)
        await node.register(langs=["zh", "en"], slots=slots)
        nodes.append(TurnNode(node, hold=hold))
    return nodes


class Speaker:
    """A browser streaming turns in pieces: ``piece()`` is a length cut, ``piece(final=True)``
    ends the turn."""

    def __init__(self, browser: FakeBrowser) -> None:
        self.browser = browser
        self.seq = 0
        self.index = 0

    async def piece(self, nodes: list[TurnNode], *, final: bool = False) -> TurnNode:
        """Send one piece; the node it was placed on (first attempt)."""
        await self.browser.send({"type": "audio_chunk", "session_id": self.browser.session_id, "seq": self.seq,
                                 "is_final": final, "payload": PIECE})
        self.seq += 1
        index, self.index = self.index, self.index + 1
        await eventually(lambda: any(node.has(index) for node in nodes))
        return next(node for node in nodes if node.has(index))

    async def endings(self, count: int) -> list[dict[str, Any]]:
        return [await self.browser.ending() for _ in range(count)]


async def speaker_for(server: Any) -> Speaker:
    browser = await FakeBrowser.connect(server.ws())
    await browser.init("zh", "en")
    return Speaker(browser)


def job_of(nodes: list[TurnNode], index: int, attempt: int = 1) -> dict[str, Any]:
    return next(job for node in nodes for job in node.jobs if job["utterance_index"] == index and job["attempt_id"] == attempt)


async def test_a_turn_of_five_pieces_stays_on_the_node_of_its_first_and_turns_still_spread(stack, node_token):
    server = stack(**TURNS)
    nodes = await start(server, node_token, 3, hold=False)
    speaker = await speaker_for(server)
    firsts = []
    for _turn in range(12):
        placed = [await speaker.piece(nodes) for _ in range(4)] + [await speaker.piece(nodes, final=True)]
        assert len({node.node_id for node in placed}) == 1, [node.node_id for node in placed]
        firsts.append(placed[0].node_id)
        indexes = range(speaker.index - 5, speaker.index)
        jobs = [job_of(nodes, index) for index in indexes]
        assert len({job["turn_id"] for job in jobs}) == 1
        assert [job["is_max_duration_triggered"] for job in jobs] == [True] * 4 + [False]
        assert jobs[4]["is_manual_cut"]
    endings = await speaker.endings(60)
    assert [ending["type"] for ending in endings] == ["translation_result"] * 60
    # the random pool's strategy still picks each turn's first piece: 12 on one node is 3^-11
    assert len(set(firsts)) > 1
    # the story says who decided
    story = await selectors.job_story(job_of(nodes, 0)["job_id"])
    assert story is not None and json.loads(story["attempts"])[0]["strategy"] == "random"
    story = await selectors.job_story(job_of(nodes, 3)["job_id"])
    assert story is not None
    (attempt,) = json.loads(story["attempts"])
    assert attempt["strategy"] == "affinity" and attempt["node"] == firsts[0]
    assert attempt["looked"] == [{"pool": "auto:zh-en", "candidates": [attempt["turn"]]}]


async def test_a_turn_moves_with_its_piece_when_its_node_is_lost(stack, node_token):
    server = stack(**TURNS)
    nodes = await start(server, node_token, 3, hold=True)
    speaker = await speaker_for(server)
    lost = await speaker.piece(nodes)
    others = [node for node in nodes if node is not lost]
    for node in others:
        await node.answer()
    await lost.node.close()  # it held the first piece: that moves on, and the turn with it
    await eventually(lambda: any(node.has(0, attempt=2) for node in others))
    (heir,) = [node for node in others if node.has(0, attempt=2)]
    placed = [await speaker.piece(nodes) for _ in range(3)] + [await speaker.piece(nodes, final=True)]
    assert [node.node_id for node in placed] == [heir.node_id] * 4
    endings = await speaker.endings(5)
    assert sorted(ending["utterance_index"] for ending in endings) == [0, 1, 2, 3, 4]
    assert {ending["type"] for ending in endings} == {"translation_result"}
    assert {ending["text_translated"].rsplit(" ", 1)[1] for ending in endings} == {heir.node_id}


async def test_a_turn_moves_on_when_its_node_is_full_and_stays_where_it_went(stack, node_token):
    server = stack(**TURNS)
    nodes = await start(server, node_token, 3, hold=True, slots=2)
    speaker = await speaker_for(server)
    first = await speaker.piece(nodes)
    assert await speaker.piece(nodes) is first  # it holds both: now full
    moved = await speaker.piece(nodes)
    assert moved is not first
    await moved.answer()
    assert [await speaker.piece(nodes), await speaker.piece(nodes, final=True)] == [moved, moved]
    await first.answer()
    endings = await speaker.endings(5)
    assert sorted(ending["utterance_index"] for ending in endings) == [0, 1, 2, 3, 4]
    assert {ending["type"] for ending in endings} == {"translation_result"}
    story = await selectors.job_story(job_of(nodes, 2)["job_id"])
    assert story is not None
    (attempt,) = json.loads(story["attempts"])
    assert attempt["strategy"] == "random" and attempt["turn"] == f"{first.node_id}=0"
    # the next turn is the strategy's again, and its pieces follow its own first
    again = await speaker.piece(nodes)
    await again.answer()
    assert await speaker.piece(nodes, final=True) is again
