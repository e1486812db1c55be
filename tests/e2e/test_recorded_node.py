"""The real node agent's recorded frames (tests/fixtures/transcript_*.jsonl), replayed against a
real server. Only the ``in`` frames are the real client's; a recorded ``out`` ack is used only to
learn which recorded id stands for the id our server gave, so later frames carry ours."""

from __future__ import annotations

import asyncio
import copy
import re
import time
from typing import Any

import pytest

from dispatch.selectors import node_record
from tests.clients import FakeBrowser, FakeNode, recorded

pytestmark = pytest.mark.e2e

NODE_ID = re.compile(r"^node-[0-9a-fA-F]{8}$")


class Replay:
    """Feeds a transcript's node registrations and heartbeats, one socket per ``node_register``
    (as the agent does on each connect). ``ids`` maps recorded node ids to ours and carries over between transcripts."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token
        self.ids: dict[str, str] = {}
        self.sockets: dict[str, FakeNode] = {}  # our node id → its socket
        self.acks: list[dict[str, Any]] = []
        self.heartbeats: list[dict[str, Any]] = []  # as sent, ids substituted

    def ours(self, node_id: str | None) -> str | None:
        return self.ids.get(node_id, node_id) if node_id else node_id

    async def feed(self, name: str) -> None:
        rows = [row for row in recorded(name) if row["path"] == "/ws/node"]
        sent_register: dict[str, Any] | None = None
        for row in rows:
            frame = row["msg"]
            if row["dir"] == "out" and frame["type"] == "node_register_ack" and sent_register is not None:
                self.ids[frame["node_id"]] = self.acks[-1]["node_id"]
                sent_register = None
            if row["dir"] != "in":
                continue
            frame = copy.deepcopy(frame)
            frame["node_id"] = self.ours(frame.get("node_id"))
            if frame["type"] == "node_register":
                node = await FakeNode.connect(self.base, self.token)
                ack = await node.register(frame)
                self.acks.append(ack)
                old = self.sockets.get(ack["node_id"])
                if old is not None:
                    assert await old.closed() == 4409, "a reconnect replaces the older socket"
                self.sockets[ack["node_id"]] = node
                sent_register = frame
            elif frame["type"] == "node_heartbeat":
                await self.sockets[frame["node_id"]].send(frame)
                self.heartbeats.append(frame)
            elif frame["type"] == "job_result":
                continue  # answers a job of the recorded session: the test sends it for our job
            else:
                raise AssertionError(f"unexpected node frame in {name}: {frame['type']}")

    async def close(self, node_id: str) -> None:
        await self.sockets.pop(node_id).close()

    async def close_all(self) -> None:
        for node_id in list(self.sockets):
            await self.close(node_id)


async def settle(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def assert_heartbeats_processed_silently(replay: Replay) -> None:
    for node in replay.sockets.values():
        assert await node.silent(0.5) == [], "heartbeats get no reply and no error"
    last: dict[str, dict[str, Any]] = {frame["node_id"]: frame for frame in replay.heartbeats}
    for node_id, frame in last.items():
        cpu = frame["resource_usage"]["cpu_percent"]
        await settle(lambda n=node_id, c=cpu: f'"cpu_percent":{c}' in node_record(n).get("load", ""))
        assert node_record(node_id)["status"] == "ready"


async def test_first_connect_and_heartbeat(stack, node_token):
    server = stack(worker=False)
    replay = Replay(server.ws(), node_token)
    await replay.feed("transcript_node1.jsonl")
    (ack,) = replay.acks
    assert ack["type"] == "node_register_ack" and ack["message"] == "registered"
    assert NODE_ID.match(ack["node_id"]) and ack["node_id"] != "node-e8c0d2d0"
    assert ack["status"] == "ready", "14 languages with asr, nmt and tts running: automatic pools"
    await assert_heartbeats_processed_silently(replay)
    await replay.close_all()
    await settle(lambda: node_record(ack["node_id"])["status"] == "offline")


async def test_reconnects_keep_their_ids_and_jobs_flow(stack, node_token):
    server = stack(worker=True)
    replay = Replay(server.ws(), node_token)
    await replay.feed("transcript_reconnect.jsonl")
    fresh, returning = replay.acks
    assert NODE_ID.match(fresh["node_id"]) and fresh["node_id"] != "node-223b93ab"
    assert returning["node_id"] == "node-6c7010ef", "an id from before a server restart is kept"
    assert all(ack["message"] == "registered" and ack["status"] == "ready" for ack in replay.acks)
    await assert_heartbeats_processed_silently(replay)

    # the recorded session, with real audio, ends at whichever node gets the job, answered
    # with the recorded job_result
    rows = recorded("transcript_reconnect.jsonl")
    init = next(row["msg"] for row in rows if row["dir"] == "in" and row["msg"]["type"] == "session_init")
    result = next(row["msg"] for row in rows if row["dir"] == "in" and row["msg"]["type"] == "job_result")
    browser = await FakeBrowser.connect(server.ws())
    await browser.send(init)
    ack = await browser.expect("session_init_ack")
    browser.session_id = ack["session_id"]
    assert ack["trace_id"] == init["trace_id"]
    await browser.say()
    job, node = await next_job(list(replay.sockets.values()))
    answer = dict(result, job_id=job["job_id"], attempt_id=job["attempt_id"], node_id=node.node_id,
                  session_id=job["session_id"], utterance_index=job["utterance_index"], trace_id=job["trace_id"])
    await node.send(answer)
    delivered = await browser.ending()
    assert delivered["type"] == "translation_result"
    assert (delivered["text_asr"], delivered["text_translated"]) == (result["text_asr"], result["text_translated"])
    await browser.close()

    # the first node drops and reconnects later with the id we gave it
    await replay.close(fresh["node_id"])
    await settle(lambda: node_record(fresh["node_id"])["status"] == "offline")
    replay.heartbeats.clear()
    await replay.feed("transcript_reconnect2.jsonl")
    assert replay.acks[-1]["node_id"] == fresh["node_id"]
    assert replay.acks[-1]["message"] == "registered" and replay.acks[-1]["status"] == "ready"
    await assert_heartbeats_processed_silently(replay)
    await replay.close_all()


async def test_reconnect_while_the_old_socket_is_open(stack, node_token):
    server = stack(worker=False)
    replay = Replay(server.ws(), node_token)
    await replay.feed("transcript_reconnect.jsonl")
    fresh = replay.acks[0]["node_id"]
    # the agent reconnects before the server noticed its old socket drop: the old one is replaced
    await replay.feed("transcript_reconnect2.jsonl")
    assert replay.acks[-1]["node_id"] == fresh
    await assert_heartbeats_processed_silently(replay)
    await replay.close_all()


async def test_reconnect_to_a_server_that_never_saw_the_id(stack, node_token):
    server = stack(worker=False)
    replay = Replay(server.ws(), node_token)
    await replay.feed("transcript_reconnect2.jsonl")
    (ack,) = replay.acks
    assert ack["node_id"] == "node-223b93ab" and ack["message"] == "registered"
    await assert_heartbeats_processed_silently(replay)
    await replay.close_all()


async def next_job(nodes: list[FakeNode], timeout: float = 10.0) -> tuple[dict[str, Any], FakeNode]:
    """The first job_assign any of ``nodes`` receives."""
    waits = {asyncio.ensure_future(node.expect("job_assign", timeout)): node for node in nodes}
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    task = done.pop()
    return task.result(), waits[task]
